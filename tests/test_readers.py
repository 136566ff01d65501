"""Folders of CSV files as prediction tables: model-vs-human raw data and per-image tables per model,
read directly and through ``jaxagree agreement``; error consistency against a float64 hand computation."""

from __future__ import annotations

import csv
import json
import math
import random

import numpy as np
import pytest

from jaxagree.cli import main
from jaxagree.io import (
    folder_kind,
    read_model_vs_human,
    read_per_image_predictions,
    read_prediction_folder,
    short_image_name,
)

# ---------------------------------------------------------------------------------------------
# model-vs-human fixtures: 6 images in 2 conditions, 2 human subjects and 2 models

IMAGES = {  # short name -> (category, condition)
    "n02085620_101.JPEG": ("dog", "c0"),
    "n02123045_202.JPEG": ("cat", "c0"),
    "car1-dog3.png": ("car", "c0"),
    "dog7-car2.png": ("dog", "c1"),
    "cat4-dog1.png": ("cat", "c1"),
    "car9-cat5.png": ("car", "c1"),
}
SHORT = list(IMAGES)
# Responses per observer, one per image of SHORT; None: the observer has no row for the image.
RESPONSES = {
    "subject-01": ["dog", "cat", "na", "dog", "dog", "car"],  # an 'na' response
    "subject-02": ["dog", "dog", "car", "cat", "cat", "car"],
    "alexnet": ["cat", "cat", "car", "dog", "cat", "cat"],
    "resnet50": ["dog", None, "car", "car", "cat", None],  # missing two trials
}
HEADER = ["subj", "session", "trial", "rt", "object_response", "category", "condition", "imagename"]


def _long_name(observer: str, trial: int, short: str) -> str:
    """A raw-data imagename: a per-observer prefix, then the short name (model-vs-human's layout)."""
    category, condition = IMAGES[short]
    return f"{trial:04d}_s{len(observer)}_{observer[:3]}_{condition}_{category}_00_{short}"


def _write_observer(folder, observer, responses, *, crlf=False, header=HEADER, shuffle=0, extra_rows=()):
    rows = []
    for trial, (short, response) in enumerate(zip(SHORT, responses), 1):
        if response is None:
            continue
        category, condition = IMAGES[short]
        rows.append([observer, "1", str(trial), "NaN", response, category, condition, _long_name(observer, trial, short)])
    random.Random(shuffle).shuffle(rows)
    rows.extend(extra_rows)
    path = folder / f"{observer}.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\r\n" if crlf else "\n").writerows([header, *rows])
    return path


def _mvh_folder(tmp_path, name="raw-data"):
    folder = tmp_path / name
    folder.mkdir()
    for i, (observer, responses) in enumerate(RESPONSES.items()):
        header = HEADER
        if observer == "subject-01":  # header case as some experiments write it
            header = ["Subj", "Session", "Trial", "RT", "Object_Response", "Category", "Condition", "ImageName"]
        _write_observer(folder, observer, responses, crlf=i % 2 == 0, header=header, shuffle=i)
    return folder


def _reference_ec(a: list, b: list, condition: str | None = None) -> float:
    """Geirhos et al. 2020 in float64, by hand: Cohen's kappa of right/wrong over the trials both did
    (of one condition, or all)."""
    right_a, right_b = [], []
    for short, ra, rb in zip(SHORT, a, b):
        if ra is None or rb is None or condition not in (None, IMAGES[short][1]):
            continue
        right_a.append(ra == IMAGES[short][0])  # 'na' is not the category: wrong
        right_b.append(rb == IMAGES[short][0])
    n = len(right_a)
    c_obs = sum(x == y for x, y in zip(right_a, right_b)) / n
    p1, p2 = sum(right_a) / n, sum(right_b) / n
    c_exp = p1 * p2 + (1 - p1) * (1 - p2)
    return (c_obs - c_exp) / (1 - c_exp) if c_exp < 1 else math.nan


def test_short_image_name_follows_model_vs_human():
    # The two checks of get_short_imagename in modelvshuman/helper/plotting_helper.py.
    assert short_image_name("0000_cl_s01_bw_boat_40_n02951358_5952.JPEG") == "n02951358_5952.JPEG"
    assert short_image_name("airplane1-bicycle2.png") == "airplane1-bicycle2.png"
    assert short_image_name("0001_s5n_dnn_0_airplane_00_airplane1-bicycle2.png") == "airplane1-bicycle2.png"


