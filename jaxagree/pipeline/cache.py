"""The extraction cache's files (layout: :mod:`jaxagree.pipeline`; keys:
:mod:`jaxagree.pipeline.keys`): one entry per model and stimulus set, written atomically, checked
against its SHA-256 checksums when read, and locked per model so that runs sharing a cache do not
compute, write or remove one model's files at once.

Why plain ``.npy`` files and not orbax-checkpoint (which the model loaders use for weights):

* Anyone can read an entry: ``np.load`` (or any ``.npy`` reader, in any language) opens each
  array, and ``mmap_mode="r"`` maps a large ``[stimuli, dim]`` file for random access without
  reading it. orbax writes TensorStore's OCDBT format (hash-named blobs under
  ``ocdbt.process_N/d/``), readable through orbax or tensorstore only.
* Processes work alone: process ``i`` writes its own models, at its own pace, and two unrelated
  runs share one cache under a per-model ``flock``. orbax's ``save`` and ``load`` are collective
  ("must be called on all available controller processes", with barriers between them);
  ``MultiprocessingOptions(active_processes=...)`` narrows a save to a set of processes, but
  nothing in orbax keeps two runs that do not know each other from writing one directory.
* Atomicity is the same either way: orbax finalises a checkpoint by renaming its temporary
  folder (``AtomicRenameTemporaryPath``) or by a ``commit_success.txt`` file; here each file is
  renamed into place and ``entry.json`` (with each file's checksum) comes last. orbax's partial
  loading (a subtree: some layers) is what reading some of the files does.
* Cost: importing orbax takes about 2 s (measured here); an entry is a few ``[stimuli, dim]``
  arrays written once, so orbax's async and per-shard writes would save little.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import os
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from jaxagree.pipeline.keys import canonical, describe_change, same_model

if TYPE_CHECKING:
    from jaxagree.data.labels import LabelSpace


class Entry(NamedTuple):
    """One model's results on one stimulus set: ``predictions``, ``predictions-SPACE-DECISION``
    and ``features-LAYER`` arrays, and the model's class count (0: a backbone)."""

    arrays: dict[str, np.ndarray]
    num_classes: int


def prediction_name(space: LabelSpace | None, decision: str) -> str:
    """The array of the predictions: the model's own classes, or a label space's categories."""
    return "predictions" if space is None else f"predictions-{space.fingerprint()}-{decision}"


def output_names(layers: Sequence[str], space: LabelSpace | None, decision: str) -> list[str]:
    """The arrays an entry needs for ``layers`` (and the predictions within ``space``)."""
    names = ["predictions"] + ([prediction_name(space, decision)] if space is not None else [])
    return names + [feature_name(layer) for layer in layers]


def feature_name(layer: str) -> str:
    return f"features-{layer}"


def complete(entry: Entry | None, names: Sequence[str]) -> bool:
    return entry is not None and set(names) <= set(entry.arrays)


def read_entry(entry: Path, key: dict, num_stimuli: int, name: str) -> Entry | None:
    """A model's cached results (the layers its entry has), or None to compute them (with a
    warning when an entry exists but cannot be trusted). An entry whose files' times changed but
    not their contents gets the new times, so the next run does not hash them again."""
    manifest_path = entry / "entry.json"
    if not manifest_path.exists():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        if not same_model(manifest.get("model"), key):
            raise ValueError(describe_change(manifest.get("model"), key))
        arrays = {}
        for array_name, record in manifest["files"].items():
            path = entry / f"{array_name}.npy"
            data = path.read_bytes()  # read once: checked, then parsed from memory
            if hashlib.sha256(data).hexdigest() != record["sha256"]:
                raise ValueError(f"{path.name} does not match its checksum")
            array = np.load(io.BytesIO(data), allow_pickle=False)
            if array.shape[0] != num_stimuli:
                raise ValueError(f"{path.name} has {array.shape[0]} stimuli, expected {num_stimuli}")
            arrays[array_name] = array
        if "predictions" not in arrays:
            raise ValueError("it has no predictions")
        result = Entry(arrays, int(manifest["num_classes"]))
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as error:
        warnings.warn(f"cache entry {entry} cannot be used ({error}); recomputing model {name!r}",
                      RuntimeWarning, stacklevel=3)
        return None
    if canonical(manifest["model"]) != canonical(key):
        atomic_write(manifest_path, json.dumps({**manifest, "model": key}, indent=2, default=str).encode())
    return result


