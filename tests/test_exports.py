"""Exports: the count table in statsmodels' fleiss_kappa layout, the CKA matrix as a long table, and
`jaxagree cka --long-format/--metadata` end to end."""

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa

import jaxagree as ja
from jaxagree.cli import main
from jaxagree.io import (
    MAX_CSV_CELLS,
    PredictionTable,
    cka_long_table,
    count_table,
    read_model_metadata,
    write_cka_long,
    write_count_table,
)


def _table(preds: np.ndarray, num_categories: int) -> PredictionTable:
    models = [f"m{i}" for i in range(preds.shape[0])]
    stimuli = [f"s{i}" for i in range(preds.shape[1])]
    return PredictionTable(np.asarray(preds, np.int32), None, models, stimuli,
                           [f"c{j}" for j in range(num_categories)])


# ---------------------------------------------------------------------------------------------
# Count table


# (models, stimuli, categories, categories used): the last two include categories no model used.
@pytest.mark.parametrize("shape", [(2, 5, 3, 3), (9, 17, 11, 6), (4, 1, 5, 3)])
def test_count_table_is_statsmodels_layout(shape):
    num_models, num_stimuli, num_categories, used = shape
    rng = np.random.default_rng(num_models * 100 + num_stimuli)
    preds = rng.integers(0, used, size=(num_models, num_stimuli))
    preds[:, 0] = np.arange(num_models) % used  # never all ratings in one category (kappa 0/0)
    table = count_table(preds, num_categories)
    assert table.dtype == np.int64 and table.shape == (num_stimuli, num_categories)
    # statsmodels takes [subjects, raters]: jaxagree's predictions transposed.
    expected, levels = aggregate_raters(preds.T, n_cat=num_categories)
    np.testing.assert_array_equal(table, expected)
    np.testing.assert_array_equal(levels, np.arange(num_categories))
    assert (table[:, used:] == 0).all() and table.sum() == num_models * num_stimuli
    # The same table through a PredictionTable (its own number of categories).
    np.testing.assert_array_equal(count_table(_table(preds, num_categories)), table)
    for method in ("fleiss", "randolph"):
        ours = float(ja.fleiss_kappa(ja.count_predictions(preds, num_categories=num_categories), method=method))
        np.testing.assert_allclose(sm_fleiss_kappa(table, method=method), ours, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(float(ja.fleiss_kappa(table, method=method)), ours, rtol=1e-6, atol=1e-7)


def test_unused_categories_stay_as_columns_unlike_aggregate_raters_default():
    preds = np.array([[0, 2, 2], [2, 2, 0], [0, 0, 2]])
    table = count_table(preds, 4)
    assert table.shape == (3, 4) and (table[:, [1, 3]] == 0).all()
    relabelled, levels = aggregate_raters(preds.T)  # n_cat=None keeps only the levels that occur
    np.testing.assert_array_equal(levels, [0, 2])
    np.testing.assert_array_equal(relabelled, table[:, [0, 2]])
    # Randolph's kappa counts the columns (chance 1 / categories), so they matter.
    assert sm_fleiss_kappa(table, method="randolph") != sm_fleiss_kappa(relabelled, method="randolph")


def test_unequal_raters_is_an_error_naming_the_stimuli_unless_allowed():
    preds = np.array([[0, 1, 1, 2], [0, -1, 1, 2], [1, 1, -1, 2]])
    table = _table(preds, 3)
    with pytest.raises(ValueError, match=r"same number of raters.*2 stimuli have fewer than 3.*'s1' \(2\), 's2' \(2\)"):
        count_table(table)
    allowed = count_table(table, unequal_raters="allow")
    np.testing.assert_array_equal(allowed.sum(axis=1), [3, 2, 2, 3])
    np.testing.assert_array_equal(allowed, np.asarray(ja.count_predictions(preds, num_categories=3)))
    with pytest.raises(AssertionError):  # why the default refuses: statsmodels assumes equal raters
        sm_fleiss_kappa(allowed)
    with pytest.raises(ValueError, match="unequal_raters must be"):
        count_table(table, unequal_raters="drop")


@pytest.mark.parametrize("value", [3, -2])
def test_count_table_out_of_range_names_model_and_stimulus(value):
    preds = np.zeros((3, 5), np.int64)
    preds[2, 4] = value
    with pytest.raises(ValueError, match=rf"model 'm2' on stimulus 's4' \({value}\) is outside \[-1, num_categories=3\)"):
        count_table(_table(preds, 3))
    with pytest.raises(ValueError, match=r"model 2' on stimulus 'stimulus 4'"):
        count_table(preds, 3)


def test_count_table_bad_arguments():
    with pytest.raises(ValueError, match="num_categories is required"):
        count_table(np.zeros((2, 3), int))
    with pytest.raises(ValueError, match="integer array"):
        count_table(np.zeros((2, 3)), 2)
    with pytest.raises(ValueError, match=r"2-D \[models, stimuli\]"):
        count_table(np.zeros(3, int), 2)
    with pytest.raises(ValueError, match="3 model names for 2 models"):
        count_table(np.zeros((2, 3), int), 2, models=["a", "b", "c"])


def test_write_count_table_csv_npy_npz(tmp_path):
    preds = np.array([[0, 1, 3, 3], [0, 1, 1, 3], [2, 1, 3, 0]])
    table = _table(preds, 5)
    expected = count_table(table)
    with write_count_table(tmp_path / "t.csv", table).open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["stimulus", "c0", "c1", "c2", "c3", "c4"]
    assert [r[0] for r in rows[1:]] == table.stimuli
    np.testing.assert_array_equal(np.array([[int(v) for v in r[1:]] for r in rows[1:]]), expected)
    loaded = np.load(write_count_table(tmp_path / "t.npy", table), allow_pickle=False)
    assert loaded.dtype == np.int64
    np.testing.assert_array_equal(loaded, expected)
    with np.load(write_count_table(tmp_path / "t.npz", table), allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["counts"], expected)
        assert npz["stimuli"].tolist() == table.stimuli and npz["categories"].tolist() == table.categories
        assert npz["models"].tolist() == table.models


def test_write_count_table_refusals(tmp_path):
    table = _table(np.zeros((2, 4), int), 3)
    assert MAX_CSV_CELLS == 20_000_000
    with pytest.raises(ValueError, match=r"4 stimuli x 3 categories \(12 cells\) is over the CSV limit of 11 cells; "
                                         r"write it as big.npy or big.npz"):
        write_count_table(tmp_path / "big.csv", table, max_csv_cells=11)
    assert not (tmp_path / "big.csv").exists()
    write_count_table(tmp_path / "fits.csv", table, max_csv_cells=12)
    with pytest.raises(ValueError, match="unknown format '.json'"):
        write_count_table(tmp_path / "t.json", table)
    clash = table._replace(categories=["a", "stimulus", "b"])
    with pytest.raises(ValueError, match="category is named 'stimulus'"):
        write_count_table(tmp_path / "clash.csv", clash)


# ---------------------------------------------------------------------------------------------
# CKA long table

MODELS = ["vit-b", "conv-a", "vit-a", "conv-b", "mlp"]
FAMILIES = {"vit-b": "attention", "conv-a": "conv", "vit-a": "attention", "conv-b": "conv", "mlp": "mlp"}
METADATA = {
    "vit-b": {"params": 86_000_000, "architecture": "vit", "epochs": 300.0, "data": ["in1k", "in21k"]},
    "conv-a": {"params": 25_000_000, "architecture": "resnet", "epochs": 90.0},
    "conv-b": {"architecture": "resnet", "params": 11_000_000},
    "mlp": {"params": 1_000, "epochs": 10.0},
    "not-in-the-matrix": {"params": 1},
}


def _matrix(seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.uniform(0, 1, size=(5, 5)).astype(np.float32), k=1)
    matrix = upper + upper.T + np.eye(5, dtype=np.float32)
    matrix[4, 2] = matrix[2, 4] = np.nan  # a model pair without a value stays NaN
    return matrix


def _read(path: Path) -> pa.Table:
    if path.suffix == ".parquet":
        return pq.read_table(path)
    names = {c: pa.string() for c in ("model_a", "model_b", "family_a", "family_b")}
    return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=names))


