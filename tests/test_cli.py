"""The command line: `jaxagree agreement`, in process and once as a script (`jaxagree demo`: test_demo.py)."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import jaxagree as ja
from jaxagree.cli import main
from jaxagree.io import read_predictions

from . import reference

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CATEGORIES = ["ant", "bee", "cat", "dog"]
NUM_MODELS, NUM_STIMULI = 6, 24


def _data(seed=0):
    """Six models of increasing skill on 24 stimuli; -1 = no response; label -1 = unlabelled."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CATEGORIES), NUM_STIMULI)
    labels[5] = -1  # one unlabelled stimulus
    skill = np.linspace(0.2, 0.9, NUM_MODELS)
    right = rng.random((NUM_MODELS, NUM_STIMULI)) < skill[:, None]
    wrong = (labels[None, :] + rng.integers(1, len(CATEGORIES), (NUM_MODELS, NUM_STIMULI))) % len(CATEGORIES)
    preds = np.where(right, np.maximum(labels, 0)[None, :], wrong)
    preds[rng.random(preds.shape) < 0.08] = -1
    preds[1:, 7] = -1  # stimulus 7 has a single rater: agreement NaN
    return preds.astype(np.int32), labels.astype(np.int32)


PREDS, LABELS = _data()
MODELS = [f"net{m}" for m in range(NUM_MODELS)]
STIMULI = [f"img_{i:02d}" for i in range(NUM_STIMULI)]


def _write_long(path: Path, preds=PREDS, labels=LABELS, *, with_labels=True, drop_missing=True) -> Path:
    """A long CSV with category names; no-response cells are left out or written as NA."""
    lines = ["model,stimulus,response" + (",label" if with_labels else "")]
    # Stimulus-major order: stimuli appear in order, and so do models.
    for i, stimulus in enumerate(STIMULI):
        for m, model in enumerate(MODELS):
            if preds[m, i] < 0 and drop_missing and (m + i) % 2:
                continue
            response = CATEGORIES[preds[m, i]] if preds[m, i] >= 0 else "NA"
            row = f"{model},{stimulus},{response}"
            if with_labels:
                row += "," + (CATEGORIES[labels[i]] if labels[i] >= 0 else "")
            lines.append(row)
    path.write_text("\n".join(lines) + "\n")
    return path


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


def _reference_accuracy(preds, labels) -> np.ndarray:
    labelled = labels >= 0
    return ((preds == labels[None, :]) & labelled[None, :]).sum(1) / labelled.sum()


def test_written_table_reads_back_as_the_data(tmp_path):
    # Guards the helper: what the CLI reads is exactly PREDS / LABELS.
    table = read_predictions(_write_long(tmp_path / "preds.csv"))
    np.testing.assert_array_equal(table.predictions, PREDS)
    np.testing.assert_array_equal(table.labels, LABELS)
    assert table.models == MODELS
    assert table.stimuli == STIMULI
    assert table.categories == CATEGORIES


# ---------------------------------------------------------------------------------------------
# agreement without labels


