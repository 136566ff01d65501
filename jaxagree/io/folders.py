"""Prediction tables from a folder of CSV files: model-vs-human raw data, or one table per model.

Two layouts, told apart by the header of the folder's first CSV file (:func:`folder_kind`):

* **model-vs-human** (bethgelab/model-vs-human, ``raw-data/EXPERIMENT/``): one CSV per observer,
  human subjects and models alike, with columns ``subj, session, trial, rt, object_response,
  category, condition, imagename`` (header in any case; CRLF or LF line ends). The header has
  ``subj`` and ``imagename``. Read by :func:`read_model_vs_human`.
* **per-image tables**: one CSV per model (the model is the file's stem), a file-name column and a
  predicted-class column (e.g. ``file_name, predicted_class, predicted_probability``), with the
  true labels in a separate CSV (``file_name, label``). Read by :func:`read_per_image_predictions`.

Both give a :class:`~jaxagree.io.PredictionTable`; responses and labels follow the rule of
:func:`~jaxagree.io.read_predictions` (names are looked up, integers index the categories; a
response that is empty, ``na``, ``nan`` or ``none`` in any case is "no response").
"""

from __future__ import annotations

import bisect
import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxagree.io._categories import Column, categorise, classify_words, given_categories
from jaxagree.io.predictions import PredictionTable

# What model-vs-human's analyses use of each row; session, trial and rt are not needed.
MODEL_VS_HUMAN_COLUMNS = ("subj", "object_response", "category", "condition", "imagename")
# model-vs-human's rule (modelvshuman/plotting/decision_makers.py, get_human_and_model_decision_makers):
# a decision maker whose name starts with "subject-" is a human observer, any other a model.
HUMAN_PREFIX = "subject-"
RATER_SELECTIONS = ("all", "models", "humans")
FILE_COLUMNS = ("file_name", "filename", "file", "image", "image_name", "imagename", "image_id", "img", "path",
                "file_path", "filepath", "image_path")
PREDICTION_COLUMNS = ("predicted_class", "prediction", "predictions", "pred", "predicted_label", "predicted",
                      "top1", "top_1", "top-1", "predicted_class_name", "class_prediction")
LABEL_COLUMNS = ("label", "true_label", "true_class", "target", "ground_truth", "gt", "category", "class")


def short_image_name(imagename: str) -> str:
    """The image part of a model-vs-human ``imagename``, without the per-observer prefix.

    model-vs-human matches trials across observers by this name, not by the full file name (which
    starts with the trial number, session and observer, e.g. ``0001_s5n_dnn_0_airplane_00_...``):
    ``get_short_imagename`` in ``modelvshuman/helper/plotting_helper.py`` splits at ``_`` and
    keeps the last part, or the last two when the second-to-last starts with ``n0`` (an ImageNet
    synset, as in ``n02951358_5952.JPEG``); a name without ``_`` is kept whole.
    ``get_experimental_data`` there stores it as ``image_id``, by which ``ErrorConsistency``
    aligns two observers. This function follows that rule exactly::

        0000_cl_s01_bw_boat_40_n02951358_5952.JPEG -> n02951358_5952.JPEG
        0001_s5n_dnn_0_airplane_00_airplane1-bicycle2.png -> airplane1-bicycle2.png
    """
    parts = imagename.split("_")
    if len(parts) == 1:
        return parts[0]
    if parts[-2].startswith("n0"):
        return parts[-2] + "_" + parts[-1]
    return parts[-1]


def is_human(rater: str) -> bool:
    """Whether a model-vs-human observer is a human subject (its name starts with ``subject-``)."""
    return rater.startswith(HUMAN_PREFIX)


# ---------------------------------------------------------------------------------------------
# CSV files as text


def _csv_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
    if not files:
        raise ValueError(f"{folder}: no .csv files in the folder")
    return files


