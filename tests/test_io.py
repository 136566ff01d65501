"""Prediction tables in and results out: long CSV/TSV/Parquet, wide .npy/.npz, bad input, writers."""

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxagree.io import PredictionTable, read_predictions, save_predictions, write_csv, write_json


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _csv(path: Path, rows, header=("model", "stimulus", "response", "label"), sep=",") -> Path:
    lines = [sep.join(header)] + [sep.join(str(v) for v in row) for row in rows]
    return _write(path, "\n".join(lines) + "\n")


def _assert_tables_equal(got: PredictionTable, want: PredictionTable) -> None:
    np.testing.assert_array_equal(got.predictions, want.predictions)
    assert got.predictions.dtype == np.int32
    assert got.models == want.models
    assert got.stimuli == want.stimuli
    assert got.categories == want.categories
    if want.labels is None:
        assert got.labels is None
    else:
        assert got.labels is not None
        assert got.labels.dtype == np.int32
        np.testing.assert_array_equal(got.labels, want.labels)


# ---------------------------------------------------------------------------------------------
# Long tables with string responses

# Models appear as resnet, vit, clip; stimuli as img3, img1, img2. "zebra" occurs only as a label.
STRING_ROWS = [
    ("resnet", "img3", "dog", "dog"),
    ("resnet", "img1", "cat", "cat"),
    ("vit", "img3", "cat", "dog"),
    ("vit", "img2", "bird", "zebra"),
    ("clip", "img1", " NA ", "cat"),
    ("clip", "img2", "fish", ""),
    ("resnet", "img2", "bird", ""),
]
STRING_CATEGORIES = ["bird", "cat", "dog", "fish", "zebra"]
# Rows: resnet, vit, clip. Columns: img3, img1, img2. (vit, img1) and (clip, img3) are absent.
STRING_PREDS = np.array(
    [
        [2, 1, 0],  # resnet: dog, cat, bird
        [1, -1, 0],  # vit: cat, (absent), bird
        [-1, -1, 3],  # clip: (absent), NA, fish
    ]
)
STRING_LABELS = np.array([2, 1, 4])  # img3 dog, img1 cat, img2 zebra


def test_long_csv_string_responses_and_labels(tmp_path):
    table = read_predictions(_csv(tmp_path / "preds.csv", STRING_ROWS))
    assert isinstance(table, PredictionTable)
    assert table.models == ["resnet", "vit", "clip"]
    assert table.stimuli == ["img3", "img1", "img2"]
    assert table.categories == STRING_CATEGORIES
    assert table.num_categories == 5
    assert table.predictions.shape == (3, 3)
    assert table.predictions.dtype == np.int32
    np.testing.assert_array_equal(table.predictions, STRING_PREDS)
    np.testing.assert_array_equal(table.labels, STRING_LABELS)
    # Cell by cell against the rows themselves.
    for model, stimulus, response, _ in STRING_ROWS:
        got = table.predictions[table.models.index(model), table.stimuli.index(stimulus)]
        want = -1 if response.strip().lower() == "na" else table.categories.index(response)
        assert got == want, (model, stimulus)


def test_long_csv_without_label_column_has_no_labels(tmp_path):
    rows = [row[:3] for row in STRING_ROWS]
    table = read_predictions(_csv(tmp_path / "preds.csv", rows, header=("model", "stimulus", "response")))
    assert table.labels is None
    # Without the labels, "zebra" is no longer part of the vocabulary.
    assert table.categories == ["bird", "cat", "dog", "fish"]
    np.testing.assert_array_equal(table.predictions, STRING_PREDS)


def test_long_csv_columns_in_any_order_and_extra_columns(tmp_path):
    header = ("score", "label", "response", "stimulus", "model")
    rows = [(0.5, lab, resp, stim, model) for model, stim, resp, lab in STRING_ROWS]
    table = read_predictions(_csv(tmp_path / "preds.csv", rows, header=header))
    want = PredictionTable(
        STRING_PREDS, STRING_LABELS, ["resnet", "vit", "clip"], ["img3", "img1", "img2"], STRING_CATEGORIES
    )
    _assert_tables_equal(table, want)


def test_explicit_categories_fix_the_index_order(tmp_path):
    categories = ["zebra", "dog", "cat", "bird", "fish", "unused"]
    table = read_predictions(_csv(tmp_path / "preds.csv", STRING_ROWS), categories=categories)
    assert table.categories == categories
    assert table.num_categories == 6
    # Remap the expectation built on the sorted vocabulary to the given order.
    remap = np.array([categories.index(name) for name in STRING_CATEGORIES])
    want_preds = np.where(STRING_PREDS >= 0, remap[np.maximum(STRING_PREDS, 0)], -1)
    np.testing.assert_array_equal(table.predictions, want_preds)
    np.testing.assert_array_equal(table.labels, remap[STRING_LABELS])
    np.testing.assert_array_equal(table.labels, [1, 2, 0])


def test_tsv_reads_like_csv(tmp_path):
    csv_table = read_predictions(_csv(tmp_path / "preds.csv", STRING_ROWS))
    tsv_table = read_predictions(_csv(tmp_path / "preds.tsv", STRING_ROWS, sep="\t"))
    _assert_tables_equal(tsv_table, csv_table)


def test_tsv_with_commas_inside_names(tmp_path):
    rows = [("net, v1", "a,b", "cat", ""), ("net, v2", "a,b", "dog", "")]
    table = read_predictions(_csv(tmp_path / "preds.tsv", rows, sep="\t"))
    assert table.models == ["net, v1", "net, v2"]
    assert table.stimuli == ["a,b"]
    np.testing.assert_array_equal(table.predictions, [[0], [1]])


