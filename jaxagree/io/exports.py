"""Exports for other tools: the count table in statsmodels' layout, and the CKA matrix as a long table.

* :func:`count_table` / :func:`write_count_table`: ``int64 [stimuli, categories]``, the table
  ``statsmodels.stats.inter_rater.fleiss_kappa`` takes (subjects in rows, categories in columns,
  what ``aggregate_raters(predictions.T, n_cat=num_categories)`` returns), as CSV, ``.npy`` or
  ``.npz``.
* :func:`cka_long_table` / :func:`write_cka_long`: one row per unordered pair of models
  (``model_a, model_b, cka``), with each side's family and metadata (e.g. a zoo file's
  ``[model.metadata]`` tables, read by :func:`read_model_metadata`), as CSV or Parquet.
"""

from __future__ import annotations

import csv
import datetime
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, no_type_check

import numpy as np

from jaxagree._checks import family_of_each, out_of_range, outside_categories, require_integer, require_num_categories
from jaxagree.io.predictions import PredictionTable

# A CSV count table is refused above this many cells (stimuli x categories): ImageNet's 50,000
# validation images x 1,000 classes (5e7 cells, some 100 MB of mostly "0,") is past it. Such a
# table is written as .npy or .npz (binary int64, compressed in an .npz).
MAX_CSV_CELLS = 20_000_000

_COUNT_SUFFIXES = (".csv", ".npy", ".npz")
_LONG_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
# Columns of the long CKA table that metadata fields may not shadow (a field f gives f_a and f_b).
_RESERVED_FIELDS = frozenset({"model", "family", "cka", "same_family"})


# ---------------------------------------------------------------------------------------------
# Count table


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def count_table(
    predictions: PredictionTable | np.ndarray,
    num_categories: int | None = None,
    *,
    models: Sequence[str] | None = None,
    stimuli: Sequence[str] | None = None,
    unequal_raters: Literal["error", "allow"] = "error",
) -> np.ndarray:
    """The count table in the layout ``statsmodels.stats.inter_rater.fleiss_kappa`` takes.

    ``table[i, j]`` is the number of models that predicted category ``j`` for stimulus ``i``: the
    ``[subjects, categories]`` table of statsmodels, equal to what its
    ``aggregate_raters(predictions.T, n_cat=num_categories)[0]`` returns (statsmodels puts
    subjects in rows and raters in columns, the transpose of jaxagree's ``[models, stimuli]``).
    There is one column per category, ``0 .. num_categories - 1``, those no model predicted
    included (as zeros): Fleiss' kappa does not change with them, but Randolph's kappa
    (``method="randolph"``, chance ``1 / categories``) counts the columns. ``aggregate_raters``
    with ``n_cat=None`` would instead keep only the categories that occur.

    Raters per stimulus: statsmodels' ``fleiss_kappa`` assumes every subject has the same number
    of raters (it asserts ``table.sum() == subjects * max(raters)``, and silently gives another
    value when assertions are off). A stimulus with a no-response (-1) from some model has fewer
    raters. By default (``unequal_raters="error"``) that is a ValueError naming such stimuli;
    ``unequal_raters="allow"`` returns the table anyway, for tools that accept varying raters
    (:func:`jaxagree.fleiss_kappa` does, with the convention its docstring gives).

    The counts come from :func:`jaxagree.count_predictions` (a count is at most the number of
    models, so the int64 result is exact).

    Args:
      predictions: a :class:`PredictionTable`, or ``int [models, stimuli]`` category indices
        with -1 = no response (at least 2 models).
      num_categories: the number of categories; required for an array, default for a table:
        its number of category names.
      models, stimuli: names used in error messages for an array (default: indices); a table's
        own names are used for a table.
      unequal_raters: ``"error"`` (default) or ``"allow"``, see above.

    Returns:
      ``int64 [stimuli, num_categories]``.

    Raises:
      ValueError: a prediction outside ``[-1, num_categories)`` (naming the model and stimulus),
        a non-integer or non-2-D array, or stimuli with fewer raters than others (naming them).
    """
    from jaxagree.counts import count_predictions

    if isinstance(predictions, PredictionTable):
        models, stimuli = predictions.models, predictions.stimuli
        if num_categories is None:
            num_categories = predictions.num_categories
        preds = np.asarray(predictions.predictions)
    else:
        if num_categories is None:
            raise ValueError("num_categories is required for a predictions array (it fixes the table's columns)")
        preds = np.asarray(predictions)
    if unequal_raters not in ("error", "allow"):
        raise ValueError(f"unequal_raters must be 'error' or 'allow', got {unequal_raters!r}")
    require_num_categories(num_categories)
    if preds.ndim != 2:
        raise ValueError(f"predictions must be 2-D [models, stimuli], got shape {preds.shape}")
    require_integer("predictions", preds)
    model_names = _names(models, preds.shape[0], "model", "models")
    stimulus_names = _names(stimuli, preds.shape[1], "stimulus", "stimuli")
    bad = outside_categories(preds, num_categories)
    if bad.any():
        model, stimulus = np.argwhere(bad)[0]
        raise out_of_range(f"the prediction of model {model_names[model]!r} on stimulus "
                           f"{stimulus_names[stimulus]!r} ({preds[model, stimulus]})", num_categories)
    table = np.asarray(count_predictions(preds, num_categories=num_categories)).astype(np.int64)
    raters = table.sum(axis=1)
    if unequal_raters == "error" and table.shape[0] and (raters != raters.max()).any():
        short = np.flatnonzero(raters != raters.max())
        listed = ", ".join(f"{stimulus_names[i]!r} ({raters[i]})" for i in short[:5])
        more = f" and {len(short) - 5} more" if len(short) > 5 else ""
        raise ValueError(
            f"statsmodels' fleiss_kappa needs the same number of raters on every stimulus; {len(short)} "
            f"stimuli have fewer than {raters.max()} (no-responses): {listed}{more}. Drop those stimuli, or pass "
            "unequal_raters='allow' to get the table anyway"
        )
    return table