def _square(table: pa.Table, models: list[str]) -> np.ndarray:
    index = {m: i for i, m in enumerate(models)}
    square = np.full((len(models), len(models)), -7.0)
    for a, b, value in zip(*(table.column(c).to_pylist() for c in ("model_a", "model_b", "cka"))):
        square[index[a], index[b]] = square[index[b], index[a]] = value
    return square


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_cka_long_round_trip_rebuilds_the_matrix_exactly(tmp_path, suffix):
    matrix = _matrix()
    path = write_cka_long(tmp_path / f"long{suffix}", matrix, MODELS, METADATA, families=FAMILIES, diagonal=True)
    table = _read(path)
    assert table.num_rows == 15 and table.schema.field("cka").type == pa.float64()
    np.testing.assert_array_equal(_square(table, MODELS), matrix.astype(np.float64))  # NaN == NaN here
    assert table.column("same_family").to_pylist() == [
        FAMILIES[a] == FAMILIES[b] for a, b in zip(table.column("model_a").to_pylist(),
                                                   table.column("model_b").to_pylist())]
    # Without the diagonal: one row per unordered pair, upper triangle in row-major order.
    pairs = write_cka_long(tmp_path / f"pairs{suffix}", matrix, MODELS, families=FAMILIES)
    table = _read(pairs)
    rows, cols = np.triu_indices(5, k=1)
    assert list(zip(table.column("model_a").to_pylist(), table.column("model_b").to_pylist())) == [
        (MODELS[i], MODELS[j]) for i, j in zip(rows, cols)]
    np.testing.assert_array_equal(table.column("cka").to_numpy(zero_copy_only=False), matrix[rows, cols])
    assert table.column_names == ["model_a", "model_b", "cka", "family_a", "family_b", "same_family"]


