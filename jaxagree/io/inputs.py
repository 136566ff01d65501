"""The smaller inputs of the commands: features per model, stimulus indices, model families and
category names. Every failure to read is a ``ValueError`` that names the file."""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxagree._checks import check_stimulus_indices, family_of_each
from jaxagree.io.arrays import load_arrays, load_npy

_INDEX = re.compile(r"^[+-]?\d{1,18}$")


def read_text(path: str | os.PathLike, what: str) -> str:
    """A UTF-8 text file (a byte-order mark is dropped), or a ValueError that names it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file ({what})")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ValueError(f"{path}: cannot read ({what}): {error.strerror or error}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({what}): byte {data[error.start]:#04x} at offset "
                         f"{error.start}") from None


def _csv_rows(path: Path, text: str, required: set[str], what: str) -> list[dict[str, str]]:
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        fields = reader.fieldnames
        if fields is None or not required <= {f.strip() for f in fields}:
            raise ValueError(f"{path}: expected column(s) {', '.join(sorted(map(repr, required)))} ({what}); "
                             f"found {fields}")
        return [{(k or "").strip(): (v or "").strip() for k, v in row.items() if isinstance(v, str)}
                for row in reader]
    except csv.Error as error:
        raise ValueError(f"{path}: not a readable CSV file ({what}): {error}") from None


class FeatureSet(NamedTuple):
    """Features of several models on the same stimuli.

    Attributes:
      models: model names.
      features: one ``[stimuli, dim_m]`` array per model (dims may differ).
    """

    models: list[str]
    features: list[np.ndarray]


def read_features(path: str | os.PathLike) -> FeatureSet:
    """Read features: an ``.npz`` with one ``[stimuli, dim]`` array per model (the key is the
    model name), or a folder of ``.npy`` files (the file stem is the model name, sorted)."""
    arrays = feature_arrays(path, npy=load_npy, npz=load_arrays)
    return FeatureSet(list(arrays), list(arrays.values()))


def feature_arrays(path: str | os.PathLike, *, npy: Callable, npz: Callable) -> dict:
    """Each model's array of a features path, by name: ``npz(path)`` for an ``.npz`` (a mapping
    by key), ``npy(file)`` for each ``.npy`` of a folder (by stem, sorted), every one checked to be
    a ``[stimuli, dim]`` array of real numbers. ``npy``/``npz`` decide how an array is opened:
    loaded (:func:`read_features`) or opened for reading some rows (``jaxagree.distributed``)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder")
    if path.is_dir():
        files = sorted(path.glob("*.npy"))
        if not files:
            raise ValueError(f"{path}: folder has no .npy files (one [stimuli, dim] array per model)")
        arrays = {f.stem: npy(f) for f in files}
    elif path.suffix.lower() == ".npz":
        arrays = npz(path)
        if not arrays:
            raise ValueError(f"{path}: holds no arrays")
    else:
        raise ValueError(f"{path}: expected an .npz file or a folder of .npy files")
    for name, array in arrays.items():
        if len(array.shape) != 2:
            raise ValueError(f"{path}: features of model {name!r} must be [stimuli, dim], got shape "
                             f"{tuple(array.shape)}")
        if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
            raise ValueError(f"{path}: features of model {name!r} are not real numbers (dtype {array.dtype})")
    return arrays


def read_indices(path: str | os.PathLike, num_stimuli: int) -> np.ndarray:
    """Stimulus indices from a CSV with an ``index`` column (e.g. ``contrastive.csv``) or a file
    with one index per line."""
    path = Path(path)
    text = read_text(path, "stimulus indices")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{path}: no stimulus indices")
    if "," in lines[0] or not _INDEX.match(lines[0]):
        values = [row.get("index", "") for row in _csv_rows(path, text, {"index"}, "stimulus indices")]
    else:
        values = lines
    if not values:
        raise ValueError(f"{path}: no stimulus indices")
    bad = next((v for v in values if not _INDEX.match(v)), None)
    if bad is not None:
        raise ValueError(f"{path}: stimulus index {bad!r} is not an integer")
    return check_stimulus_indices(np.array([int(v) for v in values], np.int64), num_stimuli, source=str(path))


def read_families(path: str | os.PathLike, models: Sequence[str] | None = None, *,
                  column: str = "family") -> dict[str, str]:
    """Model -> family from a CSV with columns ``model`` and ``family``; with ``models``, each of
    them must have a family (the file is named in the error). ``column`` reads another per-model
    label the same way (``architecture``: the models that differ only in their seed)."""
    path = Path(path)
    plural = "families" if column == "family" else f"{column} labels"
    rows = _csv_rows(path, read_text(path, f"model {plural}"), {"model", column}, f"model {plural}")
    families: dict[str, str] = {}
    for number, row in enumerate(rows, 2):  # line 1 is the header
        model, family = row.get("model", ""), row.get(column, "")
        if not model or not family:
            raise ValueError(f"{path}: line {number} has an empty model or {column}")
        if families.get(model, family) != family:
            raise ValueError(f"{path}: model {model!r} is given two {plural} ({families[model]!r}, {family!r})")
        families[model] = family
    if models is not None:
        if column == "family":
            family_of_each(families, models, source=str(path))
        elif missing := [m for m in models if m not in families]:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise ValueError(f"{path}: no {column} for model(s) {', '.join(map(repr, missing[:5]))}{more}")
    return families


def read_categories(path: str | os.PathLike) -> list[str]:
    """Category names, one per line in index order (blank lines skipped)."""
    path = Path(path)
    names = [line.strip() for line in read_text(path, "category names").splitlines() if line.strip()]
    if not names:
        raise ValueError(f"{path}: no category names (one per line, in index order)")
    seen: dict[str, int] = {}
    for number, name in enumerate(names):
        if name in seen:
            raise ValueError(f"{path}: category {name!r} is listed twice (indices {seen[name]} and {number})")
        seen[name] = number
    return names


__all__ = ["FeatureSet", "feature_arrays", "read_categories", "read_families", "read_features", "read_indices",
           "read_text"]