# ---------------------------------------------------------------------------------------------
# Long tables with integer responses

INT_ROWS = [
    ("m0", "s0", 3, 1),
    ("m1", "s0", 1, 1),
    ("m0", "s1", 0, 5),
    ("m2", "s1", 2, 5),
    ("m1", "s2", 3, ""),
    ("m2", "s2", -1, ""),
]
INT_PREDS = np.array(
    [
        [3, 0, -1],  # m0
        [1, -1, 3],  # m1
        [-1, 2, -1],  # m2
    ]
)
INT_LABELS = np.array([1, 5, -1])


def test_integer_responses_num_categories_inferred_from_max(tmp_path):
    table = read_predictions(_csv(tmp_path / "preds.csv", INT_ROWS))
    # The largest value anywhere is the label 5, so 6 categories.
    assert table.num_categories == 6
    assert table.categories == [str(i) for i in range(6)]
    assert table.models == ["m0", "m1", "m2"]
    assert table.stimuli == ["s0", "s1", "s2"]
    np.testing.assert_array_equal(table.predictions, INT_PREDS)
    np.testing.assert_array_equal(table.labels, INT_LABELS)


def test_integer_responses_num_categories_inferred_without_labels(tmp_path):
    rows = [row[:3] for row in INT_ROWS]
    table = read_predictions(_csv(tmp_path / "preds.csv", rows, header=("model", "stimulus", "response")))
    assert table.num_categories == 4
    assert table.labels is None
    np.testing.assert_array_equal(table.predictions, INT_PREDS)


def test_integer_responses_num_categories_given(tmp_path):
    table = read_predictions(_csv(tmp_path / "preds.csv", INT_ROWS), num_categories=10)
    assert table.num_categories == 10
    assert table.categories == [str(i) for i in range(10)]
    np.testing.assert_array_equal(table.predictions, INT_PREDS)
    np.testing.assert_array_equal(table.labels, INT_LABELS)


def test_integer_responses_are_indices_that_given_category_names_name(tmp_path):
    """As for .npy/.npz arrays: integer responses index the given list, even numeric names."""
    rows = [("a", "x", 0, ""), ("b", "x", 1, ""), ("a", "y", 2, ""), ("b", "y", 0, "")]
    table = read_predictions(_csv(tmp_path / "preds.csv", rows), categories=["2", "0", "1"])
    assert table.categories == ["2", "0", "1"]
    np.testing.assert_array_equal(table.predictions, [[0, 2], [1, 0]])
    named = read_predictions(_csv(tmp_path / "named.csv", rows), categories=["cat", "dog", "eel"])
    assert named.categories == ["cat", "dog", "eel"]
    np.testing.assert_array_equal(named.predictions, [[0, 2], [1, 0]])
    with pytest.raises(ValueError, match=r"response 2 at .* is outside \[-1, num_categories=2\)"):
        read_predictions(_csv(tmp_path / "short.csv", rows), categories=["cat", "dog"])


def test_num_categories_with_category_names_is_an_error(tmp_path):
    rows = [("a", "x", "cat"), ("b", "x", "dog")]
    path = _csv(tmp_path / "preds.csv", rows, header=("model", "stimulus", "response"))
    with pytest.raises(ValueError, match="num_categories is for integer responses"):
        read_predictions(path, num_categories=5)
    with pytest.raises(ValueError, match="num_categories=5 disagrees with the 2 given categories"):
        read_predictions(path, categories=["cat", "dog"], num_categories=5)


def test_integer_responses_compare_numerically_not_as_text(tmp_path):
    # 10 > 9 numerically even though "10" < "9" as text.
    rows = [("a", "x", 10, 9), ("b", "x", 9, 9), ("a", "y", 2, 10), ("b", "y", 10, 10)]
    table = read_predictions(_csv(tmp_path / "preds.csv", rows))
    assert table.num_categories == 11
    np.testing.assert_array_equal(table.predictions, [[10, 2], [9, 10]])
    np.testing.assert_array_equal(table.labels, [9, 10])


# ---------------------------------------------------------------------------------------------
# Missing responses

MARKERS = ["", "na", "NA", "nA", "NaN", "nan", "NAN", "None", "NONE", "none", "  na ", " NaN", "None  "]


@pytest.mark.parametrize("marker", MARKERS)
def test_missing_markers_with_integer_responses(tmp_path, marker):
    text = f"model,stimulus,response\nm1,s1,2\nm2,s1,{marker}\nm1,s2,-1\nm2,s2,0\n"
    table = read_predictions(_write(tmp_path / "preds.csv", text))
    assert table.num_categories == 3
    np.testing.assert_array_equal(table.predictions, [[2, -1], [-1, 0]])


@pytest.mark.parametrize("marker", MARKERS)
def test_missing_markers_with_string_responses(tmp_path, marker):
    text = f'model,stimulus,response\nm1,s1,cat\nm2,s1,"{marker}"\nm1,s2,dog\nm2,s2,cat\n'
    table = read_predictions(_write(tmp_path / "preds.csv", text))
    assert table.categories == ["cat", "dog"]
    np.testing.assert_array_equal(table.predictions, [[0, 1], [-1, 0]])


def test_all_markers_in_one_table_and_absent_pairs(tmp_path):
    rows = [("m0", f"s{i}", marker) for i, marker in enumerate(MARKERS)]
    rows += [("m0", "s_last", "4"), ("m1", "s_last", "1"), ("m1", "s0", "-1"), ("m1", "s1", "3")]
    table = read_predictions(_csv(tmp_path / "preds.csv", rows, header=("model", "stimulus", "response")))
    stimuli = [f"s{i}" for i in range(len(MARKERS))] + ["s_last"]
    assert table.stimuli == stimuli
    assert table.models == ["m0", "m1"]
    want = np.full((2, len(stimuli)), -1)
    want[0, -1], want[1, -1], want[1, 1] = 4, 1, 3
    np.testing.assert_array_equal(table.predictions, want)
    assert table.num_categories == 5