def test_model_vs_human_folder_reads_crlf_lf_na_and_missing_trials(tmp_path):
    folder = _mvh_folder(tmp_path)
    assert folder_kind(folder) == "model-vs-human"
    table = read_model_vs_human(folder)
    assert sorted(table.models) == sorted(RESPONSES)
    assert sorted(table.stimuli) == sorted(SHORT)  # matched by short name across observers' prefixes
    assert table.categories == ["car", "cat", "dog"]
    for r, observer in enumerate(table.models):
        for s, short in enumerate(table.stimuli):
            response = RESPONSES[observer][SHORT.index(short)]
            want = -1 if response in (None, "na") else table.categories.index(response)
            assert table.predictions[r, s] == want, (observer, short)
            assert table.observed[r, s] == (response is not None), (observer, short)
    assert [table.categories[i] for i in table.labels] == [IMAGES[s][0] for s in table.stimuli]
    assert table.conditions == [IMAGES[s][1] for s in table.stimuli]
    assert table.rater_groups == ["human" if m.startswith("subject-") else "model" for m in table.models]


@pytest.mark.parametrize("raters, want", [("humans", ["subject-01", "subject-02"]),
                                          ("models", ["alexnet", "resnet50"])])
def test_model_vs_human_rater_selection(tmp_path, raters, want):
    table = read_model_vs_human(_mvh_folder(tmp_path), raters=raters)
    assert sorted(table.models) == want
    assert set(table.rater_groups) == {raters[:-1]}


def test_error_consistency_matches_a_float64_hand_computation(tmp_path):
    from jaxagree.analysis import analyse_agreement

    table = read_model_vs_human(_mvh_folder(tmp_path))
    analysis = analyse_agreement(table.predictions, num_categories=table.num_categories, labels=table.labels,
                                 observed=table.observed, conditions=table.conditions)
    for a, name_a in enumerate(table.models):
        for b, name_b in enumerate(table.models):
            want = _reference_ec(RESPONSES[name_a], RESPONSES[name_b])
            np.testing.assert_allclose(analysis.error_consistency[a, b], want, rtol=1e-6, atol=1e-6,
                                       err_msg=f"{name_a} vs {name_b}")
    # Two worked by hand: subjects 01/02 over all 6 trials (the 'na' wrong): c_obs 1/3, p 2/3 and 2/3 -> -1/2;
    # alexnet/resnet50 over the 4 trials both did: c_obs 1/2, p 3/4 and 3/4 -> -1/3.
    at = table.models.index
    assert analysis.error_consistency[at("subject-01"), at("subject-02")] == pytest.approx(-0.5, abs=1e-6)
    assert analysis.error_consistency[at("alexnet"), at("resnet50")] == pytest.approx(-1 / 3, abs=1e-6)
    # Accuracy per rater is over the trials it did: resnet50 got 3 of its 4 right.
    assert analysis.accuracy[at("resnet50")] == pytest.approx(0.75)


