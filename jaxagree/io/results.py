"""Results out: CSV and strict JSON writers, and the output folder every command writes into.

A command's ``--out`` folder never mixes two runs and never holds a half-written result: results
are written to a staging folder inside it and swapped in when the run succeeds, earlier results
out first, by renames (:class:`OutputFolder`). A folder is only ever replaced if jaxagree wrote it, for the same
command: a marker file says so, so a typo in ``--out`` cannot delete a user's files.
"""

from __future__ import annotations

import csv
import fcntl
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

MARKER = ".jaxagree-run.json"


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence]) -> Path:
    """Write rows as CSV; floats keep full float32 precision, NaN is written as ``nan``."""
    path = Path(path)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            writer.writerow([_cell(v) for v in row])
    return path


def _cell(value):
    if isinstance(value, (float, np.floating)):
        return "nan" if math.isnan(value) else f"{float(value):.9g}"
    if isinstance(value, np.integer):
        return int(value)
    return value


def json_text(data) -> str:
    """Strict JSON (RFC 8259): NaN and infinities, which JSON cannot hold, become ``null``. The
    one encoding for files and for what the commands print."""
    return json.dumps(_jsonable(data), indent=2, allow_nan=False)


def write_json(path: str | os.PathLike, data: dict) -> Path:
    """Write :func:`json_text` of ``data``."""
    path = Path(path)
    path.write_text(json_text(data) + "\n")
    return path


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_output_folder(out: str | os.PathLike, command: str) -> Path:
    """Check ``--out`` before any work: it must be (or become) a folder that is empty or holds an
    earlier run of the same command. Returns it as an absolute path."""
    out = Path(os.path.abspath(out))
    for parent in (out, *out.parents):
        if parent.exists() and not parent.is_dir():
            where = "is a file" if parent == out else f"is under {parent}, which is a file"
            raise ValueError(f"--out {out} {where}, not a folder")
        if parent.is_dir():
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ValueError(f"--out {out}: cannot write in {parent} (permission denied)")
            break
    if out.is_dir():
        entries = [p.name for p in out.iterdir() if not _is_staging(p.name)]
        if entries and MARKER not in entries:
            raise ValueError(f"--out {out} holds files that jaxagree did not write (e.g. {sorted(entries)[0]!r}); "
                             "give a new or empty folder")
        if entries:
            owner = _read_marker(out).get("command")
            if owner != command:
                raise ValueError(f"--out {out} holds the results of `jaxagree {owner}`; give another folder "
                                 f"for `jaxagree {command}`")
    return out


def _read_marker(folder: Path) -> dict:
    try:
        marker = json.loads((folder / MARKER).read_text())
        return marker if isinstance(marker, dict) else {}
    except (OSError, ValueError):
        return {}


def _is_staging(name: str) -> bool:
    return name.startswith(".jaxagree-staging-")


class OutputFolder:
    """The folder a command writes: ``with OutputFolder(out, command) as staging:`` write the
    results into ``staging``; on success they replace the folder's earlier results as a whole,
    on failure (or interruption) they are removed and the folder keeps the earlier run.

    ``keep`` names entries of the folder that outlive runs (``extract``'s cache): they stay in
    place, and the folder is claimed at once (so that an interrupted run can be resumed into it).
    A failed first run removes the folder again unless ``worth_keeping(entry)`` says a kept entry
    holds finished work (default: any file in it).
    """

    def __init__(self, out: str | os.PathLike, command: str, *, keep: Sequence[str] = (),
                 worth_keeping: Callable[[Path], bool] | None = None):
        self.out = check_output_folder(out, command)
        self.command, self.keep = command, tuple(keep)
        self.worth_keeping = worth_keeping or (lambda entry: any(p.is_file() for p in entry.rglob("*")))
        self.staging = self.out / f".jaxagree-staging-{os.getpid()}-{time.monotonic_ns()}"

    def __enter__(self) -> Path:
        self.created = not self.out.exists()
        self.out.mkdir(parents=True, exist_ok=True)
        with self._locked():
            self._drop_stale_staging()
            if not (self.out / MARKER).exists():
                self._write_marker(self.out, [])
        self.staging.mkdir()
        return self.staging

    def __exit__(self, kind, error, traceback) -> None:
        try:
            if kind is None and any(self.staging.iterdir()):  # a run that wrote nothing changes nothing
                self._commit()
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)
            if kind is not None and self.created and not self._holds_work():
                shutil.rmtree(self.out, ignore_errors=True)  # a failed first run leaves no folder behind

    def _holds_work(self) -> bool:
        """Whether the folder holds anything worth keeping: finished work in the entries that
        outlive runs (a cache), or anything not ours."""
        for path in self.out.iterdir():
            if path.name in (MARKER, ".jaxagree.lock") or _is_staging(path.name):
                continue
            if path.name not in self.keep or self.worth_keeping(path):
                return True
        return False

    def _locked(self):
        return _FolderLock(self.out / ".jaxagree.lock")

    def _drop_stale_staging(self) -> None:
        """Staging folders of runs that were killed (their process is gone)."""
        for path in self.out.iterdir():
            if _is_staging(path.name):
                pid = path.name.removeprefix(".jaxagree-staging-").partition("-")[0]
                if pid.isdigit() and not _process_alive(int(pid)):
                    shutil.rmtree(path, ignore_errors=True)

    def _write_marker(self, folder: Path, entries: list[str]) -> None:
        from jaxagree import __version__

        marker = {"command": self.command, "entries": entries, "jaxagree": __version__,
                  "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        temporary = folder / f".{MARKER}.{os.getpid()}.tmp"
        temporary.write_text(json.dumps(marker, indent=2) + "\n")
        os.replace(temporary, folder / MARKER)

    def _commit(self) -> None:
        """Swap the staged results in: the earlier run's results go first, then each staged entry
        is moved (renamed) into place, the marker last; every step is a rename within the folder.
        Only what the earlier run wrote (its marker's entries) or what this run replaces goes:
        anything else in the folder stays, such as another command's results written under it
        (``--out run/agreement`` inside ``extract --out run``)."""
        fresh = sorted(p.name for p in self.staging.iterdir())
        with self._locked():
            ours = set(_read_marker(self.out).get("entries", [])) | set(fresh)
            earlier = [p for p in self.out.iterdir()
                       if p.name in ours and p.name not in self.keep and p.name not in (MARKER, ".jaxagree.lock")
                       and not _is_staging(p.name)]
            trash = self.out / f".jaxagree-staging-{os.getpid()}-old"
            trash.mkdir(exist_ok=True)
            for path in earlier:
                path.rename(trash / path.name)
            for name in fresh:
                (self.staging / name).rename(self.out / name)
            self._write_marker(self.out, fresh)
            shutil.rmtree(trash, ignore_errors=True)


class _FolderLock:
    """An exclusive ``flock`` on a file: the kernel releases it when the process dies, so a killed
    run never leaves a lock behind."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.handle = self.path.open("a")
        fcntl.flock(self.handle, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


__all__ = ["MARKER", "OutputFolder", "check_output_folder", "json_text", "write_csv", "write_json"]