def test_missing_labels_mark_unlabelled_stimuli(tmp_path):
    rows = [("a", "x", "cat", "None"), ("b", "x", "dog", "na"), ("a", "y", "cat", "dog"), ("b", "y", "cat", "")]
    table = read_predictions(_csv(tmp_path / "preds.csv", rows))
    assert table.categories == ["cat", "dog"]
    np.testing.assert_array_equal(table.labels, [-1, 1])


# ---------------------------------------------------------------------------------------------
# Parquet


def _frame(rows):
    return {name: [row[i] for row in rows] for i, name in enumerate(("model", "stimulus", "response", "label"))}


def test_parquet_integer_columns_with_nulls_match_csv(tmp_path):
    csv_table = read_predictions(_csv(tmp_path / "preds.csv", INT_ROWS))
    columns = _frame(INT_ROWS)
    for dtype in (pa.int64(), pa.int32(), pa.int16(), pa.int8()):
        response = [None if v == -1 else v for v in columns["response"]]
        label = [None if v == "" else v for v in columns["label"]]
        arrow = pa.table(
            {
                "model": columns["model"],
                "stimulus": columns["stimulus"],
                "response": pa.array(response, dtype),
                "label": pa.array(label, dtype),
            }
        )
        path = tmp_path / f"preds_{dtype}.parquet"
        pq.write_table(arrow, path)
        _assert_tables_equal(read_predictions(path), csv_table)


def test_parquet_integer_minus_one_is_no_response(tmp_path):
    arrow = pa.table({"model": ["a", "b"], "stimulus": ["x", "x"], "response": pa.array([-1, 2], pa.int64())})
    pq.write_table(arrow, tmp_path / "preds.parquet")
    table = read_predictions(tmp_path / "preds.parquet")
    np.testing.assert_array_equal(table.predictions, [[-1], [2]])
    assert table.num_categories == 3


def test_parquet_float_columns_with_nan_and_null_match_csv(tmp_path):
    csv_table = read_predictions(_csv(tmp_path / "preds.csv", INT_ROWS))
    columns = _frame(INT_ROWS)
    # Missing as NaN in one column, as a null in the other, and as -1.0 once.
    response = [float("nan") if i == 5 else float(v) for i, v in enumerate(columns["response"])]
    response[5] = -1.0
    response_nan = [float("nan") if v == -1 else float(v) for v in columns["response"]]
    label = [None if v == "" else float(v) for v in columns["label"]]
    for resp in (response, response_nan):
        arrow = pa.table(
            {
                "model": columns["model"],
                "stimulus": columns["stimulus"],
                "response": pa.array(resp, pa.float64()),
                "label": pa.array(label, pa.float32()),
            }
        )
        pq.write_table(arrow, tmp_path / "preds.parquet")
        _assert_tables_equal(read_predictions(tmp_path / "preds.parquet"), csv_table)


def test_parquet_string_columns_with_nulls_match_csv(tmp_path):
    csv_table = read_predictions(_csv(tmp_path / "preds.csv", STRING_ROWS))
    columns = _frame(STRING_ROWS)
    arrow = pa.table(
        {
            "model": columns["model"],
            "stimulus": columns["stimulus"],
            "response": pa.array([None if v.strip() == "NA" else v for v in columns["response"]]),
            "label": pa.array([None if v == "" else v for v in columns["label"]]),
        }
    )
    for suffix in (".parquet", ".pq"):
        pq.write_table(arrow, tmp_path / f"preds{suffix}")
        _assert_tables_equal(read_predictions(tmp_path / f"preds{suffix}"), csv_table)


def test_parquet_string_markers_and_integer_text(tmp_path):
    arrow = pa.table(
        {
            "model": ["a", "b", "a", "b"],
            "stimulus": ["x", "x", "y", "y"],
            "response": pa.array(["3", " NaN ", "0", None]),
        }
    )
    pq.write_table(arrow, tmp_path / "preds.parquet")
    table = read_predictions(tmp_path / "preds.parquet")
    assert table.num_categories == 4
    np.testing.assert_array_equal(table.predictions, [[3, 0], [-1, -1]])


def test_parquet_integer_ids_become_text(tmp_path):
    arrow = pa.table(
        {"model": pa.array([7, 3, 7]), "stimulus": pa.array([20, 20, 10]), "response": pa.array([1, 0, 1])}
    )
    pq.write_table(arrow, tmp_path / "preds.parquet")
    table = read_predictions(tmp_path / "preds.parquet")
    assert table.models == ["7", "3"]
    assert table.stimuli == ["20", "10"]
    np.testing.assert_array_equal(table.predictions, [[1, 1], [0, -1]])


# ---------------------------------------------------------------------------------------------
# Wide arrays


def test_npy_defaults(tmp_path):
    preds = np.array([[0, 3, -1, 1], [2, 3, 1, -1], [0, 0, 0, 0]], np.int64)
    np.save(tmp_path / "preds.npy", preds)
    table = read_predictions(tmp_path / "preds.npy")
    np.testing.assert_array_equal(table.predictions, preds)
    assert table.predictions.dtype == np.int32
    assert table.labels is None
    assert table.models == ["model_0", "model_1", "model_2"]
    assert table.stimuli == ["0", "1", "2", "3"]
    assert table.categories == ["0", "1", "2", "3"]


