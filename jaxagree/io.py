"""Reading prediction tables and writing results. No pickle anywhere.

Prediction inputs:

* Long tables, CSV or Parquet, one row per (model, stimulus) with columns ``model``,
  ``stimulus``, ``response`` and optionally ``label``. Responses and labels are category names
  (strings) or integer indices; given category names name the indices in order, as for arrays.
  A response that is empty, ``na``, ``nan`` or ``none`` (any case), a null, or ``-1`` is
  "no response"; a (model, stimulus) pair absent from the table is "no response" too. A missing
  label marks an unlabelled stimulus.
* Wide arrays: ``.npy`` holding ``int [models, stimuli]`` (-1 = no response), or ``.npz`` with
  ``predictions`` and optionally ``labels [stimuli]``, ``models``, ``stimuli`` and
  ``categories`` (string arrays).

Models and stimuli keep the order of their first appearance in a long table.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

MISSING_MARKERS = frozenset({"", "na", "nan", "none"})
_LONG_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}
# Up to 18 digits fit int64; longer digit strings are read as category names.
_INTEGER = re.compile(r"^[+-]?\d{1,18}$")


class PredictionTable(NamedTuple):
    """Predictions of many models on one stimulus set, with names.

    Attributes:
      predictions: ``int32 [models, stimuli]`` category index; -1 = no response.
      labels: ``int32 [stimuli]`` true category (-1 = unlabelled), or None without labels.
      models: model names, one per row of ``predictions``.
      stimuli: stimulus ids, one per column.
      categories: category names; index ``j`` of ``predictions`` means ``categories[j]``.
    """

    predictions: np.ndarray
    labels: np.ndarray | None
    models: list[str]
    stimuli: list[str]
    categories: list[str]

    @property
    def num_categories(self) -> int:
        return len(self.categories)


def read_predictions(
    path: str | os.PathLike,
    *,
    categories: Sequence[str] | None = None,
    num_categories: int | None = None,
) -> PredictionTable:
    """Read predictions from a long CSV/Parquet table or a wide ``.npy``/``.npz`` array.

    Args:
      path: the file.
      categories: the category vocabulary, in index order. Default for string responses: the
        sorted union of all responses and labels; for integer responses: ``0 .. max``.
      num_categories: for integer responses, the number of categories (default: max + 1).

    Raises:
      ValueError: naming the file and the offending column, model, stimulus or value.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in _LONG_SUFFIXES:
        return _read_long(path, _LONG_SUFFIXES[suffix], categories, num_categories)
    if suffix in (".npy", ".npz"):
        return _read_wide(path, categories, num_categories)
    raise ValueError(
        f"{path}: unknown format {suffix!r}; expected .csv, .tsv, .parquet (long table) "
        "or .npy, .npz (array [models, stimuli])"
    )


# ---------------------------------------------------------------------------------------------
# Long tables