def test_agreement_without_labels(tmp_path, capsys):
    source = _write_long(tmp_path / "preds.csv", with_labels=False)
    out = tmp_path / "report"
    assert main(["agreement", str(source), "--out", str(out), "--k", "5"]) == 0
    captured = capsys.readouterr()

    summary = json.loads((out / "summary.json").read_text())
    assert json.loads(captured.out) == summary  # the summary is printed too
    assert "wrote" in captured.err and "summary.json" in captured.err
    assert summary["num_models"] == NUM_MODELS
    assert summary["num_stimuli"] == NUM_STIMULI
    assert summary["num_categories"] == len(CATEGORIES)
    assert summary["k"] == 5
    assert summary["stimuli_with_agreement"] == NUM_STIMULI - 1
    want_kappa = float(ja.fleiss_kappa(ja.count_predictions(PREDS, num_categories=len(CATEGORIES))))
    assert summary["fleiss_kappa"] == pytest.approx(want_kappa, abs=1e-6)
    table = reference.counts(PREDS, len(CATEGORIES))
    assert summary["fleiss_kappa"] == pytest.approx(reference.kappa(table), abs=1e-5)
    want_agreement = reference.agreement(table)
    assert summary["mean_agreement"] == pytest.approx(np.nanmean(want_agreement), abs=1e-6)
    assert "mean_accuracy" not in summary and "accuracy_bins" not in summary

    rows = _rows(out / "agreement.csv")
    assert list(rows[0]) == ["index", "stimulus", "agreement", "n_raters"]
    assert [int(r["index"]) for r in rows] == list(range(NUM_STIMULI))
    assert [r["stimulus"] for r in rows] == STIMULI
    assert [int(r["n_raters"]) for r in rows] == (PREDS >= 0).sum(0).tolist()
    got = np.array([float(r["agreement"]) for r in rows])
    assert rows[7]["agreement"] == "nan"
    np.testing.assert_allclose(got, want_agreement, rtol=0, atol=1e-6, equal_nan=True)

    contrastive = _rows(out / "contrastive.csv")
    assert len(contrastive) == 5
    assert [int(r["rank"]) for r in contrastive] == list(range(5))
    values = [float(r["agreement"]) for r in contrastive]
    assert values == sorted(values)
    chosen = [int(r["index"]) for r in contrastive]
    assert len(set(chosen)) == 5
    assert [r["stimulus"] for r in contrastive] == [STIMULI[i] for i in chosen]
    np.testing.assert_allclose(values, want_agreement[chosen], atol=1e-6)
    others = np.delete(want_agreement, chosen)
    assert max(values) <= np.nanmin(others) + 1e-6  # the k lowest
    assert summary["contrastive_max_agreement"] == pytest.approx(max(values), abs=1e-6)
    want_contrastive_kappa = reference.kappa(reference.counts(PREDS[:, chosen], len(CATEGORIES)))
    assert summary["contrastive_fleiss_kappa"] == pytest.approx(want_contrastive_kappa, abs=1e-5)

    assert _is_png(out / "fig4_agreement_sorted.png")
    for absent in ("accuracy.csv", "bins.csv", "fig3_kappa_by_accuracy.png"):
        assert not (out / absent).exists()


@pytest.mark.parametrize("k", [1, 3, 23])
def test_k_is_respected(tmp_path, capsys, k):
    source = _write_long(tmp_path / "preds.csv", with_labels=False)
    assert main(["agreement", str(source), "--out", str(tmp_path / "out"), "--k", str(k)]) == 0
    contrastive = _rows(tmp_path / "out" / "contrastive.csv")
    assert len(contrastive) == k
    values = [float(r["agreement"]) for r in contrastive]
    assert values == sorted(values)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["k"] == k
    # k = all stimuli with an agreement value: only the single-rater stimulus is left out.
    if k == NUM_STIMULI - 1:
        assert sorted(int(r["index"]) for r in contrastive) == [i for i in range(NUM_STIMULI) if i != 7]


def test_default_k_is_at_least_one(tmp_path, capsys):
    source = _write_long(tmp_path / "preds.csv", with_labels=False)
    assert main(["agreement", str(source), "--out", str(tmp_path / "out")]) == 0
    # 2% of 23 stimuli rounds down to 0; the default keeps at least one.
    assert len(_rows(tmp_path / "out" / "contrastive.csv")) == 1


def test_categories_file(tmp_path, capsys):
    source = _write_long(tmp_path / "preds.csv", with_labels=False)
    names = tmp_path / "categories.txt"
    names.write_text("dog\ncat\n\n  bee  \nant\nemu\n")
    argv = ["agreement", str(source), "--out", str(tmp_path / "out"), "--categories", str(names), "--k", "2"]
    assert main(argv) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["num_categories"] == 5
    # Renaming categories does not change agreement or kappa.
    want = float(ja.fleiss_kappa(ja.count_predictions(PREDS, num_categories=4)))
    assert summary["fleiss_kappa"] == pytest.approx(want, abs=1e-6)