def test_npy_num_categories_and_category_names(tmp_path):
    preds = np.array([[0, 1], [1, -1]], np.int16)
    np.save(tmp_path / "preds.npy", preds)
    assert read_predictions(tmp_path / "preds.npy", num_categories=5).categories == ["0", "1", "2", "3", "4"]
    named = read_predictions(tmp_path / "preds.npy", categories=["cat", "dog", "cow"])
    assert named.categories == ["cat", "dog", "cow"]
    np.testing.assert_array_equal(named.predictions, preds)


def test_npz_with_all_fields(tmp_path):
    preds = np.array([[0, 2, -1], [1, 2, 2]], np.int32)
    labels = np.array([0, 2, -1], np.int64)
    np.savez(
        tmp_path / "preds.npz",
        predictions=preds,
        labels=labels,
        models=np.array(["alpha", "beta"]),
        stimuli=np.array(["x.png", "y.png", "z.png"]),
        categories=np.array(["cat", "dog", "cow", "emu"]),
    )
    table = read_predictions(tmp_path / "preds.npz")
    want = PredictionTable(
        preds, labels, ["alpha", "beta"], ["x.png", "y.png", "z.png"], ["cat", "dog", "cow", "emu"]
    )
    _assert_tables_equal(table, want)
    assert table.num_categories == 4


def test_npz_predictions_only(tmp_path):
    np.savez(tmp_path / "preds.npz", predictions=np.array([[1, 0], [1, 1]]))
    table = read_predictions(tmp_path / "preds.npz")
    assert table.labels is None
    assert table.models == ["model_0", "model_1"]
    assert table.categories == ["0", "1"]


def test_save_then_read_round_trips(tmp_path):
    original = read_predictions(_csv(tmp_path / "preds.csv", STRING_ROWS))
    path = save_predictions(tmp_path / "saved.npz", original)
    assert Path(path) == tmp_path / "saved.npz"
    _assert_tables_equal(read_predictions(path), original)
    # Plain arrays only: readable without pickle, strings stored as unicode, not objects.
    with np.load(path, allow_pickle=False) as saved:
        assert set(saved.files) == {"predictions", "labels", "models", "stimuli", "categories"}
        assert saved["predictions"].dtype == np.int32
        for key in ("models", "stimuli", "categories"):
            assert saved[key].dtype.kind == "U"
        assert saved["models"].tolist() == ["resnet", "vit", "clip"]


def test_save_then_read_round_trips_without_labels(tmp_path):
    original = PredictionTable(
        np.array([[0, -1, 2], [2, 2, 1]], np.int32),
        None,
        ["m a", "m-b"],
        ["ü", "b", "c"],
        ["x", "y", "z", "w"],
    )
    path = save_predictions(tmp_path / "saved.npz", original)
    with np.load(path, allow_pickle=False) as saved:
        assert "labels" not in saved.files
    _assert_tables_equal(read_predictions(path), original)


# ---------------------------------------------------------------------------------------------
# Hypothesis: random long tables against a hand-built expectation

NAMES = st.text(alphabet="abcxyz_0123", min_size=1, max_size=5).filter(lambda s: not s.isdigit())


@st.composite
def long_tables(draw):
    models = draw(st.lists(NAMES, min_size=1, max_size=4, unique=True))
    stimuli = draw(st.lists(NAMES, min_size=1, max_size=6, unique=True))
    names = st.sampled_from(["ant", "bee", "cat", "dog", "eel"])
    vocabulary = draw(st.lists(names, min_size=1, max_size=5, unique=True))
    pairs = [(m, s) for m in models for s in stimuli]
    chosen = draw(st.lists(st.sampled_from(pairs), min_size=1, max_size=len(pairs), unique=True))
    responses = [draw(st.sampled_from(vocabulary + ["NA", ""])) for _ in chosen]
    return chosen, responses


@given(long_tables())
def test_random_long_tables_match_hand_built(case):
    chosen, responses = case
    with tempfile.TemporaryDirectory() as tmp:
        rows = [(m, s, r) for (m, s), r in zip(chosen, responses)]
        path = _csv(Path(tmp) / "preds.csv", rows, header=("model", "stimulus", "response"))
        if all(r in ("NA", "") for r in responses):
            with pytest.raises(ValueError, match="no model gave any response"):
                read_predictions(path)
            return
        table = read_predictions(path)
    models = list(dict.fromkeys(m for m, _ in chosen))
    stimuli = list(dict.fromkeys(s for _, s in chosen))
    vocabulary = sorted({r for r in responses if r not in ("NA", "")})
    want = np.full((len(models), len(stimuli)), -1)
    for (m, s), r in zip(chosen, responses):
        if r not in ("NA", ""):
            want[models.index(m), stimuli.index(s)] = vocabulary.index(r)
    _assert_tables_equal(table, PredictionTable(want, None, models, stimuli, vocabulary))


# ---------------------------------------------------------------------------------------------
# Bad input


def test_missing_columns_are_named_with_what_was_found(tmp_path):
    path = _write(tmp_path / "preds.csv", "model,image,prediction\nm1,s1,1\n")
    with pytest.raises(ValueError, match=r"'stimulus', 'response'.*found: model, image, prediction"):
        read_predictions(path)


def test_missing_columns_in_parquet(tmp_path):
    pq.write_table(pa.table({"model": ["a"], "stimulus": ["x"], "pred": [1]}), tmp_path / "preds.parquet")
    with pytest.raises(ValueError, match=r"'response'.*found: model, stimulus, pred"):
        read_predictions(tmp_path / "preds.parquet")


def test_header_only_table(tmp_path):
    path = _write(tmp_path / "preds.csv", "model,stimulus,response,label\n")
    with pytest.raises(ValueError, match="no rows"):
        read_predictions(path)


