"""Cache keys: what determines a model's outputs, so that an entry is served only while all of it
is unchanged (layout: :mod:`jaxagree.pipeline`).

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

import functools
import hashlib
import inspect
import json
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from jaxagree.models import ModelSpec

_HASH_BLOCK = 1 << 24


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
        record["sha256"] = previous["sha256"] if unchanged and "sha256" in previous else file_sha256(path)
        records[str(path)] = record
    return records


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def canonical(value: Any) -> str:
    """The text two keys are compared by."""
    # TOML values that JSON cannot hold (dates) compare as text, as they are stored.
    return json.dumps(value, sort_keys=True, default=str)


def _hashes(key: dict) -> dict:
    files = key.get("files")
    return {p: r.get("sha256") for p, r in files.items() if isinstance(r, dict)} if isinstance(files, dict) else {}


def _content(key: Any) -> str:
    """A key without file sizes and times: two keys are the same model when these are equal."""
    return canonical({**key, "files": _hashes(key)} if isinstance(key, dict) else key)


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


# --- code ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def code_digest(function: Callable) -> str:
    """SHA-256 of :func:`code_sources`: the preprocessing is code, and a change to it or to a
    helper it calls must not serve features computed before."""
    sources = code_sources(function)
    return hashlib.sha256("\n".join(sources[name] for name in sorted(sources)).encode()).hexdigest()


def code_sources(function: Callable) -> dict[str, str]:
    """``{module.qualname: source}`` of ``function`` and, transitively, of the functions of its
    package that it reaches: by a global name (``helper(x)``) or as an attribute of one of the
    package's modules (``helpers.resize(x)``). A function without shipped source stands in by
    its bytecode."""
    package = _package(inspect.unwrap(function))
    sources: dict[str, str] = {}
    todo = [function]
    while todo:
        current = inspect.unwrap(todo.pop())
        name = f"{current.__module__}.{current.__qualname__}"
        if name in sources:
            continue
        try:
            sources[name] = inspect.getsource(current)
        except (OSError, TypeError):
            sources[name] = current.__code__.co_code.hex()
        todo.extend(found for found in _reached(current) if _package(found) == package)
    return sources


def _package(function: Callable) -> str:
    return (function.__module__ or "").split(".")[0]


def _reached(function: types.FunctionType) -> Iterator[types.FunctionType]:
    """The plain functions that ``function``'s code names, directly or through a module."""
    names = set(_names(function.__code__))
    for word in names:
        found = function.__globals__.get(word)
        # Any name of the code that a named module holds is taken: more than the code may use
        # (``np.clip`` next to ``helpers`` takes ``helpers.clip`` too), never less.
        candidates = [getattr(found, attr, None) for attr in names] if inspect.ismodule(found) else [found]
        for candidate in candidates:
            if callable(candidate) and inspect.isfunction(unwrapped := inspect.unwrap(candidate)):
                yield unwrapped


def _names(code: types.CodeType) -> Iterator[str]:
    """The global and attribute names a code object and the functions nested in it refer to."""
    yield from code.co_names
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _names(constant)


__all__ = ["canonical", "code_digest", "code_sources", "describe_change", "digest_files", "file_sha256",
           "model_key", "same_model", "stored_files"]