# ---------------------------------------------------------------------------------------------
# agreement with labels


def test_agreement_with_labels_and_bins(tmp_path, capsys):
    source = _write_long(tmp_path / "preds.csv")
    out = tmp_path / "report"
    assert main(["agreement", str(source), "--out", str(out), "--k", "4", "--bins", "3"]) == 0
    capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())

    want_accuracy = _reference_accuracy(PREDS, LABELS)
    accuracy = _rows(out / "accuracy.csv")
    assert list(accuracy[0]) == ["model", "accuracy", "bin"]
    assert [r["model"] for r in accuracy] == MODELS
    np.testing.assert_allclose([float(r["accuracy"]) for r in accuracy], want_accuracy, rtol=0, atol=1e-6)
    assert summary["mean_accuracy"] == pytest.approx(want_accuracy.mean(), abs=1e-6)

    # Three equal-count bins of two models each, by accuracy (ties by index).
    bins = summary["accuracy_bins"]
    assert len(bins) == 3
    assert [b["bin"] for b in bins] == [0, 1, 2]
    assert [b["num_models"] for b in bins] == [2, 2, 2]
    order = np.argsort(want_accuracy, kind="stable")
    want_bin = np.empty(NUM_MODELS, int)
    for b, members in enumerate(np.array_split(order, 3)):
        want_bin[members] = b
        assert bins[b]["accuracy_lower"] == pytest.approx(want_accuracy[members].min(), abs=1e-6)
        assert bins[b]["accuracy_upper"] == pytest.approx(want_accuracy[members].max(), abs=1e-6)
        want_kappa = reference.kappa(reference.counts(PREDS[members], len(CATEGORIES)))
        assert bins[b]["fleiss_kappa_all"] == pytest.approx(want_kappa, abs=1e-5)
    assert [int(r["bin"]) for r in accuracy] == want_bin.tolist()

    bin_rows = _rows(out / "bins.csv")
    assert list(bin_rows[0]) == [
        "bin", "accuracy_range", "num_models", "fleiss_kappa_all", "fleiss_kappa_contrastive"
    ]
    assert len(bin_rows) == 3
    for row, entry in zip(bin_rows, bins):
        assert int(row["num_models"]) == entry["num_models"]
        assert float(row["fleiss_kappa_all"]) == pytest.approx(entry["fleiss_kappa_all"], abs=1e-6)
        contrastive = entry["fleiss_kappa_contrastive"]
        assert float(row["fleiss_kappa_contrastive"]) == pytest.approx(contrastive, abs=1e-6)

    assert _is_png(out / "fig3_kappa_by_accuracy.png")
    assert _is_png(out / "fig4_agreement_sorted.png")
    assert len(_rows(out / "contrastive.csv")) == 4
    assert len(_rows(out / "agreement.csv")) == NUM_STIMULI


def _edges_between(lower_rank: int) -> float:
    """An accuracy edge halfway between the models ranked ``lower_rank`` and ``lower_rank + 1``."""
    accuracy = np.sort(_reference_accuracy(PREDS, LABELS))
    assert accuracy[lower_rank] < accuracy[lower_rank + 1]
    return float((accuracy[lower_rank] + accuracy[lower_rank + 1]) / 2)




def test_bin_edges(tmp_path, capsys):
    source = _write_long(tmp_path / "preds.csv")
    edges = [0.0, _edges_between(1), 1.0]
    text = ",".join(f"{e:.6f}" for e in edges)
    out = tmp_path / "report"
    assert main(["agreement", str(source), "--out", str(out), "--k", "3", "--bin-edges", text]) == 0
    summary = json.loads((out / "summary.json").read_text())
    bins = summary["accuracy_bins"]
    assert len(bins) == 2
    assert [b["num_models"] for b in bins] == [2, 4]
    assert [b["accuracy_lower"] for b in bins] == pytest.approx([0.0, edges[1]], abs=1e-6)
    assert [b["accuracy_upper"] for b in bins] == pytest.approx([edges[1], 1.0], abs=1e-6)
    want_bin = (_reference_accuracy(PREDS, LABELS) >= edges[1]).astype(int)
    assert [int(r["bin"]) for r in _rows(out / "accuracy.csv")] == want_bin.tolist()
    assert len(_rows(out / "bins.csv")) == 2