def test_cka_long_metadata_columns_per_side():
    table = cka_long_table(_matrix(), MODELS, METADATA, families=list(FAMILIES.values()))
    assert table.column_names == [
        "model_a", "model_b", "cka", "family_a", "family_b", "same_family",
        "params_a", "params_b", "architecture_a", "architecture_b", "epochs_a", "epochs_b", "data_a", "data_b"]
    assert table.schema.field("params_a").type == pa.int64()
    assert table.schema.field("epochs_b").type == pa.float64()
    rows = {(r["model_a"], r["model_b"]): r for r in table.to_pylist()}
    row = rows[("vit-b", "conv-a")]
    assert (row["family_a"], row["family_b"], row["same_family"]) == ("attention", "conv", False)
    assert (row["params_a"], row["params_b"]) == (86_000_000, 25_000_000)
    assert (row["architecture_a"], row["architecture_b"]) == ("vit", "resnet")
    assert json.loads(row["data_a"]) == ["in1k", "in21k"] and row["data_b"] is None
    row = rows[("vit-a", "conv-b")]  # vit-a has no metadata: nulls on its side
    assert (row["params_a"], row["params_b"], row["epochs_b"]) == (None, 11_000_000, None)
    assert rows[("conv-a", "conv-b")]["same_family"] is True
    # No families, no metadata: just the pairs.
    assert cka_long_table(_matrix(), MODELS).column_names == ["model_a", "model_b", "cka"]


@pytest.mark.parametrize("args, kwargs, message", [
    ((np.ones((3, 4)), ["a", "b", "c"]), {}, r"must be square \[models, models\], got shape \(3, 4\)"),
    ((np.ones(4), ["a"]), {}, r"must be square \[models, models\], got shape \(4,\)"),
    ((np.ones((4, 4)), ["a", "b", "c"]), {}, "3 model names for a 4 x 4 CKA matrix"),
    ((np.ones((2, 2)), ["a", "a"]), {}, "model names must be unique; repeated: 'a'"),
    ((np.array([[1.0, 0.5], [0.4, 1.0]]), ["a", "b"]), {},
     r"not symmetric: \('a', 'b'\) is 0.5 but \('b', 'a'\) is 0.4"),
    ((np.eye(2), ["a", "b"], {"a": {"family": "x"}}), {}, "field 'family' would clash"),
    ((np.eye(2), ["a", "b"], {"a": {"params": 3}, "b": {"params": "3M"}}), {},
     r"field 'params' mixes value types: int \(model 'a'\), str \(model 'b'\)"),
    ((np.eye(2), ["a", "b"], {"x": {"params": 3}}), {}, "metadata names none of the models"),
    ((np.eye(2), ["a", "b"]), {"families": {"a": "f"}}, r"no family for model\(s\) 'b'"),
])
def test_cka_long_bad_input(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cka_long_table(*args, **kwargs)


def test_write_cka_long_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match="unknown format '.xlsx'"):
        write_cka_long(tmp_path / "t.xlsx", np.eye(2), ["a", "b"])


def test_read_model_metadata_csv(tmp_path):
    path = tmp_path / "meta.csv"
    path.write_text("model,params,architecture\nvit-b,86000000,vit\nmlp,,mlp\n")
    assert read_model_metadata(path, MODELS) == {"vit-b": {"params": 86000000, "architecture": "vit"},
                                                 "mlp": {"params": None, "architecture": "mlp"}}
    with pytest.raises(ValueError, match="names none of the models"):
        read_model_metadata(path, ["other"])
    (tmp_path / "bad.csv").write_text("name,params\na,1\n")
    with pytest.raises(ValueError, match="no 'model' column"):
        read_model_metadata(tmp_path / "bad.csv")