def write_entry(entry: Path, key: dict, result: Entry) -> None:
    entry.mkdir(parents=True, exist_ok=True)
    (entry / "entry.json").unlink(missing_ok=True)  # the entry is incomplete until the manifest is back
    files = {}
    for name, array in result.arrays.items():
        data = _npy_bytes(array)
        atomic_write(entry / f"{name}.npy", data)
        digest = hashlib.sha256(data).hexdigest()
        files[name] = {"shape": list(array.shape), "dtype": str(array.dtype), "sha256": digest}
    manifest = {"model": key, "num_classes": result.num_classes, "files": files}
    atomic_write(entry / "entry.json", json.dumps(manifest, indent=2, default=str).encode())
    remove_partial(entry / "partial")


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


class Partial:
    """A running model's saved results: ``START-STOP.npz`` files of consecutive stimuli, with a
    manifest holding the model's key and the outputs (files of another key or outputs are dropped)."""

    def __init__(self, folder: Path, key: dict, names: list[str]):
        self.folder, self.manifest = folder, {"model": key, "outputs": names}

    def _chunks(self) -> list[tuple[int, int, Path]]:
        chunks = []
        for path in self.folder.glob("*.npz"):
            start, _, stop = path.stem.partition("-")
            if start.isdigit() and stop.isdigit():
                chunks.append((int(start), int(stop), path))
        return sorted(chunks)

    def _usable(self) -> bool:
        try:
            saved = json.loads((self.folder / "manifest.json").read_text())
        except (OSError, json.JSONDecodeError):
            return False
        return (isinstance(saved, dict) and saved.get("outputs") == self.manifest["outputs"]
                and same_model(saved.get("model"), self.manifest["model"]))

    def resume(self) -> tuple[int, list[dict[str, np.ndarray]]]:
        """How many stimuli the saved chunks cover from 0, and their outputs. Chunks of another
        key or other outputs, and any chunk from the first one that cannot be read, are dropped."""
        if not self._usable():
            remove_partial(self.folder)
            self.folder.mkdir(parents=True)
            atomic_write(self.folder / "manifest.json", json.dumps(self.manifest, default=str).encode())
            return 0, []
        done, parts = 0, []
        for start, stop, path in self._chunks():
            try:
                if start != done:
                    raise ValueError(f"starts at {start}, not {done}")
                with np.load(path, allow_pickle=False) as loaded:
                    part = {name: loaded[name] for name in self.manifest["outputs"]}
                if any(len(a) != stop - start for a in part.values()):
                    raise ValueError("holds the wrong number of stimuli")
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
                warnings.warn(f"partial results {path} cannot be used ({error}); recomputing from stimulus {done}",
                              RuntimeWarning, stacklevel=4)
                path.unlink()
                continue
            parts.append(part)
            done = stop
        return done, parts

    def save(self, names: list[str], pending: list) -> dict[str, np.ndarray]:
        """Write the outputs of ``pending`` batches as one chunk; returns them on the host."""
        start, stop = pending[0][0], pending[-1][0] + pending[-1][1]
        arrays = {name: np.concatenate([np.asarray(out[i])[:valid] for _, valid, out in pending])
                  for i, name in enumerate(names)}  # int32 predictions, float32 features, as run returns them
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write(self.folder / f"{start:09d}-{stop:09d}.npz", buffer.getvalue())
        return arrays


def remove_partial(folder: Path) -> None:
    if folder.exists():
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


def atomic_write(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


# --- locks --------------------------------------------------------------------------------------


@contextlib.contextmanager
def locked(entry: Path, name: str, *, wait: bool) -> Iterator[bool]:
    """Hold ``ENTRY/.lock`` (``flock``) while reading, computing and writing one model's entry.
    Yields True once held; with ``wait=False``, False at once when another process holds it.
    Waiting says so (a warning naming the lock). The kernel releases the lock when its process
    ends, even killed, so a crashed run never leaves it held. On a file system without locks
    the entry is used unlocked, with a warning."""
    entry.mkdir(parents=True, exist_ok=True)
    path = entry / ".lock"
    with path.open("a") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                yield False
                return
            warnings.warn(f"model {name!r}: waiting for {path}, held by another jaxagree run on this cache",
                          RuntimeWarning, stacklevel=3)
            fcntl.flock(file, fcntl.LOCK_EX)
        except OSError as error:
            if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            warnings.warn(f"{path}: the file system has no locks ({error.strerror}); runs sharing this cache at "
                          "the same time are not kept apart", RuntimeWarning, stacklevel=3)
        yield True  # closing the file releases the lock


__all__ = ["Entry", "Partial", "atomic_write", "complete", "feature_name", "locked", "output_names",
           "prediction_name", "read_entry", "remove_partial", "write_entry"]
