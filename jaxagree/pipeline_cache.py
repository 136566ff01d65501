"""The extraction cache (layout: :mod:`jaxagree.pipeline`): one entry per model and stimulus
set, keyed on what determines the model's outputs, written atomically, and locked per model so
that runs sharing a cache do not compute, write or remove one model's files at once.

An entry's key (``entry.json``'s ``model``, and its partial results' manifest) holds:

* ``source`` and ``options``: the zoo entry (its name is the entry's folder);
* ``files``: for each file that determines the model (:func:`jaxagree.models.inventory.model_files`:
  a Hugging Face checkpoint's files, a ``python:`` source's module file), its size, modification
  time and SHA-256. A file whose size and time are as recorded is taken as unchanged and not read
  again; one whose size or time changed is hashed, and its content alone decides;
* ``preprocessing``: a digest of jaxagree's preprocessing code (:func:`code_digest`).

The stimulus set, image size included, is the entry's parent folder (the source's fingerprint).
A key that no longer matches recomputes the entry, and drops the model's partial results.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import inspect
import io
import json
import os
import types
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jaxagree.models import ModelSpec

_HASH_BLOCK = 1 << 24


class Entry(NamedTuple):
    """One model's results on one stimulus set: ``predictions``, ``predictions-SPACE-DECISION``
    and ``features-LAYER`` arrays, and the model's class count (0: a backbone)."""

    arrays: dict[str, np.ndarray]
    num_classes: int


# --- keys ---------------------------------------------------------------------------------------


def model_key(spec: ModelSpec, files: Sequence[Path], preprocessing: str, known: dict | None = None) -> dict:
    """The key of a model's entry. ``files``: the files that determine it; ``known``: file
    records of an earlier key, whose hashes are kept for files of unchanged size and time."""
    return {"source": spec.source, "options": spec.options, "files": digest_files(files, known or {}),
            "preprocessing": preprocessing}


def digest_files(paths: Sequence[Path], known: dict) -> dict[str, dict]:
    """``{path: {size, mtime_ns, sha256}}``; a file whose size and time match its record in
    ``known`` keeps the recorded hash instead of being read (checkpoints are large)."""
    records = {}
    for path in paths:
        stat = path.stat()
        record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        previous = known.get(str(path))
        unchanged = isinstance(previous, dict) and all(previous.get(k) == v for k, v in record.items())
        record["sha256"] = previous["sha256"] if unchanged and "sha256" in previous else _file_sha256(path)
        records[str(path)] = record
    return records


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _canonical(value: Any) -> str:
    # TOML values that JSON cannot hold (dates) compare as text, as they are stored.
    return json.dumps(value, sort_keys=True, default=str)


def _hashes(key: dict) -> dict:
    files = key.get("files")
    return {p: r.get("sha256") for p, r in files.items() if isinstance(r, dict)} if isinstance(files, dict) else {}


def _content(key: Any) -> str:
    """A key without file sizes and times: two keys are the same model when these are equal."""
    return _canonical({**key, "files": _hashes(key)} if isinstance(key, dict) else key)


def same_model(stored: Any, key: dict) -> bool:
    return _content(stored) == _content(key)


def describe_change(stored: Any, key: dict) -> str:
    """Why a stored key is not ``key``, for the warning that recomputes an entry."""
    if not isinstance(stored, dict) or "preprocessing" not in stored:
        return "it was written without a key for the model's files and preprocessing (an older jaxagree)"
    reasons = [f"the model's {part} changed" for part in ("source", "options")
               if _content(stored.get(part)) != _content(key[part])]
    if _content(stored["preprocessing"]) != _content(key["preprocessing"]):
        reasons.append("jaxagree's preprocessing code changed")
    old, new = _hashes(stored), _hashes(key)
    files = sorted(p for p in old.keys() | new.keys() if old.get(p) != new.get(p))
    if files:
        shown = ", ".join(Path(p).name for p in files[:4]) + (f" and {len(files) - 4} more" if len(files) > 4 else "")
        reasons.append(f"the model's files changed ({shown})")
    return "; ".join(reasons) or "its key changed"


def stored_files(entry: Path) -> dict:
    """The file records of an entry's keys (finished and partial), whose hashes a new key reuses."""
    records = {}
    for manifest in (entry / "partial" / "manifest.json", entry / "entry.json"):
        try:
            files = json.loads(manifest.read_text())["model"]["files"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(files, dict):
            records.update(files)
    return records


@functools.lru_cache(maxsize=16)
def code_digest(function: Callable) -> str:
    """SHA-256 of a function's source and, transitively, of the functions of its package that
    it names: the preprocessing is code, and a change to it or to a helper it calls must not
    serve features computed before."""
    package = inspect.unwrap(function).__module__.split(".")[0]
    sources: dict[str, str] = {}
    todo = [function]
    while todo:
        current = inspect.unwrap(todo.pop())
        name = f"{current.__module__}.{current.__qualname__}"
        if name in sources:
            continue
        try:
            sources[name] = inspect.getsource(current)
        except (OSError, TypeError):  # no source shipped: the bytecode stands in for it
            sources[name] = current.__code__.co_code.hex()
        for word in _names(current.__code__):
            found = current.__globals__.get(word)
            if found is not None and callable(found):
                found = inspect.unwrap(found)
                if inspect.isfunction(found) and found.__module__.split(".")[0] == package:
                    todo.append(found)
    return hashlib.sha256("\n".join(sources[name] for name in sorted(sources)).encode()).hexdigest()


def _names(code: types.CodeType) -> Iterator[str]:
    """The global names a code object and the functions nested in it refer to."""
    yield from code.co_names
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _names(constant)


# --- entries ------------------------------------------------------------------------------------


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
    if _canonical(manifest["model"]) != _canonical(key):
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