def test_empty_file(tmp_path):
    path = _write(tmp_path / "preds.csv", "")
    with pytest.raises(ValueError, match="preds.csv"):
        read_predictions(path)


def test_only_missing_responses(tmp_path):
    path = _write(tmp_path / "preds.csv", "model,stimulus,response\na,x,NA\nb,x,\n")
    with pytest.raises(ValueError, match="no model gave any response"):
        read_predictions(path)


def test_duplicate_rows_name_model_and_stimulus(tmp_path):
    rows = [("m1", "s1", "cat"), ("alexnet", "img_7", "dog"), ("m1", "s2", "cat"), ("alexnet", "img_7", "cat")]
    path = _csv(tmp_path / "preds.csv", rows, header=("model", "stimulus", "response"))
    with pytest.raises(ValueError, match=r"duplicate rows for model 'alexnet', stimulus 'img_7' \(rows 1, 3\)"):
        read_predictions(path)


def test_duplicate_rows_even_when_one_is_missing(tmp_path):
    rows = [("m1", "s1", "2"), ("m1", "s1", "NA")]
    path = _csv(tmp_path / "preds.csv", rows, header=("model", "stimulus", "response"))
    with pytest.raises(ValueError, match=r"duplicate rows for model 'm1', stimulus 's1'"):
        read_predictions(path)


def test_response_not_in_given_categories(tmp_path):
    rows = [("m1", "s1", "cat"), ("m2", "s1", "dog"), ("vgg", "s9", "platypus")]
    path = _csv(tmp_path / "preds.csv", rows, header=("model", "stimulus", "response"))
    match = r"'platypus' at model 'vgg', stimulus 's9'.*not one of the 2 given categories"
    with pytest.raises(ValueError, match=match):
        read_predictions(path, categories=["cat", "dog"])


def test_label_not_in_given_categories(tmp_path):
    rows = [("m1", "s1", "cat", "cat"), ("m2", "s2", "dog", "wolf")]
    with pytest.raises(ValueError, match=r"label 'wolf' at model 'm2', stimulus 's2'"):
        read_predictions(_csv(tmp_path / "preds.csv", rows), categories=["cat", "dog"])


def test_duplicate_given_categories(tmp_path):
    rows = [("m1", "s1", "cat"), ("m2", "s1", "dog")]
    path = _csv(tmp_path / "preds.csv", rows, header=("model", "stimulus", "response"))
    with pytest.raises(ValueError, match="duplicate"):
        read_predictions(path, categories=["cat", "dog", "cat"])


def test_integer_response_at_or_above_num_categories(tmp_path):
    rows = [("m1", "s1", 1), ("resnet50", "s7", 4), ("m1", "s2", 9)]
    path = _csv(tmp_path / "preds.csv", rows, header=("model", "stimulus", "response"))
    with pytest.raises(ValueError, match=r"response 4 at model 'resnet50', stimulus 's7'.* is outside \[-1, num_categories=4\)"):
        read_predictions(path, num_categories=4)


def test_integer_label_at_or_above_num_categories(tmp_path):
    rows = [("m1", "s1", 1, 1), ("m2", "s3", 0, 3)]
    with pytest.raises(ValueError, match=r"label 3 at model 'm2', stimulus 's3'.* is outside \[-1, num_categories=3\)"):
        read_predictions(_csv(tmp_path / "preds.csv", rows), num_categories=3)


def test_integer_response_below_minus_one(tmp_path):
    rows = [("m1", "s1", 1), ("vit_b", "s4", -2)]
    path = _csv(tmp_path / "preds.csv", rows, header=("model", "stimulus", "response"))
    with pytest.raises(ValueError, match=r"response -2 at model 'vit_b', stimulus 's4'.* is outside \[-1, num_categories\)"):
        read_predictions(path)


def test_conflicting_labels_name_the_stimulus(tmp_path):
    rows = [("m1", "s1", "cat", "cat"), ("m1", "pic_3", "cat", "dog"), ("m2", "pic_3", "dog", "cat")]
    with pytest.raises(ValueError, match=r"stimulus 'pic_3' has conflicting labels"):
        read_predictions(_csv(tmp_path / "preds.csv", rows))


def test_conflicting_integer_labels(tmp_path):
    rows = [("m1", "s0", 0, 0), ("m1", "s1", 0, 1), ("m2", "s1", 0, 2)]
    with pytest.raises(ValueError, match=r"stimulus 's1' has conflicting labels") as raised:
        read_predictions(_csv(tmp_path / "preds.csv", rows))
    assert "'1'" in str(raised.value) and "'2'" in str(raised.value)


def test_non_integral_float_in_parquet_response(tmp_path):
    arrow = pa.table(
        {"model": ["a", "b", "c"], "stimulus": ["x", "x", "x"], "response": pa.array([1.0, 2.0, 2.5])}
    )
    pq.write_table(arrow, tmp_path / "preds.parquet")
    with pytest.raises(ValueError, match=r"column 'response' row 2 holds 2.5"):
        read_predictions(tmp_path / "preds.parquet")


def test_non_integral_float_in_parquet_label(tmp_path):
    arrow = pa.table(
        {
            "model": ["a", "b"],
            "stimulus": ["x", "y"],
            "response": pa.array([1, 2]),
            "label": pa.array([0.25, 1.0]),
        }
    )
    pq.write_table(arrow, tmp_path / "preds.parquet")
    with pytest.raises(ValueError, match=r"column 'label' row 0 holds 0.25"):
        read_predictions(tmp_path / "preds.parquet")


def test_null_model_in_parquet(tmp_path):
    arrow = pa.table({"model": ["a", None], "stimulus": ["x", "x"], "response": pa.array([1, 2])})
    pq.write_table(arrow, tmp_path / "preds.parquet")
    with pytest.raises(ValueError, match=r"column 'model' is empty in row 1"):
        read_predictions(tmp_path / "preds.parquet")


