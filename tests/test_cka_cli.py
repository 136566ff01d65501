"""Feature and index readers, the CKA report, and `jaxagree cka` in process (end to end with
`jaxagree agreement`)."""

import csv
from pathlib import Path

import numpy as np
import pytest

import jaxagree as ja
import jaxagree.report as report
from jaxagree.analysis import CKAAnalysis, analyse_cka
from jaxagree.cli import main
from jaxagree.io import FeatureSet, read_families, read_features, read_indices
from jaxagree.report import _cka as report_cka

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NUM_STIMULI = 24
# Deliberately not sorted: an .npz keeps file order, a folder sorts by stem.
MODELS = ["gamma", "alpha", "delta", "beta"]
DIMS = {"gamma": 5, "alpha": 3, "delta": 7, "beta": 4}
FAMILIES = {"gamma": "conv", "alpha": "vit", "delta": "conv", "beta": "vit"}


def _features(num_stimuli=NUM_STIMULI, seed=0) -> dict[str, np.ndarray]:
    """Four models sharing a latent signal (so CKA is neither 0 nor 1), with different dims."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(num_stimuli, 6))
    out = {}
    for m, name in enumerate(MODELS):
        mix = rng.normal(size=(6, DIMS[name]))
        noise = rng.normal(size=(num_stimuli, DIMS[name])) * (0.5 + 0.5 * m)
        out[name] = (latent @ mix + noise + 3.0).astype(np.float32)
    return out


FEATURES = _features()


def _npz(path: Path, arrays=FEATURES) -> Path:
    np.savez(path, **arrays)
    return path


def _folder(path: Path, arrays=FEATURES) -> Path:
    path.mkdir()
    for name, array in arrays.items():
        np.save(path / f"{name}.npy", array)
    return path


def _read_cka_csv(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    return header, [r[0] for r in body], np.array([[float(v) for v in r[1:]] for r in body])


def _check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    import matplotlib.image

    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50


def _reference_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Biased linear CKA in float64, straight from Kornblith et al. (2019), Eq. for linear kernels."""
    x = np.asarray(x, np.float64) - np.asarray(x, np.float64).mean(0)
    y = np.asarray(y, np.float64) - np.asarray(y, np.float64).mean(0)
    cross = np.linalg.norm(y.T @ x) ** 2
    return cross / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def _run_cka(capsys, *argv) -> tuple[int, str, str]:
    code = main(["cka", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---------------------------------------------------------------------------------------------
# read_features


def test_read_features_npz_keeps_file_order_and_values(tmp_path):
    result = read_features(_npz(tmp_path / "f.npz"))
    assert isinstance(result, FeatureSet)
    assert result.models == MODELS
    assert [a.shape for a in result.features] == [(NUM_STIMULI, DIMS[m]) for m in MODELS]
    for name, array in zip(result.models, result.features):
        assert array.dtype == np.float32
        np.testing.assert_array_equal(array, FEATURES[name])


def test_read_features_folder_sorted_by_stem_ignoring_other_files(tmp_path):
    folder = _folder(tmp_path / "feats")
    (folder / "notes.txt").write_text("not features\n")
    result = read_features(folder)
    assert result.models == sorted(MODELS)
    for name, array in zip(result.models, result.features):
        np.testing.assert_array_equal(array, FEATURES[name])


def test_read_features_integer_and_float64_are_numeric(tmp_path):
    arrays = {"a": np.arange(12, dtype=np.int16).reshape(6, 2), "b": np.ones((6, 3), np.float64)}
    result = read_features(_npz(tmp_path / "f.npz", arrays))
    assert result.models == ["a", "b"]
    assert result.features[0].dtype == np.int16 and result.features[1].dtype == np.float64


def test_read_features_missing_path(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        read_features(tmp_path / "absent.npz")


def test_read_features_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no \.npy files"):
        read_features(tmp_path / "empty")
    (tmp_path / "empty" / "x.txt").write_text("1\n")
    with pytest.raises(ValueError, match=r"no \.npy files"):
        read_features(tmp_path / "empty")


def test_read_features_empty_npz(tmp_path):
    np.savez(tmp_path / "e.npz")
    with pytest.raises(ValueError, match="holds no arrays"):
        read_features(tmp_path / "e.npz")


@pytest.mark.parametrize("name", ["f.npy", "f.csv", "f.txt"])
def test_read_features_wrong_suffix(tmp_path, name):
    path = tmp_path / name
    if name.endswith(".npy"):
        np.save(path, FEATURES["alpha"])
    else:
        path.write_text("1,2\n3,4\n")
    with pytest.raises(ValueError, match=r"expected an \.npz file or a folder of \.npy files"):
        read_features(path)


@pytest.mark.parametrize("shape", [(NUM_STIMULI,), (NUM_STIMULI, 2, 3)])
def test_read_features_not_2d_names_the_model(tmp_path, shape):
    arrays = dict(FEATURES, beta=np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match=r"model 'beta' must be \[stimuli, dim\]"):
        read_features(_npz(tmp_path / "f.npz", arrays))
    with pytest.raises(ValueError, match=r"model 'beta' must be \[stimuli, dim\]"):
        read_features(_folder(tmp_path / "d", arrays))


@pytest.mark.parametrize("bad", [np.array([["a", "b"]] * NUM_STIMULI), np.zeros((NUM_STIMULI, 2), bool)])
def test_read_features_non_numeric_names_the_model(tmp_path, bad):
    arrays = dict(FEATURES, delta=bad)
    with pytest.raises(ValueError, match=r"model 'delta' are not real numbers"):
        read_features(_npz(tmp_path / "f.npz", arrays))


def test_read_features_refuses_pickled_object_arrays(tmp_path):
    obj = np.empty((NUM_STIMULI, 2), object)
    obj[:] = 1.0
    np.savez(tmp_path / "f.npz", alpha=FEATURES["alpha"], beta=obj)
    with pytest.raises(ValueError, match="pickle"):
        read_features(tmp_path / "f.npz")
    folder = tmp_path / "d"
    folder.mkdir()
    np.save(folder / "alpha.npy", FEATURES["alpha"])
    np.save(folder / "beta.npy", obj, allow_pickle=True)
    with pytest.raises(ValueError, match="pickle"):
        read_features(folder)


# ---------------------------------------------------------------------------------------------
# read_indices


def test_read_indices_from_contrastive_csv(tmp_path):
    path = tmp_path / "contrastive.csv"
    path.write_text("rank,index,stimulus,agreement,n_raters\n0,17,img_17,0.1,8\n1,3,img_03,0.2,8\n2,9,img_09,0.25,7\n")
    indices = read_indices(path, 20)
    assert indices.dtype == np.int64
    np.testing.assert_array_equal(indices, [17, 3, 9])


def test_read_indices_one_per_line(tmp_path):
    path = tmp_path / "idx.txt"
    path.write_text("4\n\n 0\n19\n")
    np.testing.assert_array_equal(read_indices(path, 20), [4, 0, 19])


def test_read_indices_index_only_csv(tmp_path):
    path = tmp_path / "idx.csv"
    path.write_text("index\n2\n5\n")
    np.testing.assert_array_equal(read_indices(path, 6), [2, 5])


def test_read_indices_no_index_column(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("rank,stimulus\n0,img_00\n")
    with pytest.raises(ValueError, match=r"column\(s\) 'index'"):
        read_indices(path, 10)


@pytest.mark.parametrize("text, value", [("index\n0\n10\n", "10"), ("3\n-1\n", "-1"), ("rank,index\n0,25\n", "25")])
def test_read_indices_out_of_range_names_the_index(tmp_path, text, value):
    path = tmp_path / "i.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"stimulus index {value} is outside \[0, 10\)"):
        read_indices(path, 10)


@pytest.mark.parametrize("text", ["1\n2\n1\n", "rank,index\n0,4\n1,4\n"])
def test_read_indices_repeated(tmp_path, text):
    path = tmp_path / "i.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match="repeat"):
        read_indices(path, 10)


@pytest.mark.parametrize("text", ["1\nx\n", "index\n1\n2.5\n", "rank,index\n0,\n"])
def test_read_indices_non_integer(tmp_path, text):
    path = tmp_path / "i.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match="is not an integer"):
        read_indices(path, 10)


@pytest.mark.parametrize("text", ["", "\n  \n"])
def test_read_indices_empty_file(tmp_path, text):
    path = tmp_path / "i.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match="no stimulus indices"):
        read_indices(path, 10)


def test_read_indices_header_only_csv_is_empty(tmp_path):
    path = tmp_path / "contrastive.csv"
    path.write_text("rank,index,stimulus,agreement,n_raters\n")
    with pytest.raises(ValueError, match="no stimulus indices"):
        read_indices(path, 10)


# ---------------------------------------------------------------------------------------------
# read_families and the report


def test_read_families(tmp_path):
    path = tmp_path / "families.csv"
    path.write_text("model,family,notes\n alpha ,vit,x\ngamma, conv ,\n")
    assert read_families(path) == {"alpha": "vit", "gamma": "conv"}


@pytest.mark.parametrize("header", ["model,group\n", "name,family\n", ""])
def test_read_families_needs_model_and_family(tmp_path, header):
    path = tmp_path / "families.csv"
    path.write_text(header + ("alpha,vit\n" if header else ""))
    with pytest.raises(ValueError, match=r"expected column\(s\) 'family', 'model'"):
        read_families(path)


def _analysis(matrix, families=None, debiased=False) -> CKAAnalysis:
    """A CKAAnalysis around a given matrix (the report's input), the summaries left empty."""
    family_of = None if families is None else [families[m] for m in MODELS]
    return CKAAnalysis(np.asarray(matrix), MODELS, family_of, np.arange(NUM_STIMULI), debiased, 0.0,
                       None, None, None, None)


def test_write_cka_report_groups_heatmap_by_family(tmp_path, monkeypatch):
    seen = {}

    def fake_plot(matrix, models, path, *, families, title):
        seen.update(matrix=np.asarray(matrix), models=models, families=families, title=title)
        Path(path).write_bytes(PNG_MAGIC)
        return Path(path)

    monkeypatch.setattr(report_cka, "plot_cka", fake_plot)
    matrix = np.arange(16, dtype=np.float32).reshape(4, 4)
    matrix = matrix + matrix.T  # symmetric, as CKA is: the long table has one value per pair
    written = report.write_cka_report(_analysis(matrix, FAMILIES, debiased=True), tmp_path)
    assert set(written) == {"cka", "cka_long_csv", "heatmap"}
    # conv: gamma (0), delta (2); vit: alpha (1), beta (3) -- by family, then by model position.
    order = [0, 2, 1, 3]
    assert seen["models"] == ["gamma", "delta", "alpha", "beta"]
    assert seen["families"] == ["conv", "conv", "vit", "vit"]
    assert seen["title"] == "debiased linear CKA"
    np.testing.assert_array_equal(seen["matrix"], matrix[np.ix_(order, order)])
    # The CSV keeps the input order whatever the heatmap does.
    header, names, values = _read_cka_csv(written["cka"])
    assert header == ["model", *MODELS] and names == MODELS
    np.testing.assert_array_equal(values, matrix)


def test_write_cka_report_without_families_keeps_the_models_order(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(report_cka, "plot_cka", lambda matrix, models, path, **kwargs: seen.update(models=models,
                        **kwargs) or Path(path))
    report.write_cka_report(_analysis(np.eye(4)), tmp_path)
    assert seen == {"models": MODELS, "families": None, "title": "linear CKA"}


def test_missing_family_names_the_model_and_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"families: no family for model\(s\) 'beta'"):
        analyse_cka(FEATURES, families={m: "f" for m in MODELS if m != "beta"})
    path = tmp_path / "families.csv"
    path.write_text("model,family\n" + "".join(f"{m},f\n" for m in MODELS if m != "beta"))
    with pytest.raises(ValueError, match=rf"{path}: no family for model\(s\) 'beta'"):
        read_families(path, MODELS)
    assert read_families(path) == {m: "f" for m in MODELS if m != "beta"}  # without models, no check


def test_plot_cka_writes_a_png(tmp_path):
    path = report.plot_cka(np.eye(3), ["a", "b", "c"], tmp_path / "h.png", families=["x", "x", "y"], title="t")
    assert path == tmp_path / "h.png"
    _check_png(path)


# ---------------------------------------------------------------------------------------------
# jaxagree cka


def _check_cka_output(out: Path, models, arrays, *, debiased=False) -> np.ndarray:
    header, names, values = _read_cka_csv(out / "cka.csv")
    assert header == ["model", *models]
    assert names == list(models)
    assert values.shape == (len(models), len(models))
    np.testing.assert_allclose(values, values.T, atol=1e-7)
    np.testing.assert_allclose(np.diag(values), 1.0, atol=1e-7)
    expected = np.asarray(ja.cka_matrix(list(arrays), debiased=debiased))
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-6)
    _check_png(out / "cka.png")
    return values


def test_cli_cka_passes_the_jax_matrix_to_the_report(tmp_path, capsys):
    code, _, err = _run_cka(capsys, _npz(tmp_path / "f.npz"), "--out", tmp_path / "out")
    assert code == 0, err
    assert (tmp_path / "out" / "cka.csv").exists()


def test_cli_cka_npz(tmp_path, capsys):
    code, out, err = _run_cka(capsys, _npz(tmp_path / "f.npz"), "--out", tmp_path / "out")
    assert code == 0, err
    values = _check_cka_output(tmp_path / "out", MODELS, FEATURES.values())
    assert f"4 models x {NUM_STIMULI} stimuli: linear CKA" in out
    assert "cka.csv" in err and "cka.png" in err
    # The numbers are the textbook biased linear CKA (float64 reference), not just self-consistent.
    for i, a in enumerate(MODELS):
        for j, b in enumerate(MODELS):
            assert values[i, j] == pytest.approx(_reference_cka(FEATURES[a], FEATURES[b]), abs=1e-5)
    off = values[~np.eye(4, dtype=bool)]
    assert 0.05 < off.min() and off.max() < 0.99  # the fixture is not degenerate


def test_cli_cka_debiased(tmp_path, capsys):
    features = _npz(tmp_path / "f.npz")
    code, out, err = _run_cka(capsys, features, "--out", tmp_path / "deb", "--debiased")
    assert code == 0, err
    assert "debiased linear CKA" in out
    debiased = _check_cka_output(tmp_path / "deb", MODELS, FEATURES.values(), debiased=True)
    biased = np.asarray(ja.cka_matrix(list(FEATURES.values())))
    assert np.abs(debiased - biased).max() > 1e-3  # the flag changed the estimator


def test_cli_cka_matmul_precision(tmp_path, capsys):
    code, _, err = _run_cka(capsys, _npz(tmp_path / "f.npz"), "--out", tmp_path / "bf16", "--matmul-precision", "bfloat16")
    assert code == 0, err
    _, _, values = _read_cka_csv(tmp_path / "bf16" / "cka.csv")
    exact = np.asarray(ja.cka_matrix(list(FEATURES.values())))
    assert 0 < np.abs(values - exact).max() < 2e-2
    with pytest.raises(SystemExit) as raised:
        _run_cka(capsys, _npz(tmp_path / "f.npz"), "--out", tmp_path / "x", "--matmul-precision", "fp8")
    assert raised.value.code == 2 and "invalid choice: 'fp8'" in capsys.readouterr().err


def test_cli_cka_folder_of_npy(tmp_path, capsys):
    code, _, err = _run_cka(capsys, _folder(tmp_path / "feats"), "--out", tmp_path / "out")
    assert code == 0, err
    names = sorted(MODELS)
    _check_cka_output(tmp_path / "out", names, [FEATURES[m] for m in names])


@pytest.mark.parametrize("kind", ["contrastive", "plain"])
def test_cli_cka_stimuli_subset(tmp_path, capsys, kind):
    chosen = [11, 2, 19, 7, 0, 23, 15]
    if kind == "contrastive":
        path = tmp_path / "contrastive.csv"
        path.write_text(
            "rank,index,stimulus,agreement,n_raters\n"
            + "".join(f"{r},{i},img_{i:02d},0.{r},5\n" for r, i in enumerate(chosen))
        )
    else:
        path = tmp_path / "idx.txt"
        path.write_text("\n".join(map(str, chosen)) + "\n")
    code, out, err = _run_cka(capsys, _npz(tmp_path / "f.npz"), "--out", tmp_path / "out", "--stimuli", path)
    assert code == 0, err
    assert f"4 models x {len(chosen)} stimuli" in out
    values = _check_cka_output(tmp_path / "out", MODELS, [FEATURES[m][chosen] for m in MODELS])
    full = np.asarray(ja.cka_matrix(list(FEATURES.values())))
    assert np.abs(values - full).max() > 1e-3  # the subset really was used


def test_cli_cka_stimuli_out_of_range(tmp_path, capsys):
    path = tmp_path / "idx.txt"
    path.write_text(f"0\n{NUM_STIMULI}\n")
    code, _, err = _run_cka(capsys, _npz(tmp_path / "f.npz"), "--out", tmp_path / "out", "--stimuli", path)
    assert code == 2
    assert f"jaxagree cka: error: {path}: stimulus index {NUM_STIMULI} is outside [0, {NUM_STIMULI})" in err


def test_cli_cka_families(tmp_path, capsys, monkeypatch):
    families = tmp_path / "families.csv"
    families.write_text("model,family\n" + "".join(f"{m},{f}\n" for m, f in FAMILIES.items()) + "extra,x\n")
    code, _, err = _run_cka(capsys, _npz(tmp_path / "f.npz"), "--out", tmp_path / "out", "--families", families)
    assert code == 0, err
    values = _check_cka_output(tmp_path / "out", MODELS, FEATURES.values())

    # The heatmap is drawn grouped by family (the CSV above keeps file order).
    seen = {}
    original = report_cka.plot_cka

    def spy(matrix, models, path, **kwargs):
        seen.update(matrix=np.asarray(matrix), models=models, **kwargs)
        return original(matrix, models, path, **kwargs)

    monkeypatch.setattr(report_cka, "plot_cka", spy)
    code, _, err = _run_cka(capsys, _npz(tmp_path / "f.npz"), "--out", tmp_path / "out2", "--families", families)
    assert code == 0, err
    assert seen["models"] == ["gamma", "delta", "alpha", "beta"]
    assert seen["families"] == ["conv", "conv", "vit", "vit"]
    order = [0, 2, 1, 3]
    np.testing.assert_allclose(seen["matrix"], values[np.ix_(order, order)], atol=1e-6)
    _check_png(tmp_path / "out2" / "cka.png")


def test_cli_cka_family_missing_for_a_model(tmp_path, capsys):
    families = tmp_path / "families.csv"
    families.write_text("model,family\n" + "".join(f"{m},{f}\n" for m, f in FAMILIES.items() if m != "delta"))
    code, _, err = _run_cka(capsys, _npz(tmp_path / "f.npz"), "--out", tmp_path / "out", "--families", families)
    assert code == 2
    assert "jaxagree cka: error:" in err and "'delta'" in err
    assert not (tmp_path / "out" / "cka.png").exists()


def test_cli_cka_families_without_family_column(tmp_path, capsys):
    families = tmp_path / "families.csv"
    families.write_text("model,group\nalpha,vit\n")
    code, _, err = _run_cka(capsys, _npz(tmp_path / "f.npz"), "--out", tmp_path / "out", "--families", families)
    assert code == 2
    assert "jaxagree cka: error:" in err and "'family'" in err


def _mismatched(tmp_path) -> Path:
    arrays = dict(FEATURES, beta=FEATURES["beta"][:15])
    return _npz(tmp_path / "mismatch.npz", arrays)


def test_cli_cka_mismatched_stimulus_counts_exit_2(tmp_path, capsys):
    code, _, err = _run_cka(capsys, _mismatched(tmp_path), "--out", tmp_path / "out")
    assert code == 2
    assert "jaxagree cka: error:" in err and "15 stimuli" in err and f"{NUM_STIMULI}" in err
    assert not (tmp_path / "out" / "cka.csv").exists()


def test_cli_cka_mismatched_stimulus_counts_names_both_models(tmp_path, capsys):
    code, _, err = _run_cka(capsys, _mismatched(tmp_path), "--out", tmp_path / "out")
    assert code == 2
    message = err.split("error:", 1)[1]
    assert "beta" in message and "gamma" in message


@pytest.mark.parametrize("indices", ["0\n1\n2\n3\n4\n5\n", "0\n1\n2\n3\n4\n20\n"])
def test_cli_cka_mismatched_stimulus_counts_with_stimuli(tmp_path, capsys, indices):
    path = tmp_path / "idx.txt"
    path.write_text(indices)
    code, _, err = _run_cka(capsys, _mismatched(tmp_path), "--out", tmp_path / "out", "--stimuli", path)
    assert code == 2
    assert "jaxagree cka: error:" in err and "beta" in err.split("error:", 1)[1]


def _gram_model_bytes() -> int:
    return ja.cka.plan.gram_model_bytes(NUM_STIMULI, max(f.shape[1] for f in FEATURES.values()), shards=4)


@pytest.mark.parametrize("blocks", [1, 3])
def test_cli_cka_max_bytes_tiling_gives_same_result(tmp_path, capsys, blocks):
    features = _npz(tmp_path / "f.npz")
    code, _, err = _run_cka(capsys, features, "--out", tmp_path / "whole")
    assert code == 0, err
    # A budget of a few models' Gram blocks (per device: the CLI splits the work over the 4 test
    # devices): the models, or the feature columns, are processed in several tiles.
    max_bytes = 2 * blocks * _gram_model_bytes()
    code, _, err = _run_cka(capsys, features, "--out", tmp_path / "tiled", "--max-bytes", max_bytes)
    assert code == 0, err
    _, _, whole = _read_cka_csv(tmp_path / "whole" / "cka.csv")
    _, _, tiled = _read_cka_csv(tmp_path / "tiled" / "cka.csv")
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-6)
    _check_cka_output(tmp_path / "tiled", MODELS, FEATURES.values())


def test_cli_cka_max_bytes_too_small(tmp_path, capsys):
    code, _, err = _run_cka(capsys, _npz(tmp_path / "f.npz"), "--out", tmp_path / "out", "--max-bytes", 16)
    assert code == 2
    assert "jaxagree cka: error:" in err and "max_bytes" in err


def test_cli_cka_max_bytes_too_small_for_grams_uses_the_feature_path(tmp_path, capsys):
    path = _npz(tmp_path / "f.npz")
    code, _, err = _run_cka(capsys, path, "--out", tmp_path / "whole")
    assert code == 0, err
    # No room for a row and a column tile of Grams (and the 4 models do not fit one tile).
    no_grams = 2 * _gram_model_bytes() - 1
    dims = [f.shape[1] for f in FEATURES.values()]
    assert ja.cka.plan.choose_path(dims, NUM_STIMULI, no_grams, "auto", shards=4).name == "features"
    code, _, err = _run_cka(capsys, path, "--out", tmp_path / "small", "--max-bytes", no_grams)
    assert code == 0, err
    np.testing.assert_allclose(
        np.loadtxt(tmp_path / "small" / "cka.csv", delimiter=",", skiprows=1, usecols=range(1, 5)),
        np.loadtxt(tmp_path / "whole" / "cka.csv", delimiter=",", skiprows=1, usecols=range(1, 5)),
        atol=1e-6,
    )


def _with_nan(tmp_path) -> Path:
    gamma = FEATURES["gamma"].copy()
    gamma[3, 1] = np.nan
    return _npz(tmp_path / "nan.npz", dict(FEATURES, gamma=gamma))


def test_cli_cka_nan_features_exit_2(tmp_path, capsys):
    code, _, err = _run_cka(capsys, _with_nan(tmp_path), "--out", tmp_path / "out")
    assert code == 2
    assert "jaxagree cka: error:" in err and "nan" in err and "stimulus 3" in err
    assert not (tmp_path / "out" / "cka.csv").exists()


def test_cli_cka_nan_features_names_the_model(tmp_path, capsys):
    code, _, err = _run_cka(capsys, _with_nan(tmp_path), "--out", tmp_path / "out")
    assert code == 2
    assert "gamma" in err.split("error:", 1)[1]


def test_cli_cka_unreadable_features_exit_2(tmp_path, capsys):
    code, _, err = _run_cka(capsys, tmp_path / "absent.npz", "--out", tmp_path / "out")
    assert code == 2
    assert "jaxagree cka: error:" in err and "absent.npz" in err


def test_cli_cka_single_model_exit_2(tmp_path, capsys):
    code, _, err = _run_cka(capsys, _npz(tmp_path / "one.npz", {"alpha": FEATURES["alpha"]}), "--out", tmp_path / "o")
    assert code == 2
    assert "jaxagree cka: error:" in err and "at least 2" in err


@pytest.mark.parametrize("option", ["--stimuli", "--families"])
def test_cli_cka_missing_option_file_exit_2(tmp_path, capsys, option):
    missing = tmp_path / "missing.csv"
    code, _, err = _run_cka(capsys, _npz(tmp_path / "f.npz"), "--out", tmp_path / "out", option, missing)
    assert code == 2
    assert "jaxagree cka: error:" in err and "missing.csv" in err


# ---------------------------------------------------------------------------------------------
# agreement -> cka


def test_agreement_contrastive_csv_feeds_cka(tmp_path, capsys):
    num_models, num_stimuli, num_categories, k = 8, 30, 4, 10
    rng = np.random.default_rng(1)
    labels = rng.integers(0, num_categories, num_stimuli)
    # Stimulus difficulty varies, so agreement varies and the k lowest are a real choice.
    difficulty = np.linspace(0.05, 0.9, num_stimuli)[rng.permutation(num_stimuli)]
    right = rng.random((num_models, num_stimuli)) > difficulty[None, :]
    wrong = (labels[None, :] + rng.integers(1, num_categories, (num_models, num_stimuli))) % num_categories
    preds = np.where(right, labels[None, :], wrong).astype(np.int32)
    stimuli = np.array([f"img_{i:02d}" for i in range(num_stimuli)])
    np.savez(tmp_path / "preds.npz", predictions=preds, labels=labels.astype(np.int32), stimuli=stimuli)

    assert main(["agreement", str(tmp_path / "preds.npz"), "--out", str(tmp_path / "agree"), "--k", str(k)]) == 0
    capsys.readouterr()
    contrastive = tmp_path / "agree" / "contrastive.csv"
    with contrastive.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    chosen = [int(r["index"]) for r in rows]
    assert len(chosen) == k == len(set(chosen))
    assert [r["stimulus"] for r in rows] == [stimuli[i] for i in chosen]
    agreement = np.asarray(ja.per_stimulus_agreement(ja.count_predictions(preds, num_categories=num_categories)))
    np.testing.assert_array_equal(sorted(chosen), sorted(np.asarray(ja.contrastive_stimuli(agreement, k)).tolist()))

    features = _features(num_stimuli=num_stimuli, seed=2)
    code, out, err = _run_cka(
        capsys, _npz(tmp_path / "f.npz", features), "--out", tmp_path / "cka", "--stimuli", contrastive
    )
    assert code == 0, err
    assert f"4 models x {k} stimuli" in out
    values = _check_cka_output(tmp_path / "cka", MODELS, [features[m][chosen] for m in MODELS])
    for i, a in enumerate(MODELS):
        for j, b in enumerate(MODELS):
            assert values[i, j] == pytest.approx(_reference_cka(features[a][chosen], features[b][chosen]), abs=1e-5)
    full = np.asarray(ja.cka_matrix(list(features.values())))
    assert np.abs(values - full).max() > 1e-3


def test_families_may_come_from_the_zoo_file(tmp_path, capsys):
    # As `identify --families` takes it: the README's tour passes the zoo file it trained.
    entry = '[[model]]\nname = "{}"\nsource = "native:convnet/tiny"\nfamily = "{}"\n'
    zoo = tmp_path / "zoo.toml"
    families = {m: {"vit": "attention"}.get(f, f) for m, f in FAMILIES.items()}  # a zoo's families are fixed
    zoo.write_text("".join(entry.format(name, families[name]) for name in MODELS))
    csv_families = tmp_path / "families.csv"
    csv_families.write_text("model,family\n" + "".join(f"{m},{f}\n" for m, f in families.items()))
    features = _npz(tmp_path / "f.npz")
    for source, out in ((zoo, "from_zoo"), (csv_families, "from_csv")):
        code, _, err = _run_cka(capsys, features, "--families", source, "--out", tmp_path / out)
        assert code == 0, err
    assert (tmp_path / "from_zoo" / "cka_long.csv").read_text() == (tmp_path / "from_csv" / "cka_long.csv").read_text()
    assert "family_a" in (tmp_path / "from_zoo" / "cka_long.csv").read_text().splitlines()[0]