def test_agreement_cli_on_model_vs_human_writes_error_consistency_and_groups(tmp_path):
    folder = _mvh_folder(tmp_path)
    out = tmp_path / "out"
    assert main(["agreement", str(folder), "--out", str(out)]) == 0
    with (out / "error_consistency.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    names = rows[0][1:]
    assert rows[0][0] == "rater" and sorted(names) == sorted(RESPONSES)
    assert [row[0] for row in rows[1:]] == names  # square, the same names down and across
    matrix = np.array([[float(v) for v in row[1:]] for row in rows[1:]])
    want = np.array([[_reference_ec(RESPONSES[a], RESPONSES[b]) for b in names] for a in names])
    np.testing.assert_allclose(matrix, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(matrix, matrix.T)

    summary = json.loads((out / "summary.json").read_text())
    humans = [n for n in names if n.startswith("subject-")]
    models = [n for n in names if n not in humans]

    def mean(group_a, group_b, condition=None):
        values = {tuple(sorted((a, b))): _reference_ec(RESPONSES[a], RESPONSES[b], condition)
                  for a in group_a for b in group_b if a != b}
        return float(np.nanmean(list(values.values())))

    groups = summary["mean_error_consistency"]
    assert groups["human-human"] == pytest.approx(mean(humans, humans), abs=1e-6)
    assert groups["model-model"] == pytest.approx(mean(models, models), abs=1e-6)
    assert groups["human-model"] == pytest.approx(mean(humans, models), abs=1e-6)
    assert groups["all"] == pytest.approx(mean(names, names), abs=1e-6)
    assert summary["num_models"] == 4 and summary["num_stimuli"] == 6 and summary["num_categories"] == 3
    conditions = {c["condition"]: c for c in summary["conditions"]}
    assert set(conditions) == {"c0", "c1"} and conditions["c0"]["num_stimuli"] == 3
    # resnet50 did 2 of c0's 3 trials (both right) and 2 of c1's (one right).
    assert conditions["c0"]["accuracy"]["resnet50"] == 1.0 and conditions["c1"]["accuracy"]["resnet50"] == 0.5
    # Error consistency within each condition, as model-vs-human computes it (NaN pairs left out of the means).
    for condition in ("c0", "c1"):
        within = conditions[condition]["mean_error_consistency"]
        assert within["human-model"] == pytest.approx(mean(humans, models, condition), abs=1e-6)
        assert within["human-human"] == pytest.approx(mean(humans, humans, condition), abs=1e-6, nan_ok=True)

    out_humans = tmp_path / "humans"
    assert main(["agreement", str(folder), "--out", str(out_humans), "--raters", "humans"]) == 0
    summary = json.loads((out_humans / "summary.json").read_text())
    assert summary["num_models"] == 2
    assert summary["mean_error_consistency"] == {"all": -0.5, "human-human": -0.5}


@pytest.mark.parametrize("case, message", [
    ("missing_column", "missing column(s) category"),
    ("category_conflict", "has category 'cat', but 'dog'"),
    ("duplicate", "rated image 'dog7-car2.png' twice"),
    ("empty", "no .csv files"),
    ("labels_option", "takes no labels"),
])
def test_model_vs_human_bad_input_names_the_culprit(tmp_path, case, message):
    folder = tmp_path / "raw"
    folder.mkdir()
    if case != "empty":
        _write_observer(folder, "subject-01", RESPONSES["subject-01"])
    path = folder / "vgg.csv"
    if case == "missing_column":
        _write_observer(folder, "vgg", RESPONSES["alexnet"], header=[h for h in HEADER if h != "category"] + ["x"])
    elif case == "category_conflict":
        bad = ["vgg", "1", "9", "NaN", "dog", "cat", "c0", "0009_x_n02085620_101.JPEG"]
        _write_observer(folder, "vgg", [None] * 6, extra_rows=[bad])
    elif case == "duplicate":
        again = ["vgg", "1", "9", "NaN", "dog", "dog", "c1", "0009_y_dog7-car2.png"]
        _write_observer(folder, "vgg", RESPONSES["alexnet"], extra_rows=[again])
    with pytest.raises(ValueError) as error:
        if case == "labels_option":
            read_prediction_folder(folder, labels=tmp_path / "labels.csv")
        else:
            read_model_vs_human(folder)
    assert message in str(error.value)
    if case == "missing_column":
        assert str(path) in str(error.value)
    if case in ("category_conflict", "duplicate"):  # the file and line of the bad row
        assert f"{path}: line {2 if case == 'category_conflict' else 8}" in str(error.value)


# ---------------------------------------------------------------------------------------------
# Per-image tables

LABELS = {"a.jpg": "dog", "b.jpg": "cat", "c.jpg": "car", "d.jpg": "dog"}
PREDICTIONS = {  # model -> image -> predicted class
    "convnext": {"a.jpg": "dog", "b.jpg": "cat", "c.jpg": "dog", "d.jpg": "dog"},
    "vit": {"d.jpg": "cat", "b.jpg": "cat", "a.jpg": "dog", "c.jpg": "car"},  # another order
    "mlp": {"c.jpg": "car", "a.jpg": "cat", "b.jpg": "dog"},  # lacks d.jpg
}


def _write_csv(path, header, rows):
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    return path


def _per_image_folder(tmp_path, columns=("file_name", "predicted_class"), name="preds"):
    folder = tmp_path / name
    folder.mkdir()
    for model, predicted in PREDICTIONS.items():
        header = list(columns) + ["predicted_probability"]
        if model == "mlp" and columns == ("file_name", "predicted_class"):
            header = ["Image", "Prediction", "predicted_probability"]  # other common names, other case
        _write_csv(folder / f"{model}.csv", header, [[image, cls, "0.9"] for image, cls in predicted.items()])
    labels = _write_csv(tmp_path / f"{name}_labels.csv", ["file_name", "label"], list(LABELS.items()))
    return folder, labels


def _check_per_image(table):
    assert table.models == sorted(PREDICTIONS)
    assert table.stimuli == list(LABELS)
    for m, model in enumerate(table.models):
        for s, image in enumerate(table.stimuli):
            cls = PREDICTIONS[model].get(image)
            assert table.predictions[m, s] == (-1 if cls is None else table.categories.index(cls)), (model, image)
    assert [table.categories[i] for i in table.labels] == list(LABELS.values())


def test_per_image_tables_match_rows_by_name_with_detected_columns(tmp_path):
    folder, labels = _per_image_folder(tmp_path)
    assert folder_kind(folder) == "per-image"
    _check_per_image(read_per_image_predictions(folder, labels=labels))


def test_per_image_tables_with_overridden_columns(tmp_path):
    folder, labels = _per_image_folder(tmp_path, columns=("fname", "guess"))
    with pytest.raises(ValueError, match="no file-name column.*--file-column"):
        read_per_image_predictions(folder, labels=labels)
    _check_per_image(read_per_image_predictions(folder, labels=labels, file_column="fname", prediction_column="guess"))


def test_per_image_bad_input_names_the_culprit(tmp_path):
    folder, labels = _per_image_folder(tmp_path)
    _write_csv(tmp_path / "short_labels.csv", ["file_name", "label"], list(LABELS.items())[:3])
    with pytest.raises(ValueError, match=r"convnext\.csv: line \d+: image 'd\.jpg' is not in the labels file"):
        read_per_image_predictions(folder, labels=tmp_path / "short_labels.csv")
    with pytest.raises(ValueError, match="raters='humans' needs model-vs-human"):
        read_prediction_folder(folder, raters="humans")
    (folder / "vit.csv").write_text("file_name,predicted_class\na.jpg,dog\n\na.jpg,cat\n")  # a blank line
    with pytest.raises(ValueError, match=r"vit\.csv: line 4: image 'a\.jpg' appears twice \(also line 2\)"):
        read_per_image_predictions(folder, labels=labels)
    _write_csv(folder / "vit.csv", ["file_name", "predicted_class"], [["a.jpg", "dog"]])
    bad_labels = _write_csv(tmp_path / "bad_labels.csv", ["file_name", "label"],
                            [*list(LABELS.items())[:2], ("c.jpg", "zebra"), ("d.jpg", "dog")])
    with pytest.raises(ValueError, match=r"label 'zebra' at image 'c\.jpg' \(bad_labels\.csv line 4\)"):
        read_per_image_predictions(folder, labels=bad_labels, categories=["car", "cat", "dog"])
    _write_csv(folder / "vit.csv", ["file_name", "predicted_class"], [["a.jpg", "zebra"]])
    with pytest.raises(ValueError, match=r"'zebra' at model 'vit', image 'a\.jpg' \(vit\.csv line 2\)"):
        read_per_image_predictions(folder, labels=labels, categories=["car", "cat", "dog"])


def test_agreement_cli_on_per_image_tables(tmp_path):
    folder, labels = _per_image_folder(tmp_path)
    out = tmp_path / "out"
    assert main(["agreement", str(folder), "--labels", str(labels), "--out", str(out)]) == 0
    with (out / "error_consistency.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["rater", *sorted(PREDICTIONS)]
    assert [row[0] for row in rows[1:]] == sorted(PREDICTIONS)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["mean_error_consistency"]) == {"all", "models-models"}
    assert "conditions" not in summary
    # Options of a folder are refused for a single file, and --raters for per-image tables (exit 2).
    assert main(["agreement", str(labels), "--out", str(tmp_path / "x"), "--raters", "humans"]) == 2
    assert main(["agreement", str(folder), "--out", str(tmp_path / "y"), "--raters", "humans"]) == 2


def test_error_consistency_kernel_over_shared_trials_matches_float64_loops():
    import jaxagree as ja

    rng = np.random.default_rng(0)
    correct = rng.random((5, 40)) < 0.6
    observed = rng.random((5, 40)) < 0.8
    got = np.asarray(ja.error_consistency(correct, observed=observed))
    for a in range(5):
        for b in range(5):
            both = observed[a] & observed[b]
            x, y = correct[a, both].astype(np.float64), correct[b, both].astype(np.float64)
            c_obs = np.mean(x == y)
            c_exp = x.mean() * y.mean() + (1 - x.mean()) * (1 - y.mean())
            assert got[a, b] == pytest.approx((c_obs - c_exp) / (1 - c_exp), abs=1e-6)
    # Every trial observed: the plain kernel.
    np.testing.assert_allclose(np.asarray(ja.error_consistency(correct, observed=np.ones_like(correct))),
                               np.asarray(ja.error_consistency(correct)), atol=1e-6)
    with pytest.raises(ValueError, match="observed must be a bool array"):
        ja.error_consistency(correct, observed=observed[:, :3])


def test_bootstrap_error_consistency_uses_the_shared_trials_too(tmp_path):
    from jaxagree.analysis import analyse_agreement

    table = read_model_vs_human(_mvh_folder(tmp_path))
    analysis = analyse_agreement(table.predictions, num_categories=table.num_categories, labels=table.labels,
                                 observed=table.observed, num_bootstrap=20)
    # Replicate 0 of the bootstrap is the data as given: its estimate is error_consistency.csv's matrix.
    np.testing.assert_allclose(analysis.bootstrap.error_consistency.estimate, analysis.error_consistency, atol=1e-6)


def test_saved_table_keeps_groups_conditions_and_observed(tmp_path):
    from jaxagree.io import read_predictions, save_predictions

    table = read_model_vs_human(_mvh_folder(tmp_path))
    again = read_predictions(save_predictions(tmp_path / "table.npz", table))
    assert again.rater_groups == table.rater_groups and again.conditions == table.conditions
    np.testing.assert_array_equal(again.observed, table.observed)
    np.testing.assert_array_equal(again.predictions, table.predictions)
    np.testing.assert_array_equal(again.labels, table.labels)