def test_float_npy_predictions(tmp_path):
    np.save(tmp_path / "preds.npy", np.array([[0.0, 1.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="integer"):
        read_predictions(tmp_path / "preds.npy")


def test_npy_wrong_rank(tmp_path):
    np.save(tmp_path / "preds.npy", np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"\[models, stimuli\].*\(3,\)"):
        read_predictions(tmp_path / "preds.npy")


def test_npy_value_out_of_range_names_model_and_stimulus(tmp_path):
    preds = np.array([[0, 1, 2], [1, -3, 0]])
    np.savez(
        tmp_path / "preds.npz", predictions=preds, models=np.array(["p", "q"]), stimuli=np.array(["u", "v", "w"])
    )
    with pytest.raises(ValueError, match=r"value -3 at model 'q', stimulus 'v'"):
        read_predictions(tmp_path / "preds.npz")
    with pytest.raises(ValueError, match=r"value 2 at model 'p', stimulus 'w'.*num_categories=2"):
        read_predictions(tmp_path / "preds.npz", categories=["a", "b"])


def test_object_npy_needs_pickle(tmp_path):
    np.save(tmp_path / "preds.npy", np.array([[0, "a"], [1, 1]], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickle"):
        read_predictions(tmp_path / "preds.npy")


def test_npz_without_predictions(tmp_path):
    np.savez(tmp_path / "preds.npz", preds=np.zeros((2, 2), int), labels=np.zeros(2, int))
    with pytest.raises(ValueError, match=r"no 'predictions' array; found preds, labels"):
        read_predictions(tmp_path / "preds.npz")


def test_npz_models_length_mismatch(tmp_path):
    np.savez(tmp_path / "preds.npz", predictions=np.zeros((2, 3), int), models=np.array(["a", "b", "c"]))
    with pytest.raises(ValueError, match="models has 3 names but predictions has 2"):
        read_predictions(tmp_path / "preds.npz")


def test_npz_stimuli_length_mismatch(tmp_path):
    np.savez(tmp_path / "preds.npz", predictions=np.zeros((2, 3), int), stimuli=np.array(["a", "b"]))
    with pytest.raises(ValueError, match="stimuli has 2 names but predictions has 3"):
        read_predictions(tmp_path / "preds.npz")


def test_npz_labels_wrong_shape(tmp_path):
    np.savez(tmp_path / "preds.npz", predictions=np.zeros((2, 3), int), labels=np.zeros(4, int))
    with pytest.raises(ValueError, match=r"labels must be int \[3\]"):
        read_predictions(tmp_path / "preds.npz")


def test_unknown_suffix(tmp_path):
    path = _write(tmp_path / "preds.xlsx", "model,stimulus,response\n")
    with pytest.raises(ValueError, match=r"unknown format '\.xlsx'"):
        read_predictions(path)


def test_file_that_does_not_exist(tmp_path):
    with pytest.raises(ValueError, match=r"nowhere\.csv: no such file"):
        read_predictions(tmp_path / "nowhere.csv")


# ---------------------------------------------------------------------------------------------
# Probable bugs (see the reasons)


def test_integer_responses_with_an_all_empty_label_column(tmp_path):
    rows = [("m1", "s1", 2, ""), ("m2", "s1", 10, ""), ("m1", "s2", 0, "")]
    table = read_predictions(_csv(tmp_path / "preds.csv", rows), num_categories=12)
    assert table.categories == [str(i) for i in range(12)]
    np.testing.assert_array_equal(table.predictions, [[2, 0], [10, -1]])
    np.testing.assert_array_equal(table.labels, [-1, -1])


def test_minus_one_in_string_responses_is_no_response(tmp_path):
    rows = [("m1", "s1", "cat"), ("m2", "s1", "-1"), ("m1", "s2", "dog")]
    table = read_predictions(_csv(tmp_path / "preds.csv", rows, header=("model", "stimulus", "response")))
    assert table.categories == ["cat", "dog"]
    np.testing.assert_array_equal(table.predictions, [[0, 1], [-1, -1]])


def test_integer_with_plus_sign(tmp_path):
    rows = [("m1", "s1", "+3"), ("m2", "s1", "1")]
    table = read_predictions(_csv(tmp_path / "preds.csv", rows, header=("model", "stimulus", "response")))
    np.testing.assert_array_equal(table.predictions, [[3], [1]])


def test_parquet_unsigned_integer_column_without_nulls(tmp_path):
    arrow = pa.table({"model": ["a", "b"], "stimulus": ["x", "x"], "response": pa.array([2, 0], pa.uint8())})
    pq.write_table(arrow, tmp_path / "preds.parquet")
    np.testing.assert_array_equal(read_predictions(tmp_path / "preds.parquet").predictions, [[2], [0]])


def test_parquet_unsigned_integer_column_with_nulls(tmp_path):
    arrow = pa.table({"model": ["a", "b"], "stimulus": ["x", "x"], "response": pa.array([2, None], pa.uint8())})
    pq.write_table(arrow, tmp_path / "preds.parquet")
    np.testing.assert_array_equal(read_predictions(tmp_path / "preds.parquet").predictions, [[2], [-1]])


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_parquet_infinite_float_response(tmp_path):
    arrow = pa.table({"model": ["a", "b"], "stimulus": ["x", "x"], "response": pa.array([float("inf"), 1.0])})
    pq.write_table(arrow, tmp_path / "preds.parquet")
    with pytest.raises(ValueError, match=r"'response' row 0 holds inf"):
        read_predictions(tmp_path / "preds.parquet")


def test_empty_model_id_in_csv(tmp_path):
    path = _write(tmp_path / "preds.csv", "model,stimulus,response\nm1,s1,1\n,s1,0\n")
    with pytest.raises(ValueError, match=r"column 'model' is empty in row 1"):
        read_predictions(path)


# ---------------------------------------------------------------------------------------------
# Writers


def test_write_json_nan_as_null(tmp_path):
    data = {
        "kappa": float("nan"),
        "kappa32": np.float32("nan"),
        "value": np.float32(0.25),
        "count": np.int64(7),
        "array": np.array([1.5, np.nan]),
        "nested": {"inner": [np.nan, 2, (np.int32(3), "x")]},
        3: None,
    }
    path = write_json(tmp_path / "out.json", data)
    assert Path(path) == tmp_path / "out.json"
    text = path.read_text()
    assert "NaN" not in text
    assert text.endswith("\n")
    # The standard parser in strict mode rejects NaN/Infinity constants; null is fine.
    loaded = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard constant {c}"))
    assert loaded == {
        "kappa": None,
        "kappa32": None,
        "value": 0.25,
        "count": 7,
        "array": [1.5, None],
        "nested": {"inner": [None, 2, [3, "x"]]},
        "3": None,
    }


def test_write_csv_nan_and_nine_significant_digits(tmp_path):
    rows = [
        (0, "a", 1 / 3, np.float32(0.1)),
        (np.int64(1), "b", float("nan"), np.float32("nan")),
        (2, "c", 123456789.987, 2.5e-11 / 3),
        (3, "d", 1.0, np.float64(-0.5)),
    ]
    path = write_csv(tmp_path / "out.csv", ["index", "name", "x", "y"], rows)
    assert Path(path) == tmp_path / "out.csv"
    lines = path.read_text().splitlines()
    assert lines == [
        "index,name,x,y",
        "0,a,0.333333333,0.100000001",
        "1,b,nan,nan",
        "2,c,123456790,8.33333333e-12",
        "3,d,1,-0.5",
    ]
    # float32 values survive the round trip exactly.
    assert np.float32(float(lines[1].split(",")[3])) == np.float32(0.1)
    assert math.isclose(float(lines[1].split(",")[2]), 1 / 3, rel_tol=1e-9)


# ---------------------------------------------------------------------------------------------
# Hostile input (issue 10): nothing is sized by a value before it is checked


def test_a_huge_category_index_in_an_npy_is_refused_before_anything_is_sized(tmp_path):
    # 2**24 would have built 16.7 million category names; 2**40 exhausted the machine.
    for value in (2**24, 2**40):
        np.save(tmp_path / "preds.npy", np.array([[0, value], [1, 0]], np.int64))
        with pytest.raises(ValueError, match=rf"predictions value {value:,} at model 'model_0', stimulus '1' is too "
                           r"large for a category index \(jaxagree accepts up to 1,048,575\)"):
            read_predictions(tmp_path / "preds.npy")


def test_a_huge_integer_label_in_an_npz_is_refused(tmp_path):
    np.savez(tmp_path / "preds.npz", predictions=np.array([[0, 1], [1, 0]]), labels=np.array([0, 2**40]))
    with pytest.raises(ValueError, match=r"labels value 1,099,511,627,776 at stimulus '1' is too large"):
        read_predictions(tmp_path / "preds.npz")


def test_a_huge_category_index_in_a_long_table_is_refused(tmp_path):
    rows = [("m1", "s1", 0), ("m2", "s1", 2**40), ("m1", "s2", 1)]
    path = _csv(tmp_path / "preds.csv", rows, header=("model", "stimulus", "response"))
    with pytest.raises(ValueError, match=r"response 1,099,511,627,776 at model 'm2', stimulus 's1' \(row 1\) is too "
                       "large for a category index"):
        read_predictions(path)


@pytest.mark.parametrize("suffix", [".csv", ".npy"])
def test_num_categories_is_bounded(tmp_path, suffix):
    path = tmp_path / f"preds{suffix}"
    if suffix == ".npy":
        np.save(path, np.array([[0, 1], [1, 0]]))
    else:
        _csv(path, [("m1", "s1", 0), ("m2", "s1", 1)], header=("model", "stimulus", "response"))
    with pytest.raises(ValueError, match=r"num_categories=5,000,000,000 is more categories than jaxagree accepts"):
        read_predictions(path, num_categories=5_000_000_000)
    assert read_predictions(path, num_categories=2**20).num_categories == 2**20  # the bound itself is allowed


def test_largest_accepted_category_index(tmp_path):
    np.save(tmp_path / "preds.npy", np.array([[0, 2**20 - 1], [1, 0]]))
    assert read_predictions(tmp_path / "preds.npy").num_categories == 2**20


# One rule for names and integers, responses and labels alike.


def test_names_with_integer_labels_and_no_categories_is_an_error_naming_a_row_of_each(tmp_path):
    # The case: cat/dog responses with 0/1 labels became one vocabulary {0, 1, cat, dog}
    # and a silent accuracy of 0.
    rows = [("m1", "s1", "cat", 0), ("m2", "s1", "dog", 0), ("m1", "s2", "dog", 1), ("m2", "s2", "cat", 1)]
    with pytest.raises(ValueError, match=r"category names and integer indices are mixed: response 'cat' at model "
                       r"'m1', stimulus 's1' \(row 0\) is a name, label 0 at model 'm1', stimulus 's1' \(row 0\) an "
                       r"index.*categories="):
        read_predictions(_csv(tmp_path / "preds.csv", rows))


def test_names_and_integers_mixed_within_responses_is_an_error(tmp_path):
    rows = [("m1", "s1", "cat"), ("m2", "s1", "dog"), ("m1", "s2", "7")]
    path = _csv(tmp_path / "preds.csv", rows, header=("model", "stimulus", "response"))
    with pytest.raises(ValueError, match=r"response 'cat' at .*\(row 0\) is a name, response 7 at model 'm1', "
                       r"stimulus 's2' \(row 2\) an index"):
        read_predictions(path)


def test_with_categories_integers_index_them_and_names_are_looked_up(tmp_path):
    # Responses by name, labels by index (and the reverse on one row): one vocabulary, right accuracy.
    rows = [("m1", "s1", "cat", 0), ("m2", "s1", "dog", 0), ("m1", "s2", "dog", 1), ("m2", "s2", 0, "dog")]
    table = read_predictions(_csv(tmp_path / "preds.csv", rows), categories=["cat", "dog"])
    assert table.categories == ["cat", "dog"]
    np.testing.assert_array_equal(table.predictions, [[0, 1], [1, 0]])
    np.testing.assert_array_equal(table.labels, [0, 1])


def test_negative_values_among_names_are_errors_not_categories(tmp_path):
    rows = [("m1", "s1", "cat", "cat"), ("m2", "s1", "-5", "cat"), ("m1", "s2", "dog", "dog")]
    with pytest.raises(ValueError, match=r"response -5 at model 'm2', stimulus 's1' \(row 1\) is outside "
                       r"\[-1, num_categories\) \(-1 means no response\)"):
        read_predictions(_csv(tmp_path / "preds.csv", rows))
    rows = [("m1", "s1", "cat", "cat"), ("m2", "s1", "dog", "-3")]
    with pytest.raises(ValueError, match=r"label -3 at model 'm2', stimulus 's1'.* is outside \[-1, num_categories\)"):
        read_predictions(_csv(tmp_path / "labels.csv", rows), categories=["cat", "dog"])


def test_negative_labels_in_an_npz_are_errors(tmp_path):
    np.savez(tmp_path / "preds.npz", predictions=np.array([[0, 1], [1, 0]]), labels=np.array([0, -4]))
    with pytest.raises(ValueError, match=r"label -4 at index 1 is outside \[-1, num_categories\) \(-1 means unlabelled\)"):
        read_predictions(tmp_path / "preds.npz")


# Damaged array files: a clear error naming the file, never a traceback or an allocation.


def test_a_text_file_named_npy_is_not_reported_as_pickled_data(tmp_path):
    path = _write(tmp_path / "preds.npy", "model,stimulus,response\n")
    with pytest.raises(ValueError, match=r"preds\.npy: not a valid \.npy file \(it does not start with NumPy's header"):
        read_predictions(path)


def test_an_npy_header_declaring_terabytes_is_refused_from_the_header(tmp_path):
    with (tmp_path / "preds.npy").open("wb") as stream:  # a real header, then 4 of the 4.9e11 values
        header = {"descr": "<i8", "fortran_order": False, "shape": (700000, 700000)}
        np.lib.format.write_array_header_1_0(stream, header)
        stream.write(np.zeros(4, np.int64).tobytes())
    with pytest.raises(ValueError, match=r"preds\.npy: the header declares int64 \[700000, 700000\] \(3\.9 TB\) but "
                       r"the file holds 32 bytes of data: it is truncated or damaged"):
        read_predictions(tmp_path / "preds.npy")


@pytest.mark.parametrize("cut", [0.3, 0.9])
def test_a_truncated_npz_is_a_clear_error(tmp_path, cut):
    np.savez(tmp_path / "full.npz", predictions=np.arange(400).reshape(4, 100) % 3)
    data = (tmp_path / "full.npz").read_bytes()
    (tmp_path / "preds.npz").write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ValueError, match=r"preds\.npz: not a valid \.npz file.*truncated"):
        read_predictions(tmp_path / "preds.npz")


def test_a_damaged_npz_member_is_a_clear_error(tmp_path):
    np.savez_compressed(tmp_path / "full.npz", predictions=np.arange(4000).reshape(40, 100) % 7)
    data = bytearray((tmp_path / "full.npz").read_bytes())
    data[200:260] = bytes(60)  # inside the compressed member
    (tmp_path / "preds.npz").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"preds\.npz"):
        read_predictions(tmp_path / "preds.npz")


def test_a_damaged_parquet_is_a_clear_error(tmp_path):
    pq.write_table(pa.table({"model": ["a", "b"], "stimulus": ["x", "x"], "response": [1, 0]}), tmp_path / "p.parquet")
    data = (tmp_path / "p.parquet").read_bytes()
    (tmp_path / "preds.parquet").write_bytes(data[:20] + bytes(40) + data[60:])
    with pytest.raises(ValueError, match=r"preds\.parquet: not a readable Parquet file"):
        read_predictions(tmp_path / "preds.parquet")


def test_a_non_utf8_csv_is_a_clear_error(tmp_path):
    (tmp_path / "preds.csv").write_bytes(b"model,stimulus,response\nm1,s1,caf\xe9\nm2,s1,tea\n")
    with pytest.raises(ValueError, match=r"preds\.csv: cannot parse as a table: .*UTF8"):
        read_predictions(tmp_path / "preds.csv")


# One JSON encoding: strict, NaN and infinities as null.


def test_json_text_is_strict_and_equals_what_write_json_writes(tmp_path):
    from jaxagree.io import json_text

    data = {"nan": float("nan"), "inf": np.float32("inf"), "ninf": -math.inf, "x": np.float64(0.5)}
    text = json_text(data)
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard constant {c}")) == {
        "nan": None, "inf": None, "ninf": None, "x": 0.5}
    assert write_json(tmp_path / "s.json", data).read_text() == text + "\n"