def test_bin_edges_leaving_models_out(tmp_path, capsys):
    # Models outside every bin are written with bin -1.
    source = _write_long(tmp_path / "preds.csv")
    lowest = _edges_between(NUM_MODELS - 3)
    out = tmp_path / "report"
    argv = ["agreement", str(source), "--out", str(out), "--k", "2", "--bin-edges", f"{lowest:.6f},1"]
    assert main(argv) == 0
    bins = [int(r["bin"]) for r in _rows(out / "accuracy.csv")]
    assert bins == [0 if a >= lowest else -1 for a in _reference_accuracy(PREDS, LABELS)]
    assert bins.count(0) == 2


# ---------------------------------------------------------------------------------------------
# Wide inputs


def test_npy_input(tmp_path, capsys):
    np.save(tmp_path / "preds.npy", PREDS)
    out = tmp_path / "report"
    assert main(["agreement", str(tmp_path / "preds.npy"), "--out", str(out), "--k", "3"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["num_models"], summary["num_stimuli"], summary["num_categories"]) == (6, 24, 4)
    want = float(ja.fleiss_kappa(ja.count_predictions(PREDS, num_categories=4)))
    assert summary["fleiss_kappa"] == pytest.approx(want, abs=1e-6)
    rows = _rows(out / "agreement.csv")
    assert [r["stimulus"] for r in rows] == [str(i) for i in range(NUM_STIMULI)]
    assert not (out / "accuracy.csv").exists()


def test_npy_input_with_num_categories(tmp_path, capsys):
    np.save(tmp_path / "preds.npy", PREDS)
    out = tmp_path / "report"
    argv = ["agreement", str(tmp_path / "preds.npy"), "--out", str(out), "--k", "3", "--num-categories", "7"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_categories"] == 7
    want = float(ja.fleiss_kappa(ja.count_predictions(PREDS, num_categories=7)))
    assert summary["fleiss_kappa"] == pytest.approx(want, abs=1e-6)
    # Unused categories have p_j = 0, so kappa is the same as with 4.
    assert summary["fleiss_kappa"] == pytest.approx(reference.kappa(reference.counts(PREDS, 4)), abs=1e-5)


def test_npz_input_with_labels(tmp_path, capsys):
    np.savez(
        tmp_path / "preds.npz",
        predictions=PREDS,
        labels=LABELS,
        models=np.array(MODELS),
        stimuli=np.array(STIMULI),
        categories=np.array(CATEGORIES),
    )
    out = tmp_path / "report"
    assert main(["agreement", str(tmp_path / "preds.npz"), "--out", str(out), "--k", "3", "--bins", "2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["accuracy_bins"]) == 2
    assert [r["stimulus"] for r in _rows(out / "agreement.csv")] == STIMULI
    accuracy = _rows(out / "accuracy.csv")
    assert [r["model"] for r in accuracy] == MODELS
    np.testing.assert_allclose(
        [float(r["accuracy"]) for r in accuracy], _reference_accuracy(PREDS, LABELS), rtol=0, atol=1e-6
    )
    assert (out / "bins.csv").is_file()
    assert _is_png(out / "fig3_kappa_by_accuracy.png")


# ---------------------------------------------------------------------------------------------
# Errors


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("jaxagree agreement: error: ")
    return captured.err


def test_error_duplicate_rows(tmp_path, capsys):
    source = tmp_path / "preds.csv"
    source.write_text("model,stimulus,response\nnetA,img1,cat\nnetB,img1,dog\nnetA,img1,dog\n")
    err = _error(capsys, ["agreement", str(source), "--out", str(tmp_path / "out")])
    assert "duplicate rows for model 'netA', stimulus 'img1'" in err
    assert not (tmp_path / "out" / "summary.json").exists()


def test_error_bins_without_labels(tmp_path, capsys):
    source = _write_long(tmp_path / "preds.csv", with_labels=False)
    err = _error(capsys, ["agreement", str(source), "--out", str(tmp_path / "out"), "--bins", "2"])
    assert "labels" in err


def test_error_bin_edges_without_labels(tmp_path, capsys):
    source = _write_long(tmp_path / "preds.csv", with_labels=False)
    err = _error(capsys, ["agreement", str(source), "--out", str(tmp_path / "out"), "--bin-edges", "0,0.5,1"])
    assert "labels" in err


def test_error_k_larger_than_stimuli(tmp_path, capsys):
    source = _write_long(tmp_path / "preds.csv", with_labels=False)
    err = _error(capsys, ["agreement", str(source), "--out", str(tmp_path / "out"), "--k", "25"])
    assert "k=25" in err and "23" in err


def test_error_missing_file(tmp_path, capsys):
    err = _error(capsys, ["agreement", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "out")])
    assert "absent.csv: no such file" in err


def test_error_too_many_bins(tmp_path, capsys):
    source = _write_long(tmp_path / "preds.csv")
    err = _error(capsys, ["agreement", str(source), "--out", str(tmp_path / "out"), "--bins", "4"])
    assert "num_bins=4" in err


@pytest.mark.parametrize(
    "extra",
    [["--k", "0"], ["--bins", "-1"], ["--bin-edges", "0,x"], ["--bins", "2", "--bin-edges", "0,1"]],
)
def test_argument_errors_exit_2(tmp_path, capsys, extra):
    source = _write_long(tmp_path / "preds.csv")
    with pytest.raises(SystemExit) as raised:
        main(["agreement", str(source), "--out", str(tmp_path / "out"), *extra])
    assert raised.value.code == 2
    assert "error" in capsys.readouterr().err


def test_out_is_required(tmp_path, capsys):
    with pytest.raises(SystemExit) as raised:
        main(["agreement", str(_write_long(tmp_path / "preds.csv"))])
    assert raised.value.code == 2
    assert "--out" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# The installed console script


def test_console_script(tmp_path):
    script = Path(sys.executable).parent / "jaxagree"
    assert script.is_file(), f"console script not installed at {script}"
    source = _write_long(tmp_path / "preds.csv")
    out = tmp_path / "report"
    env = dict(os.environ, MPLBACKEND="Agg", JAX_PLATFORMS="cpu")
    edges = f"0,{_edges_between(1):.6f},1"
    done = subprocess.run(
        [str(script), "agreement", str(source), "--out", str(out), "--k", "4", "--bin-edges", edges],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary == json.loads((out / "summary.json").read_text())
    assert summary["num_models"] == NUM_MODELS
    assert [b["num_models"] for b in summary["accuracy_bins"]] == [2, 4]
    want_bin = (_reference_accuracy(PREDS, LABELS) >= _edges_between(1)).astype(int)
    assert [int(r["bin"]) for r in _rows(out / "accuracy.csv")] == want_bin.tolist()
    want = float(ja.fleiss_kappa(ja.count_predictions(PREDS, num_categories=4)))
    assert summary["fleiss_kappa"] == pytest.approx(want, abs=1e-6)
    assert _is_png(out / "fig4_agreement_sorted.png")

    bad = tmp_path / "bad.csv"
    bad.write_text("model,stimulus,response\nnetA,img1,cat\nnetA,img1,dog\n")
    failed = subprocess.run(
        [str(script), "agreement", str(bad), "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    assert failed.returncode == 2
    assert "jaxagree agreement: error:" in failed.stderr and "duplicate rows" in failed.stderr