def _load_arrow(path: Path, kind: str):
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if kind == "parquet":
        return pq.read_table(path)
    names = ("model", "stimulus", "response", "label")
    parse = pacsv.ParseOptions(delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
    # Everything as text first: markers such as "NA" are ours to interpret, not the reader's.
    convert = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in names},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    try:
        return pacsv.read_csv(path, parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid as err:
        raise ValueError(f"{path}: cannot parse as a table: {err}") from None


class _Column(NamedTuple):
    """A response or label column, as integers (-1 missing) or as codes into distinct words.

    Text work (trimming, missing markers, integer parsing, vocabulary look-up) is done once per
    distinct value, never per row: a table of tens of millions of rows has few distinct values.
    """

    integers: np.ndarray | None  # int64 [rows]
    codes: np.ndarray | None  # int64 [rows] index into words; -1 missing
    words: list[str] | None  # distinct values, trimmed; None where the value means "missing"


def _dictionary(column) -> tuple[np.ndarray, list]:
    """(codes [rows] with -1 for null, distinct values) of an Arrow column, without copying it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(column.cast(pa.string()))
    if isinstance(encoded, pa.Array):
        encoded = pa.chunked_array([encoded])
    if encoded.num_chunks == 0:
        return np.zeros(0, np.int64), []
    encoded = encoded.unify_dictionaries()  # chunks read in parallel each have their own
    indices = pa.chunked_array([chunk.indices for chunk in encoded.chunks], encoded.type.index_type)
    codes = np.asarray(indices.fill_null(-1).to_numpy(), np.int64)
    return codes, encoded.chunk(0).dictionary.to_pylist()


def _parse_column(column, path: Path, name: str) -> _Column:
    import pyarrow as pa

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind):
        values = np.asarray(column.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False))
        missing = np.isnan(values)
        whole = missing | (np.isfinite(values) & (values == np.round(values)))
        if not whole.all():
            row = int(np.flatnonzero(~whole)[0])
            raise ValueError(f"{path}: column {name!r} row {row} holds {values[row]}, not a category index")
        if pa.types.is_integer(kind):  # exact even beyond 2**53
            values = column.cast(pa.int64()).fill_null(-1).to_numpy(zero_copy_only=False)
        return _Column(np.where(missing, -1, values).astype(np.int64), None, None)
    codes, distinct = _dictionary(column)
    # "-1" is "no response" in text as in integer columns.
    words = [None if w is None or w.strip().lower() in MISSING_MARKERS | {"-1"} else w.strip() for w in distinct]
    present = [w for w in words if w is not None]
    # A column with no values at all (e.g. no labels) does not force category names.
    if all(_INTEGER.match(w) for w in present):
        lookup = np.array([-1 if w is None else int(w) for w in words] + [-1], np.int64)
        return _Column(lookup[codes], None, None)  # code -1 picks the trailing -1
    return _Column(None, codes, words)


def _read_long(path: Path, kind: str, categories, num_categories) -> PredictionTable:
    table = _load_arrow(path, kind)
    required = ("model", "stimulus", "response")
    absent = [c for c in required if c not in table.column_names]
    if absent:
        raise ValueError(
            f"{path}: missing column(s) {', '.join(map(repr, absent))}; a long table needs "
            f"model, stimulus, response (and optionally label); found: {', '.join(table.column_names)}"
        )
    if table.num_rows == 0:
        raise ValueError(f"{path}: the table has no rows")

    def encode(name):
        codes, names = _dictionary(table.column(name))
        empty = np.array([v is None or not v.strip() for v in names] + [True])
        if empty[codes].any():
            row = int(np.flatnonzero(empty[codes])[0])
            raise ValueError(f"{path}: column {name!r} is empty in row {row}")
        return codes, names

    model_code, models = encode("model")
    stim_code, stimuli = encode("stimulus")
    responses = _parse_column(table.column("response"), path, "response")
    labels = _parse_column(table.column("label"), path, "label") if "label" in table.column_names else None

    def where(row: int) -> str:
        return f"model {models[model_code[row]]!r}, stimulus {stimuli[stim_code[row]]!r} (row {row})"

    names, response_codes, label_codes = _categorise(responses, labels, categories, num_categories, path, where)
    preds = _scatter_wide(model_code, stim_code, response_codes, len(models), len(stimuli), path, where)
    stim_labels = None
    if label_codes is not None:
        stim_labels = _stimulus_labels(stim_code, label_codes, len(stimuli), stimuli, names, path)
    return PredictionTable(preds, stim_labels, models, stimuli, names)


def _categorise(responses: _Column, labels: _Column | None, categories, num_categories, path, where):
    """Turn response and label columns into category indices; returns (names, responses, labels)."""
    columns = [("response", responses)] + ([("label", labels)] if labels is not None else [])
    if categories is not None:
        categories = [str(c) for c in categories]
        if len(set(categories)) != len(categories):
            raise ValueError("categories contains duplicate names")
        if num_categories is not None and num_categories != len(categories):
            raise ValueError(
                f"num_categories={num_categories} disagrees with the {len(categories)} given categories"
            )
    as_strings = any(c.words is not None for _, c in columns)
    if not as_strings:  # integer indices; given category names only name them
        if categories is not None:
            num_categories = len(categories)
        for name, column in columns:
            negative = column.integers < -1
            if negative.any():
                row = int(np.flatnonzero(negative)[0])
                raise ValueError(f"{path}: {name} {column.integers[row]} < -1 at {where(row)}")
        largest = max(int(c.integers.max()) for _, c in columns)
        if num_categories is None:
            num_categories = largest + 1
        for name, column in columns:
            too_big = column.integers >= num_categories
            if too_big.any():
                row = int(np.flatnonzero(too_big)[0])
                raise ValueError(
                    f"{path}: {name} {column.integers[row]} >= num_categories={num_categories} "
                    f"at {where(row)}"
                )
        if num_categories < 1:
            raise ValueError(f"{path}: no model gave any response")
        codes = [c.integers.astype(np.int32) for _, c in columns]
        names = categories if categories is not None else [str(i) for i in range(num_categories)]
        return names, codes[0], codes[1] if labels is not None else None

    if num_categories is not None and categories is None:
        raise ValueError(
            f"{path}: num_categories is for integer responses; responses here are category names, "
            "so give the full list of names with categories= (--categories FILE)"
        )

    def as_words(column: _Column) -> _Column:
        if column.words is not None:
            return column
        distinct, codes = np.unique(column.integers, return_inverse=True)
        return _Column(None, codes.reshape(-1), [None if v < 0 else str(v) for v in distinct.tolist()])

    columns = [(name, as_words(c)) for name, c in columns]
    if categories is None:
        vocabulary = sorted({w for _, c in columns for w in c.words if w is not None})
    else:
        vocabulary = categories
    if not vocabulary:
        raise ValueError(f"{path}: no model gave any response")
    index = {name: i for i, name in enumerate(vocabulary)}
    codes = []
    for name, column in columns:
        # Per distinct word: its category, -1 if missing, -2 if not in the vocabulary.
        lookup = np.array([-1 if w is None else index.get(w, -2) for w in column.words] + [-1], np.int32)
        mapped = lookup[column.codes]
        unknown = mapped == -2
        if unknown.any():
            row = int(np.flatnonzero(unknown)[0])
            raise ValueError(
                f"{path}: {name} {column.words[column.codes[row]]!r} at {where(row)} is not one of the "
                f"{len(vocabulary)} given categories"
            )
        codes.append(mapped)
    return vocabulary, codes[0], codes[1] if labels is not None else None


def _scatter_wide(model_code, stim_code, codes, num_models, num_stimuli, path, where) -> np.ndarray:
    flat = model_code * num_stimuli + stim_code
    seen = np.bincount(flat, minlength=num_models * num_stimuli)
    if seen.max() > 1:
        duplicate = int(np.argmax(seen > 1))
        rows = np.flatnonzero(flat == duplicate)
        raise ValueError(
            f"{path}: duplicate rows for {where(int(rows[0])).rsplit(' (row', 1)[0]} "
            f"(rows {', '.join(map(str, rows[:5]))}); each model rates each stimulus once"
        )
    preds = np.full((num_models, num_stimuli), -1, np.int32)
    preds.reshape(-1)[flat] = codes
    return preds


def _stimulus_labels(stim_code, label_codes, num_stimuli, stimuli, names, path) -> np.ndarray:
    labels = np.full(num_stimuli, -1, np.int32)
    given = label_codes >= 0
    labels[stim_code[given]] = label_codes[given]
    conflict = given & (labels[stim_code] != label_codes)
    if conflict.any():
        row = int(np.flatnonzero(conflict)[0])
        stim = stim_code[row]
        raise ValueError(
            f"{path}: stimulus {stimuli[stim]!r} has conflicting labels "
            f"{names[label_codes[row]]!r} (row {row}) and {names[labels[stim]]!r}"
        )
    return labels


# ---------------------------------------------------------------------------------------------
# Wide arrays


def _read_wide(path: Path, categories, num_categories) -> PredictionTable:
    loaded = _load_plain(path)
    if isinstance(loaded, np.ndarray):
        arrays = {"predictions": loaded}
    else:
        arrays = loaded
        if "predictions" not in arrays:
            raise ValueError(
                f"{path}: no 'predictions' array; found {', '.join(arrays) or 'nothing'} "
                "(expected predictions [models, stimuli] and optionally labels, models, stimuli, categories)"
            )
    preds = arrays["predictions"]
    if preds.ndim != 2:
        raise ValueError(f"{path}: predictions must have shape [models, stimuli], got {preds.shape}")
    if not np.issubdtype(preds.dtype, np.integer):
        raise ValueError(
            f"{path}: predictions must be integer category indices (-1 = no response), got dtype {preds.dtype}"
        )
    num_models, num_stimuli = preds.shape
    if num_models == 0 or num_stimuli == 0:
        raise ValueError(f"{path}: predictions is empty (shape {preds.shape})")
    models = _names(arrays.get("models"), num_models, "model_", path, "models")
    stimuli = _names(arrays.get("stimuli"), num_stimuli, "", path, "stimuli")
    labels = _labels(arrays, num_stimuli, path)
    if categories is None and "categories" in arrays:
        categories = [str(c) for c in arrays["categories"].tolist()]
    if categories is not None:
        num_categories = len(categories)
    largest = int(max(preds.max(), labels.max() if labels is not None else -1))
    if num_categories is None:
        num_categories = largest + 1
    if num_categories < 1:
        raise ValueError(f"{path}: no model gave any response")
    for name, values in (("predictions", preds), ("labels", labels)):
        if values is None:
            continue
        bad = (values < -1) | (values >= num_categories)
        if bad.any():
            at = np.argwhere(bad)[0]
            place = (
                f"model {models[at[0]]!r}, stimulus {stimuli[at[1]]!r}" if values.ndim == 2
                else f"stimulus {stimuli[at[0]]!r}"
            )
            raise ValueError(
                f"{path}: {name} value {values[tuple(at)]} at {place} is outside "
                f"[-1, num_categories={num_categories})"
            )
    names = list(categories) if categories is not None else [str(i) for i in range(num_categories)]
    return PredictionTable(preds.astype(np.int32), labels, models, stimuli, names)


def _labels(arrays: dict, num_stimuli: int, path: Path) -> np.ndarray | None:
    """The optional ``labels`` array of an ``.npz``: int32 ``[stimuli]``, or None."""
    labels = arrays.get("labels")
    if labels is None:
        return None
    if labels.shape != (num_stimuli,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: labels must be int [{num_stimuli}], got {labels.dtype} {labels.shape}")
    return labels.astype(np.int32)


def _names(values, count: int, prefix: str, path: Path, field: str) -> list[str]:
    if values is None:
        return [f"{prefix}{i}" for i in range(count)]
    names = [str(v) for v in np.asarray(values).tolist()]
    if len(names) != count:
        raise ValueError(f"{path}: {field} has {len(names)} names but predictions has {count}")
    if len(set(names)) != count:
        raise ValueError(f"{path}: {field} names are not unique")
    return names


def save_predictions(path: str | os.PathLike, table: PredictionTable) -> Path:
    """Write a :class:`PredictionTable` as ``.npz`` (plain arrays; no pickle needed to read)."""
    path = Path(path)
    arrays = {
        "predictions": np.asarray(table.predictions, np.int32),
        "models": np.asarray(table.models, dtype=str),
        "stimuli": np.asarray(table.stimuli, dtype=str),
        "categories": np.asarray(table.categories, dtype=str),
    }
    if table.labels is not None:
        arrays["labels"] = np.asarray(table.labels, np.int32)
    np.savez_compressed(path, **arrays)
    return path


# ---------------------------------------------------------------------------------------------
# Features


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
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder")
    if path.is_dir():
        files = sorted(path.glob("*.npy"))
        if not files:
            raise ValueError(f"{path}: folder has no .npy files (one [stimuli, dim] array per model)")
        arrays = {f.stem: _load_plain(f) for f in files}
    elif path.suffix.lower() == ".npz":
        arrays = _load_plain(path)
        if not arrays:
            raise ValueError(f"{path}: holds no arrays")
    else:
        raise ValueError(f"{path}: expected an .npz file or a folder of .npy files")
    for name, array in arrays.items():
        if array.ndim != 2:
            raise ValueError(f"{path}: features of model {name!r} must be [stimuli, dim], got shape {array.shape}")
        if not np.issubdtype(array.dtype, np.number):
            raise ValueError(f"{path}: features of model {name!r} are not numeric (dtype {array.dtype})")
    return FeatureSet(list(arrays), list(arrays.values()))


def _load_plain(path: Path) -> np.ndarray | dict[str, np.ndarray]:
    """An ``.npy`` array, or an ``.npz`` as a dict in file order; never unpickles."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except ValueError as err:
        raise ValueError(f"{path}: cannot read without pickle ({err}); save plain arrays") from None


def read_indices(path: str | os.PathLike, num_stimuli: int) -> np.ndarray:
    """Stimulus indices from a CSV with an ``index`` column (e.g. ``contrastive.csv``) or a file
    with one index per line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{path}: no stimulus indices")
    if "," in lines[0] or not _INTEGER.match(lines[0]):
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or "index" not in reader.fieldnames:
                raise ValueError(f"{path}: expected a column named 'index' (found {reader.fieldnames})")
            values = [row["index"] for row in reader]
    else:
        values = lines
    if not values:
        raise ValueError(f"{path}: no stimulus indices")
    try:
        indices = np.array([int(v) for v in values], np.int64)
    except ValueError:
        raise ValueError(f"{path}: stimulus indices must be integers") from None
    bad = (indices < 0) | (indices >= num_stimuli)
    if bad.any():
        raise ValueError(f"{path}: stimulus index {indices[bad][0]} is outside [0, {num_stimuli})")
    if len(np.unique(indices)) != len(indices):
        raise ValueError(f"{path}: stimulus indices repeat")
    return indices


def read_families(path: str | os.PathLike) -> dict[str, str]:
    """Model -> family from a CSV with columns ``model`` and ``family``."""
    if not Path(path).is_file():
        raise ValueError(f"{path}: no such file")
    with Path(path).open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"model", "family"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected columns 'model' and 'family' (found {reader.fieldnames})")
        return {row["model"].strip(): row["family"].strip() for row in reader}


# ---------------------------------------------------------------------------------------------
# Results


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


def write_json(path: str | os.PathLike, data: dict) -> Path:
    """Write JSON with NaN as null (JSON has no NaN)."""
    path = Path(path)
    path.write_text(json.dumps(_jsonable(data), indent=2) + "\n")
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
        return None if math.isnan(value) else float(value)
    return value


__all__ = [
    "MISSING_MARKERS",
    "FeatureSet",
    "PredictionTable",
    "read_families",
    "read_features",
    "read_indices",
    "read_predictions",
    "save_predictions",
    "write_csv",
    "write_json",
]