def test_read_model_metadata_zoo_file(tmp_path):
    zoo = tmp_path / "zoo.toml"
    zoo.write_text(
        '[[model]]\nname = "conv-a"\nsource = "native:convnet/tiny"\nfamily = "conv"\n'
        '[model.metadata]\nparams = 25000000\ndata = ["in1k"]\n\n'
        '[[model]]\nname = "mlp"\nsource = "native:mixer/tiny"\nfamily = "mlp"\n'
    )
    metadata = read_model_metadata(zoo, MODELS)
    assert metadata == {"conv-a": {"params": 25_000_000, "data": ["in1k"]}, "mlp": {}}
    row = cka_long_table(np.eye(2), ["conv-a", "mlp"], metadata).to_pylist()[0]
    assert (row["params_a"], row["params_b"], row["data_a"]) == (25_000_000, None, '["in1k"]')


# ---------------------------------------------------------------------------------------------
# jaxagree cka


def _features(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    latent = rng.normal(size=(12, 4))
    arrays = {m: (latent @ rng.normal(size=(4, 3 + i)) + rng.normal(size=(12, 3 + i))).astype(np.float32)
              for i, m in enumerate(MODELS)}
    path = tmp_path / "features.npz"
    np.savez(path, **arrays)
    return path


def _square_csv(path: Path) -> np.ndarray:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    return np.array([[float(v) for v in r[1:]] for r in rows], np.float32)


def test_cli_cka_writes_the_long_table(tmp_path, capsys):
    features = _features(tmp_path)
    families = tmp_path / "families.csv"
    families.write_text("model,family\n" + "".join(f"{m},{f}\n" for m, f in FAMILIES.items()))
    metadata = tmp_path / "meta.csv"
    metadata.write_text("model,params\n" + "".join(f"{m},{i * 10}\n" for i, m in enumerate(MODELS)))
    out = tmp_path / "out"
    code = main(["cka", str(features), "--out", str(out), "--families", str(families), "--metadata", str(metadata),
                 "--long-format", "both"])
    assert code == 0, capsys.readouterr().err
    assert "cka_long.csv" in capsys.readouterr().err
    square = _square_csv(out / "cka.csv")
    for name in ("cka_long.csv", "cka_long.parquet"):
        table = _read(out / name)
        assert table.num_rows == 10
        rebuilt = _square(table, MODELS)
        np.fill_diagonal(rebuilt, np.diag(square))
        np.testing.assert_array_equal(rebuilt.astype(np.float32), square)
        rows = {(r["model_a"], r["model_b"]): r for r in table.to_pylist()}
        assert rows[("conv-a", "mlp")]["params_a"] == 10 and rows[("conv-a", "mlp")]["params_b"] == 40
        assert rows[("conv-a", "conv-b")]["family_b"] == "conv" and rows[("conv-a", "conv-b")]["same_family"]
    # Default: the CSV long table only, no family or metadata columns without those options.
    code = main(["cka", str(features), "--out", str(tmp_path / "plain")])
    assert code == 0
    assert not (tmp_path / "plain" / "cka_long.parquet").exists()
    assert _read(tmp_path / "plain" / "cka_long.csv").column_names == ["model_a", "model_b", "cka"]


def test_cli_cka_help_documents_the_long_table(capsys):
    with pytest.raises(SystemExit):
        main(["cka", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--long-format {csv,parquet,both}" in text and "cka_long.parquet" in text and "--metadata FILE" in text


def test_cli_agreement_exports_the_count_table_statsmodels_takes(tmp_path, capsys):
    rng = np.random.default_rng(4)
    preds = rng.integers(0, 5, (7, 30))
    np.savez(tmp_path / "p.npz", predictions=preds)
    for fmt in ("csv", "npz"):
        out = tmp_path / fmt
        assert main(["agreement", str(tmp_path / "p.npz"), "--out", str(out), "--export-counts", fmt]) == 0
    with (tmp_path / "csv" / "counts.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["stimulus", "0", "1", "2", "3", "4"] and len(rows) == 31
    counts = np.array([[int(v) for v in row[1:]] for row in rows[1:]])
    np.testing.assert_array_equal(counts, np.load(tmp_path / "npz" / "counts.npz")["counts"])
    np.testing.assert_array_equal(counts, aggregate_raters(preds.T, n_cat=5)[0])
    summary = json.loads((tmp_path / "csv" / "summary.json").read_text())
    assert sm_fleiss_kappa(counts) == pytest.approx(summary["fleiss_kappa"], abs=1e-6)
    # A stimulus with fewer raters has no statsmodels layout: exit 2, nothing written.
    preds[0, 3] = -1
    np.savez(tmp_path / "q.npz", predictions=preds)
    assert main(["agreement", str(tmp_path / "q.npz"), "--out", str(tmp_path / "q"), "--export-counts", "csv"]) == 2
    err = capsys.readouterr().err
    assert "'3' (6)" in err and "counts.csv" in err and not (tmp_path / "q").exists()
