"""Prediction tables: many models' responses on one stimulus set, read from any common format.

* Long tables, CSV/TSV or Parquet, one row per (model, stimulus) with columns ``model``,
  ``stimulus``, ``response`` and optionally ``label``. A response that is empty, ``na``, ``nan``
  or ``none`` (any case), a null, or ``-1`` is "no response"; a (model, stimulus) pair absent
  from the table is "no response" too. A missing label marks an unlabelled stimulus.
* Wide arrays: ``.npy`` holding ``int [models, stimuli]`` (-1 = no response), or ``.npz`` with
  ``predictions`` and optionally ``labels [stimuli]``, ``models``, ``stimuli`` and
  ``categories`` (string arrays), and ``rater_groups [models]``, ``conditions [stimuli]``
  (strings) and ``observed`` (bool ``[models, stimuli]``) as :func:`save_predictions` writes them.

Responses and labels follow one rule (see :func:`read_predictions`): integers are category
indices, names are looked up; without a category list a table is all integers or all names.
Models and stimuli keep the order of their first appearance in a long table. Nothing is
unpickled, and a category index is bounded (:data:`MAX_CATEGORIES`) before anything is sized by it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxagree._checks import MAX_CATEGORIES, out_of_range, outside_categories
from jaxagree.io._categories import (
    MISSING_MARKERS,
    Column,
    categorise,
    classify_words,
    given_categories,
    too_large,
)
from jaxagree.io.arrays import check_prediction_array, labels_array, load_arrays, names_array

_LONG_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}


class PredictionTable(NamedTuple):
    """Predictions of many models on one stimulus set, with names.

    Attributes:
      predictions: ``int32 [models, stimuli]`` category index; -1 = no response.
      labels: ``int32 [stimuli]`` true category (-1 = unlabelled), or None without labels.
      models: model names, one per row of ``predictions``.
      stimuli: stimulus ids, one per column.
      categories: category names; index ``j`` of ``predictions`` means ``categories[j]``.
      rater_groups: optional group of each rater (e.g. ``"human"`` or ``"model"``), one per row;
        None: one group. Error consistency is summarised within and between groups.
      conditions: optional experimental condition of each stimulus (e.g. a noise level), one per
        column; None: no conditions. Results are also given per condition.
      observed: optional ``bool [models, stimuli]``: whether the rater was shown the stimulus at
        all; None: every rater saw every stimulus. A stimulus shown without an answer (-1 with
        ``observed`` True) counts as wrong; one not shown is left out of that rater's accuracy and
        error consistency, as a trial absent from an observer's file is in model-vs-human.
    """

    predictions: np.ndarray
    labels: np.ndarray | None
    models: list[str]
    stimuli: list[str]
    categories: list[str]
    rater_groups: list[str] | None = None
    conditions: list[str] | None = None
    observed: np.ndarray | None = None

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

    Responses and labels alike: an integer is a category index and a name is looked up. With
    ``categories``, integers index that list (even names that look like numbers) and names must be
    in it. Without it, a table is either all integers (categories ``0 .. max``, or
    ``num_categories``) or all names (the sorted union of responses and labels): a mix is an error
    that names a row of each kind. A negative value other than -1 is an error.

    Args:
      path: the file.
      categories: the category vocabulary, in index order.
      num_categories: for integer responses, the number of categories (default: max + 1); at
        most :data:`MAX_CATEGORIES`.

    Raises:
      ValueError: naming the file and the offending column, model, stimulus or value.
    """
    path = Path(path)
    if not path.is_file():
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
        try:
            return pq.read_table(path)
        except (pa.ArrowException, OSError) as err:
            raise ValueError(f"{path}: not a readable Parquet file: {err}") from None
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
    except (pa.ArrowException, OSError) as err:  # ArrowInvalid covers bad UTF-8 and ragged rows
        raise ValueError(f"{path}: cannot parse as a table: {err}") from None


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


def _parse_column(column, path: Path, name: str) -> Column:
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
        distinct, codes = np.unique(np.where(missing, -1, values).astype(np.int64), return_inverse=True)
        return Column(name, codes.reshape(-1), distinct, [None] * len(distinct))
    codes, distinct = _dictionary(column)
    # The trailing None is what a null code (-1) picks.
    indices, names = classify_words(distinct + [None])
    codes = np.where(codes < 0, len(distinct), codes)
    return Column(name, codes, np.array(indices, np.int64), names)


def _read_long(path: Path, kind: str, categories, num_categories) -> PredictionTable:
    import pyarrow as pa

    table = _load_arrow(path, kind)
    try:
        return _table_from_arrow(table, path, categories, num_categories)
    except pa.ArrowException as err:  # e.g. a binary Parquet column that is not UTF-8 text
        raise ValueError(f"{path}: cannot read the table's values: {err}") from None