def _names(names: Sequence[str] | None, count: int, what: str, plural: str) -> list[str]:
    if names is None:
        return [f"{what} {i}" for i in range(count)]
    names = [str(n) for n in names]
    if len(names) != count:
        raise ValueError(f"{len(names)} {what} names for {count} {plural}")
    return names


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def write_count_table(
    path: str | os.PathLike,
    table: PredictionTable,
    *,
    unequal_raters: Literal["error", "allow"] = "error",
    max_csv_cells: int = MAX_CSV_CELLS,
) -> Path:
    """Write :func:`count_table` of a prediction table; the format follows the suffix.

    * ``.csv``: a header ``stimulus, <category name>...`` and one row per stimulus. Refused above
      ``max_csv_cells`` cells (stimuli x categories; :data:`MAX_CSV_CELLS` = 2e7 by default):
      write ``.npy`` or ``.npz`` instead.
    * ``.npy``: the ``int64 [stimuli, categories]`` array alone.
    * ``.npz`` (compressed): ``counts`` and the string arrays ``stimuli``, ``categories`` and
      ``models`` (the raters); read with ``numpy.load(path)``, no pickle.

    Raises:
      ValueError: an unknown suffix, a CSV over the size limit or with a category named
        ``stimulus`` (it would repeat the first column's name), or what :func:`count_table` raises.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _COUNT_SUFFIXES:
        raise ValueError(f"{path}: unknown format {suffix!r} for a count table; expected .csv, .npy or .npz")
    if not isinstance(table, PredictionTable):
        raise ValueError(f"write_count_table needs a PredictionTable, got {type(table).__name__}; "
                         "for a bare array use count_table(...) and numpy.save")
    num_stimuli, num_categories = len(table.stimuli), table.num_categories
    if suffix == ".csv":
        if num_stimuli * num_categories > max_csv_cells:
            raise ValueError(
                f"{path}: a count table of {num_stimuli} stimuli x {num_categories} categories "
                f"({num_stimuli * num_categories} cells) is over the CSV limit of {max_csv_cells} cells; "
                f"write it as {path.with_suffix('.npy').name} or {path.with_suffix('.npz').name} instead"
            )
        if "stimulus" in table.categories:
            raise ValueError(f"{path}: a category is named 'stimulus', the CSV's first column; "
                             f"write {path.with_suffix('.npz').name} instead")
    counts = count_table(table, unequal_raters=unequal_raters)
    if suffix == ".npy":
        np.save(path, counts, allow_pickle=False)
    elif suffix == ".npz":
        np.savez_compressed(path, counts=counts, stimuli=np.asarray(table.stimuli, dtype=str),
                            categories=np.asarray(table.categories, dtype=str),
                            models=np.asarray(table.models, dtype=str))
    else:
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["stimulus", *table.categories])
            writer.writerows([stimulus, *row] for stimulus, row in zip(table.stimuli, counts.tolist()))
    return path


# ---------------------------------------------------------------------------------------------
# CKA as a long table


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def cka_long_table(
    matrix: np.ndarray,
    models: Sequence[str],
    metadata: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    families: Mapping[str, str] | Sequence[str] | None = None,
    diagonal: bool = False,
):
    """A model-by-model CKA matrix as a long ``pyarrow.Table``, one row per unordered pair.

    Rows are the pairs ``(i, j)``, ``i < j`` (``i <= j`` with ``diagonal=True``), in row-major
    order of the upper triangle. Columns:

    * ``model_a``, ``model_b`` (string): ``models[i]``, ``models[j]``;
    * ``cka`` (float64, the matrix's values exactly; NaN kept);
    * with ``families``: ``family_a``, ``family_b`` (string) and ``same_family`` (bool);
    * for each metadata field ``f`` (in order of first appearance over the models):
      ``f_a`` and ``f_b``, null for a model without that field. Scalar values (str, int, float,
      bool, dates) keep their type; lists and tables become JSON text.

    Args:
      matrix: ``float [models, models]``, symmetric (within 1e-5; NaN where its mirror is NaN),
        e.g. :attr:`CKAAnalysis.matrix <jaxagree.analysis.CKAAnalysis>`.
      models: the models' names, in the matrix's order; unique.
      metadata: optional mapping from model name to a mapping of field -> value (e.g. a zoo
        file's ``[model.metadata]``, see :func:`read_model_metadata`); names that are not models
        are ignored, but at least one model must be in it. Fields may not be named ``model``,
        ``family``, ``cka`` or ``same_family``.
      families: optional family of each model: a mapping from model name (every model needs one)
        or a sequence in the models' order.
      diagonal: also give each model's pair with itself.

    Raises:
      ValueError: naming what is wrong: a matrix that is not square or not symmetric (and the
        pair), a count of names that does not match, repeated names, a reserved or mixed-type
        metadata field (and the models).
    """
    import pyarrow as pa

    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"the CKA matrix must be square [models, models], got shape {matrix.shape}")
    if not np.issubdtype(matrix.dtype, np.floating) and not np.issubdtype(matrix.dtype, np.integer):
        raise ValueError(f"the CKA matrix must hold numbers, got dtype {matrix.dtype}")
    count = matrix.shape[0]
    if isinstance(models, (str, bytes)):
        raise ValueError(f"models must be a sequence of names, got the string {models!r:.60}")
    models = [str(m) for m in models]
    if len(models) != count:
        raise ValueError(f"{len(models)} model names for a {count} x {count} CKA matrix")
    if len(set(models)) != count:
        repeated = sorted({m for m in models if models.count(m) > 1})
        raise ValueError(f"model names must be unique; repeated: {', '.join(map(repr, repeated[:5]))}")
    values = matrix.astype(np.float64)
    _check_symmetric(values, models)
    rows, cols = np.triu_indices(count, k=0 if diagonal else 1)
    columns = {
        "model_a": pa.array([models[i] for i in rows], pa.string()),
        "model_b": pa.array([models[j] for j in cols], pa.string()),
        "cka": pa.array(values[rows, cols], pa.float64()),
    }
    if families is not None:
        family_of = family_of_each(families, models)
        columns["family_a"] = pa.array([family_of[i] for i in rows], pa.string())
        columns["family_b"] = pa.array([family_of[j] for j in cols], pa.string())
        columns["same_family"] = pa.array([family_of[i] == family_of[j] for i, j in zip(rows, cols)], pa.bool_())
    if metadata is not None:
        for field, per_model in _metadata_fields(metadata, models).items():
            try:
                typed = pa.array(per_model)
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                kinds = {}
                for model, value in zip(models, per_model):
                    if value is not None:
                        kinds.setdefault(type(value).__name__, model)
                shown = ", ".join(f"{kind} (model {model!r})" for kind, model in kinds.items())
                raise ValueError(f"metadata field {field!r} mixes value types: {shown}; give one type "
                                 "per field") from None
            columns[f"{field}_a"] = typed.take(pa.array(rows))
            columns[f"{field}_b"] = typed.take(pa.array(cols))
    return pa.table(columns)


def _check_symmetric(values: np.ndarray, models: list[str]) -> None:
    mirror = values.T
    both_nan = np.isnan(values) & np.isnan(mirror)
    close = np.isclose(values, mirror, rtol=1e-5, atol=1e-5) | both_nan
    if not close.all():
        i, j = np.argwhere(~close)[0]
        raise ValueError(f"the CKA matrix is not symmetric: ({models[i]!r}, {models[j]!r}) is {values[i, j]} but "
                         f"({models[j]!r}, {models[i]!r}) is {values[j, i]}; a long table has one value per pair")


def _metadata_fields(metadata: Mapping[str, Mapping[str, Any]], models: list[str]) -> dict[str, list]:
    """Field -> one value per model (None where a model lacks it), fields in first-seen order."""
    if not isinstance(metadata, Mapping):
        raise ValueError(f"metadata must be a mapping from model name to a mapping of fields, "
                         f"got {type(metadata).__name__}")
    if not any(m in metadata for m in models):
        raise ValueError(f"metadata names none of the models ({', '.join(map(repr, models[:5]))}...); "
                         f"it names {', '.join(map(repr, list(metadata)[:5]))}")
    fields: dict[str, list] = {}
    for index, model in enumerate(models):
        entry = metadata.get(model)
        if entry is None:
            continue
        if not isinstance(entry, Mapping):
            raise ValueError(f"metadata of model {model!r} must be a mapping of field -> value, "
                             f"got {type(entry).__name__}")
        for field, value in entry.items():
            field = str(field)
            if field in _RESERVED_FIELDS:
                raise ValueError(f"metadata of model {model!r}: field {field!r} would clash with the table's own "
                                 f"columns ({', '.join(sorted(_RESERVED_FIELDS))}); rename it")
            fields.setdefault(field, [None] * len(models))[index] = _scalar(value)
    return fields


def _scalar(value):
    if value is None or isinstance(value, (str, bool, int, float, datetime.date, datetime.time)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return json.dumps(value, sort_keys=True, default=str)


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def write_cka_long(
    path: str | os.PathLike,
    matrix: np.ndarray,
    models: Sequence[str],
    metadata: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    families: Mapping[str, str] | Sequence[str] | None = None,
    diagonal: bool = False,
) -> Path:
    """Write :func:`cka_long_table` as CSV (``.csv``) or Parquet (``.parquet``, ``.pq``).

    The CSV is pyarrow's: a header row, strings quoted, floats written so that they read back
    exactly (NaN as ``nan``), nulls as empty cells. Read it back with ``pyarrow.csv.read_csv``
    (give the name columns a string type if names look like numbers) or any CSV reader.
    """
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = Path(path)
    kind = _LONG_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: unknown format {path.suffix!r} for a long table; expected .csv or .parquet")
    table = cka_long_table(matrix, models, metadata, families=families, diagonal=diagonal)
    if kind == "parquet":
        pq.write_table(table, path)
    else:
        pacsv.write_csv(table, path)
    return path


def read_model_metadata(path: str | os.PathLike, models: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Model -> metadata fields, for :func:`cka_long_table`, from a zoo file or a CSV.

    * ``.toml``: a zoo file; each model's ``[model.metadata]`` table (only read: a ``python:``
      entry is not imported).
    * ``.csv``: a ``model`` column and one column per field; types inferred per column (numbers,
      booleans, text), empty cells are null.

    With ``models``, at least one of them must be in the file (the file is named in the error).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if path.suffix.lower() == ".toml":
        from jaxagree.models import read_zoo

        metadata = {spec.name: dict(spec.metadata) for spec in read_zoo(path, trust_code=True)}
    elif path.suffix.lower() == ".csv":
        import pyarrow as pa
        import pyarrow.csv as pacsv

        try:
            rows = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types={"model": pa.string()}))
        except (pa.ArrowException, OSError) as err:
            raise ValueError(f"{path}: cannot parse as a table: {err}") from None
        if "model" not in rows.column_names:
            raise ValueError(f"{path}: no 'model' column (columns: {', '.join(rows.column_names)})")
        metadata = {}
        for number, row in enumerate(rows.to_pylist(), 2):
            name = row.pop("model")
            if not name:
                raise ValueError(f"{path}: line {number} has an empty model")
            if name in metadata:
                raise ValueError(f"{path}: model {name!r} is listed twice")
            metadata[name] = row
    else:
        raise ValueError(f"{path}: model metadata must be a zoo file (.toml) or a CSV with a 'model' column")
    if models is not None and not any(m in metadata for m in models):
        raise ValueError(f"{path}: names none of the models ({', '.join(map(repr, list(models)[:5]))})")
    return metadata


__all__ = [
    "MAX_CSV_CELLS",
    "cka_long_table",
    "count_table",
    "read_model_metadata",
    "write_cka_long",
    "write_count_table",
]