def _read_rows(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """(header as written, data rows, each data row's line in the file) of a CSV file; CRLF or LF
    line ends, a UTF-8 BOM allowed, blank lines skipped."""
    body, lines = [], []
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            if not header:
                raise ValueError(f"{path}: the file is empty (no header)")
            width = len(header)
            for row in reader:
                if len(row) != width:
                    if not any(cell.strip() for cell in row):
                        continue
                    raise ValueError(f"{path}: line {reader.line_num} has {len(row)} fields, the header {width}")
                body.append(row)
                lines.append(reader.line_num)
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text: {err}") from None
    except csv.Error as err:
        raise ValueError(f"{path}: cannot parse as CSV: {err}") from None
    return header, body, lines


def _unique_names(names: list[str], lines: list[int], path: Path, column: str, twice: str, why: str = "") -> None:
    """Raise for the first empty or repeated name (the loop runs only when there is one)."""
    distinct = set(names)
    if len(distinct) == len(names) and "" not in distinct:
        return
    first: dict[str, int] = {}
    for name, line in zip(names, lines):
        if not name:
            raise ValueError(f"{path}: line {line}: the file name ({column!r}) is empty")
        if name in first:
            raise ValueError(f"{path}: line {line}: image {name!r} {twice} (also line {first[name]}){why}")
        first[name] = line


def _header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return [name.strip() for name in next(csv.reader(handle), [])]
    except (UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{path}: cannot read the header: {err}") from None


def _column_index(header: list[str], path: Path) -> dict[str, int]:
    """Lower-cased column name -> position; two columns of one name (in any case) are an error."""
    index: dict[str, int] = {}
    for i, name in enumerate(header):
        key = name.lower()
        if key in index:
            raise ValueError(f"{path}: column {name!r} appears twice (names are compared ignoring case)")
        index[key] = i
    return index


def _find_column(index: dict[str, int], path: Path, candidates: Sequence[str], given: str | None,
                 what: str, option: str) -> int:
    if given is not None:
        if given.lower() not in index:
            raise ValueError(f"{path}: no column {given!r} ({option}); found: {', '.join(index)}")
        return index[given.lower()]
    for name in candidates:
        if name in index:
            return index[name]
    raise ValueError(f"{path}: no {what} column: expected one of {', '.join(candidates)} (or name it with "
                     f"{option}); found: {', '.join(index)}")


def folder_kind(folder: str | os.PathLike) -> str:
    """``"model-vs-human"`` when the first CSV file's header has ``subj`` and ``imagename`` (in any
    case), else ``"per-image"``."""
    first = _csv_files(Path(folder))[0]
    names = {name.lower() for name in _header(first)}
    return "model-vs-human" if {"subj", "imagename"} <= names else "per-image"


# ---------------------------------------------------------------------------------------------
# Responses and labels as category indices


def _text_column(name: str, values: list[str]) -> Column:
    """A response or label column of text values, coded as :func:`read_predictions` codes them.
    Text work (trimming, parsing) is done once per distinct value, not per row."""
    raw: dict[str, int] = {}
    codes = np.array([raw.setdefault(v, len(raw)) for v in values], np.int64)
    distinct: dict[str, int] = {}
    trimmed = np.array([distinct.setdefault(v.strip(), len(distinct)) for v in raw], np.int64)
    codes = trimmed[codes] if len(codes) else codes
    indices, names = classify_words(list(distinct))
    return Column(name, codes, np.array(indices, np.int64), names)


def _categorised(responses: list[str], labels: list[str] | None, categories, num_categories, folder, where):
    columns = [_text_column("response", responses)]
    if labels is not None:
        columns.append(_text_column("label", labels))
    names, codes = categorise(columns, categories, num_categories, folder, where)
    return names, codes[0], (codes[1] if labels is not None else None)


# ---------------------------------------------------------------------------------------------
# model-vs-human


def read_model_vs_human(
    folder: str | os.PathLike,
    *,
    raters: str = "all",
    categories: Sequence[str] | None = None,
) -> PredictionTable:
    """Read one model-vs-human experiment's raw data (``raw-data/EXPERIMENT/``) as a prediction table.

    Every ``.csv`` file in ``folder`` (sorted by name) holds trials of one or more observers, one
    row each, with columns ``subj, object_response, category, condition, imagename`` (``session``,
    ``trial`` and ``rt`` may be there and are not used; the header's case does not matter, as
    model-vs-human lower-cases it in ``read_all_csv_files_from_directory``). Each ``subj`` value is
    a rater, in order of first appearance. Trials are matched across observers by the image's
    :func:`short_image_name`, as model-vs-human matches them (``image_id``); a stimulus is an image,
    in order of first appearance, its label is ``category`` and its condition ``condition``.

    ``object_response`` ``na`` (or empty, ``nan``, ``none``) is "no response" (-1), which counts as
    wrong, as in model-vs-human (a trial is right when ``object_response == category``). An image
    an observer has no row for is "no response" too, but marked not shown in ``observed``: it is
    left out of that observer's accuracy and error consistency (model-vs-human requires two
    observers to have the same trials). Categories are the sorted names of the responses and labels
    (the 16 entry-level categories of model-vs-human's data), unless ``categories`` is given.

    ``jaxagree agreement`` writes error consistency over all of the experiment's trials at once
    (error_consistency.csv) and, in summary.json, its means within each condition too: the way
    model-vs-human's ``ErrorConsistency.get_result_df`` computes it (per condition, each pair
    aligned by ``image_id``, which its code asserts is the same set of images for every observer:
    so an image has one condition for all observers, which this reader checks).

    Args:
      folder: the experiment's folder.
      raters: ``"all"``, ``"models"`` or ``"humans"``: which observers to keep. An observer is
        human when its name starts with ``subject-`` (model-vs-human's own rule, in
        ``get_human_and_model_decision_makers``), a model otherwise.
      categories: the category names, in index order.

    Returns:
      A :class:`PredictionTable` with ``rater_groups`` (``"human"`` / ``"model"`` per rater),
      ``conditions`` (per stimulus) and ``observed``.

    Raises:
      ValueError: naming the file and line (or column) of a missing column, an empty ``subj`` or
        ``imagename``, an image that one observer rated twice, an image whose ``category`` or
        ``condition`` differs between rows, an unknown category; an empty folder; a selection with
        no rater.
    """
    if raters not in RATER_SELECTIONS:
        raise ValueError(f"raters={raters!r}: expected one of {', '.join(RATER_SELECTIONS)}")
    folder = Path(folder)
    keep = {"all": lambda r: True, "humans": is_human, "models": lambda r: not is_human(r)}[raters]
    rater_index: dict[str, int] = {}
    stimulus_index: dict[str, int] = {}
    rows_rater, rows_stimulus, responses, labels = [], [], [], []
    places: list[tuple[Path, int]] = []  # per kept row: its file and line
    first_seen: dict[tuple[int, int], int] = {}  # (rater, stimulus) -> kept row
    stimulus_info: dict[int, tuple[str, str, int]] = {}  # stimulus -> (category, condition, row)
    imagenames: list[str] = []
    for path in _csv_files(folder):
        header, body, lines = _read_rows(path)
        index = _column_index(header, path)
        absent = [name for name in MODEL_VS_HUMAN_COLUMNS if name not in index]
        if absent:
            raise ValueError(f"{path}: missing column(s) {', '.join(absent)}; model-vs-human raw data has subj, "
                             f"session, trial, rt, object_response, category, condition, imagename; found: "
                             f"{', '.join(header)}")
        subj, response, category, condition, imagename = (index[name] for name in MODEL_VS_HUMAN_COLUMNS)
        for row, line in zip(body, lines):
            rater = row[subj].strip()
            name = row[imagename].strip()
            for value, column in ((rater, "subj"), (name, "imagename")):
                if not value:
                    raise ValueError(f"{path}: line {line}: column {column!r} is empty")
            if not keep(rater):
                continue
            r = rater_index.setdefault(rater, len(rater_index))
            s = stimulus_index.setdefault(short_image_name(name), len(stimulus_index))
            row_id = len(places)
            if (r, s) in first_seen:
                other = first_seen[r, s]
                raise ValueError(
                    f"{path}: line {line}: observer {rater!r} rated image {short_image_name(name)!r} twice (also "
                    f"{places[other][0].name} line {places[other][1]}, imagename {imagenames[other]!r}); each "
                    "observer rates each image once"
                )
            first_seen[r, s] = row_id
            label, cond = row[category].strip(), row[condition].strip()
            if s in stimulus_info:
                known_label, known_cond, other = stimulus_info[s]
                for what, mine, theirs in (("category", label, known_label), ("condition", cond, known_cond)):
                    if mine != theirs:
                        raise ValueError(
                            f"{path}: line {line}: image {short_image_name(name)!r} has {what} {mine!r}, but "
                            f"{theirs!r} in {places[other][0].name} line {places[other][1]}; an image has one "
                            f"{what} for every observer"
                        )
            else:
                stimulus_info[s] = (label, cond, row_id)
            rows_rater.append(r)
            rows_stimulus.append(s)
            responses.append(row[response])
            labels.append(label)
            places.append((path, line))
            imagenames.append(name)
    if not places:
        raise ValueError(f"{folder}: no {'observer' if raters == 'all' else raters[:-1]} rows in the .csv files"
                         + ("" if raters == "all" else f" (--raters {raters}: humans are the subj names starting "
                            f"with {HUMAN_PREFIX!r})"))
    models, stimuli = list(rater_index), list(stimulus_index)

    def where(row: int) -> str:
        path, line = places[row]
        return f"observer {models[rows_rater[row]]!r}, image {stimuli[rows_stimulus[row]]!r} ({path.name} line {line})"

    names, codes, label_codes = _categorised(responses, labels, categories, None, folder, where)
    rater_of, stimulus_of = np.array(rows_rater), np.array(rows_stimulus)
    preds = np.full((len(models), len(stimuli)), -1, np.int32)
    preds[rater_of, stimulus_of] = codes
    observed = np.zeros(preds.shape, bool)
    observed[rater_of, stimulus_of] = True
    stim_labels = np.full(len(stimuli), -1, np.int32)
    stim_labels[stimulus_of] = label_codes
    conditions = [stimulus_info[s][1] for s in range(len(stimuli))]
    groups = ["human" if is_human(m) else "model" for m in models]
    return PredictionTable(preds, stim_labels, models, stimuli, names, groups, conditions, observed)


# ---------------------------------------------------------------------------------------------
# Per-image tables


def _read_labels(path: Path, file_column: str | None, label_column: str | None) -> tuple[list, list, list[int]]:
    """(image names, labels, each row's line) of a labels file."""
    if not path.is_file():
        raise ValueError(f"{path}: no such labels file")
    header, body, lines = _read_rows(path)
    index = _column_index(header, path)
    names_at = _find_column(index, path, FILE_COLUMNS, file_column if file_column and file_column.lower() in index
                            else None, "file-name", "--file-column")
    label_at = _find_column(index, path, LABEL_COLUMNS, label_column, "label", "--label-column")
    names = [row[names_at].strip() for row in body]
    _unique_names(names, lines, path, header[names_at], "is listed twice")
    if not names:
        raise ValueError(f"{path}: the labels file has no rows")
    return names, [row[label_at] for row in body], lines


def read_per_image_predictions(
    folder: str | os.PathLike,
    *,
    labels: str | os.PathLike | None = None,
    file_column: str | None = None,
    prediction_column: str | None = None,
    label_column: str | None = None,
    categories: Sequence[str] | None = None,
    num_categories: int | None = None,
) -> PredictionTable:
    """Read a folder of per-image prediction tables, one ``.csv`` per model, as one prediction table.

    Each file (sorted by name; the model is the file's stem) has a row per image with a file-name
    column (the first of :data:`FILE_COLUMNS` present, e.g. ``file_name``, ``filename``,
    ``image``, ``path``; or ``file_column``) and a predicted-class column (the first of
    :data:`PREDICTION_COLUMNS`, e.g. ``predicted_class``, ``prediction``, ``pred``, ``top1``; or
    ``prediction_column``); other columns (``predicted_probability``) are ignored. Column names
    are compared ignoring case. Rows are matched across files by the file name as written (spaces
    trimmed), in any order; an image a file lacks is "no response" for that model.

    ``labels`` is a CSV with a file-name column (as above) and a label column (the first of
    :data:`LABEL_COLUMNS`, e.g. ``label``, ``true_label``, ``target``; or ``label_column``). With
    it the stimuli are the labels file's images in its order (an image no model rated has no
    responses), and an image in a prediction file that the labels file lacks is an error. Without
    it the stimuli are the images in order of first appearance, unlabelled.

    Args:
      folder: the folder of prediction tables.
      labels: the labels CSV, or None.
      file_column, prediction_column, label_column: column names instead of the detected ones.
      categories: category names in index order; ``num_categories``: for integer classes.

    Raises:
      ValueError: naming the file and line or column: no file-name or prediction column, an
        empty file name, an image listed twice in one file, an image missing from the labels file,
        an unknown or out-of-range class; an empty folder.
    """
    folder = Path(folder)
    files = _csv_files(folder)
    stimulus_index: dict[str, int] = {}
    label_values = label_lines = None
    if labels is not None:
        label_names, label_values, label_lines = _read_labels(Path(labels), file_column, label_column)
        stimulus_index = {name: i for i, name in enumerate(label_names)}
    models, rows_stimulus, responses = [], [], []
    starts, places = [], []  # per file: its first row, and (path, each row's line)
    for path in files:
        header, body, lines = _read_rows(path)
        index = _column_index(header, path)
        names_at = _find_column(index, path, FILE_COLUMNS, file_column, "file-name", "--file-column")
        pred_at = _find_column(index, path, PREDICTION_COLUMNS, prediction_column, "predicted-class",
                               "--prediction-column")
        names = [row[names_at].strip() for row in body]
        _unique_names(names, lines, path, header[names_at], "appears twice", "; a model predicts each image once")
        if label_values is not None and not stimulus_index.keys() >= set(names):
            line, name = next((line, n) for n, line in zip(names, lines) if n not in stimulus_index)
            raise ValueError(f"{path}: line {line}: image {name!r} is not in the labels file {labels}")
        models.append(path.stem)
        starts.append(len(responses))
        places.append((path, lines))
        rows_stimulus.extend([stimulus_index.setdefault(n, len(stimulus_index)) for n in names])
        responses.extend([row[pred_at] for row in body])
    if not responses:
        raise ValueError(f"{folder}: the prediction tables have no rows")
    stimuli = list(stimulus_index)
    num_responses = len(responses)
    rows_model = np.repeat(np.arange(len(models)), np.diff([*starts, num_responses]))
    rows_stimulus = np.array(rows_stimulus, np.int64)

    def where(row: int) -> str:
        if row >= num_responses:  # a row of the labels file
            at = row - num_responses
            return f"image {stimuli[at]!r} ({Path(labels).name} line {label_lines[at]})"
        m = bisect.bisect_right(starts, row) - 1
        path, lines = places[m]
        return f"model {models[m]!r}, image {stimuli[rows_stimulus[row]]!r} ({path.name} line {lines[row - starts[m]]})"

    # One vocabulary for responses and labels: both columns span the responses' rows, then the labels'.
    extra = [] if label_values is None else [""] * len(label_values)
    label_rows = None if label_values is None else [""] * num_responses + label_values
    names, codes, label_codes = _categorised(responses + extra, label_rows, categories, num_categories, folder, where)
    preds = np.full((len(models), len(stimuli)), -1, np.int32)
    preds[rows_model, rows_stimulus] = codes[:num_responses]
    stim_labels = None if label_values is None else label_codes[num_responses:].astype(np.int32)
    return PredictionTable(preds, stim_labels, models, stimuli, names)


def read_prediction_folder(
    folder: str | os.PathLike,
    *,
    raters: str | None = None,
    labels: str | os.PathLike | None = None,
    file_column: str | None = None,
    prediction_column: str | None = None,
    label_column: str | None = None,
    categories: Sequence[str] | None = None,
    num_categories: int | None = None,
) -> PredictionTable:
    """Read a folder of CSV files of either layout (see :func:`folder_kind`).

    model-vs-human raw data takes ``raters`` and ``categories`` (labels come from its
    ``category`` column); per-image tables take the rest. An option of the other layout is an
    error, so that nothing given is silently ignored.
    """
    kind = folder_kind(folder)
    if kind == "model-vs-human":
        given = [option for option, value in (("labels", labels), ("file_column", file_column),
                                              ("prediction_column", prediction_column),
                                              ("label_column", label_column), ("num_categories", num_categories))
                 if value is not None]
        if given:
            raise ValueError(f"{folder}: model-vs-human raw data (columns subj, imagename) takes no "
                             f"{', '.join(given)}: labels are its 'category' column and responses 'object_response'")
        return read_model_vs_human(folder, raters="all" if raters is None else raters, categories=categories)
    if raters not in (None, "all"):
        raise ValueError(f"{folder}: raters={raters!r} needs model-vs-human raw data (columns subj, imagename); "
                         "per-image tables are all models")
    given_categories(categories, num_categories)
    return read_per_image_predictions(folder, labels=labels, file_column=file_column,
                                      prediction_column=prediction_column, label_column=label_column,
                                      categories=categories, num_categories=num_categories)


__all__ = [
    "FILE_COLUMNS",
    "HUMAN_PREFIX",
    "LABEL_COLUMNS",
    "MODEL_VS_HUMAN_COLUMNS",
    "PREDICTION_COLUMNS",
    "folder_kind",
    "is_human",
    "read_model_vs_human",
    "read_per_image_predictions",
    "read_prediction_folder",
    "short_image_name",
]