def _table_from_arrow(table, path: Path, categories, num_categories) -> PredictionTable:
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
    columns = [_parse_column(table.column("response"), path, "response")]
    if "label" in table.column_names:
        columns.append(_parse_column(table.column("label"), path, "label"))

    def where(row: int) -> str:
        return f"model {models[model_code[row]]!r}, stimulus {stimuli[stim_code[row]]!r} (row {row})"

    names, codes = categorise(columns, categories, num_categories, path, where)
    preds = _scatter_wide(model_code, stim_code, codes[0], len(models), len(stimuli), path, where)
    stim_labels = None
    if len(codes) > 1:
        stim_labels = _stimulus_labels(stim_code, codes[1], len(stimuli), stimuli, names, path)
    return PredictionTable(preds, stim_labels, models, stimuli, names)


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
    loaded = load_arrays(path)
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
    num_models, num_stimuli = check_prediction_array(path, preds.shape, preds.dtype)
    models, stimuli, labels, categories, num_categories = table_fields(path, arrays, num_models, num_stimuli,
                                                                       categories, num_categories)
    check_table_values(path, preds, labels, models, stimuli, num_categories)
    if num_categories is None:
        num_categories = int(max(preds.max(), labels.max() if labels is not None else -1)) + 1
        if num_categories < 1:
            raise ValueError(f"{path}: no model gave any response")
    names = list(categories) if categories is not None else [str(i) for i in range(num_categories)]
    labels = None if labels is None else labels.astype(np.int32)
    return PredictionTable(preds.astype(np.int32), labels, models, stimuli, names,
                           *optional_fields(arrays, num_models, num_stimuli, path))


def table_fields(path, arrays: dict, num_models: int, num_stimuli: int, categories, num_categories) -> tuple:
    """(models, stimuli, labels, categories, num_categories) of a stored table's ``arrays`` (an
    ``.npz``'s members besides ``predictions``): names checked against the counts, categories from
    the arguments or else the file."""
    models = names_array(arrays.get("models"), num_models, "model_", path, "models", "predictions")
    stimuli = names_array(arrays.get("stimuli"), num_stimuli, "", path, "stimuli", "predictions")
    labels = labels_array(arrays, num_stimuli, path)
    if categories is None and "categories" in arrays:
        categories = [str(c) for c in np.asarray(arrays["categories"]).reshape(-1).tolist()]
    categories, num_categories = given_categories(categories, num_categories)
    return models, stimuli, labels, categories, num_categories


def check_table_values(path, preds: np.ndarray, labels: np.ndarray | None, models: list[str], stimuli: list[str],
                       num_categories: int | None, first_stimulus: int = 0) -> None:
    """A ``ValueError`` naming the model and stimulus of the first prediction or label outside
    ``[-1, num_categories)`` (outside what any table may hold when ``num_categories`` is None).
    ``preds`` may be a block of stimuli starting at ``first_stimulus``; ``labels`` are whole."""
    # The bound applies before the range check: values far past it must not size anything.
    limit = num_categories if num_categories is not None else MAX_CATEGORIES
    for name, values in (("predictions", preds), ("labels", labels)):
        if values is None:
            continue
        bad = outside_categories(values, limit)
        if bad.any():
            at = np.argwhere(bad)[0]
            place = (
                f"model {models[at[0]]!r}, stimulus {stimuli[first_stimulus + at[1]]!r}" if values.ndim == 2
                else f"stimulus {stimuli[at[0]]!r}"
            )
            if num_categories is None and values[tuple(at)] >= limit:
                raise too_large(path, f"{name} value {values[tuple(at)]:,} at {place}")
            raise out_of_range(f"{path}: {name} value {values[tuple(at)]} at {place}", limit)


def optional_fields(arrays: dict, num_models: int, num_stimuli: int, path: Path) -> tuple:
    """``rater_groups``, ``conditions`` and ``observed`` of an ``.npz``, each None where absent."""

    def strings(field: str, count: int, counted: str) -> list[str] | None:
        values = arrays.get(field)
        if values is None:
            return None
        entries = [str(v) for v in np.asarray(values).reshape(-1).tolist()]
        if np.ndim(values) != 1 or len(entries) != count:
            raise ValueError(f"{path}: {field} has {len(entries)} entries but there are {count} {counted}")
        return entries

    observed = arrays.get("observed")
    if observed is not None and (observed.dtype != bool or observed.shape != (num_models, num_stimuli)):
        raise ValueError(f"{path}: observed must be bool [{num_models}, {num_stimuli}] (models, stimuli), got "
                         f"{observed.dtype} {observed.shape}")
    return strings("rater_groups", num_models, "models"), strings("conditions", num_stimuli, "stimuli"), observed


def save_predictions(path: str | os.PathLike, table: PredictionTable) -> Path:
    """Write a :class:`PredictionTable` as ``.npz`` (plain arrays; no pickle needed to read), with
    its ``rater_groups``, ``conditions`` and ``observed`` where it has them."""
    path = Path(path)
    arrays = {
        "predictions": np.asarray(table.predictions, np.int32),
        "models": np.asarray(table.models, dtype=str),
        "stimuli": np.asarray(table.stimuli, dtype=str),
        "categories": np.asarray(table.categories, dtype=str),
    }
    if table.labels is not None:
        arrays["labels"] = np.asarray(table.labels, np.int32)
    for field in ("rater_groups", "conditions"):
        if getattr(table, field) is not None:
            arrays[field] = np.asarray(getattr(table, field), dtype=str)
    if table.observed is not None:
        arrays["observed"] = np.asarray(table.observed, bool)
    np.savez_compressed(path, **arrays)
    return path


__all__ = ["MAX_CATEGORIES", "MISSING_MARKERS", "PredictionTable", "read_predictions", "save_predictions"]
