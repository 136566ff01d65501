"""The README's Python quickstart runs as written, and the benchmark runs (at a tiny size)."""

import re
from pathlib import Path

import numpy as np
import pytest

import jaxagree as ja

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_quickstart_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python block"
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 1000, 1200)
    preds = np.where(rng.random((30, 1200)) < 0.7, labels, rng.integers(0, 1000, (30, 1200)))
    np.save(tmp_path / "predictions.npy", preds)
    monkeypatch.chdir(tmp_path)
    namespace = {"labels": labels}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["kappa_per_bin"].shape == (10,)
    assert namespace["ec"].shape == (30, 30)
    assert namespace["contrastive"].shape == (1000,)
    np.testing.assert_allclose(namespace["bounded"], namespace["similarity"], atol=1e-6)
    np.testing.assert_allclose(namespace["streamed"], namespace["similarity"], atol=1e-5)
    np.testing.assert_allclose(namespace["from_state"], namespace["similarity"], atol=1e-5)
    np.testing.assert_allclose(namespace["sharded"], namespace["similarity"], atol=1e-6)
    assert namespace["table"].per_bin.kappa_contrastive.shape == (5,)
    cka = namespace["cka"]
    assert cka.matrix.shape == (5, 5) and len(cka.stimuli) == 100 and cka.family_names == ["conv", "vit"]


def column(text: str, heading: str) -> list[str]:
    """The cells under ``heading`` in the first markdown table of ``text`` (which ends where the
    text or its table lines end, or where a next table's heading line starts)."""
    lines = [line for line in text[text.index("|"):].split("\n\n")[0].splitlines() if line.startswith("|")]
    headings = [cell.strip() for cell in lines[0].strip("|").split("|")]
    ends = [i for i in range(2, len(lines)) if i + 1 < len(lines) and lines[i + 1].startswith("|---")]
    rows = [line.strip("|").split("|") for line in lines[2 : ends[0] if ends else len(lines)]]
    assert all(len(row) == len(headings) for row in rows), "a cell holds a '|'"
    return [row[headings.index(heading)].strip() for row in rows]


@pytest.mark.slow  # `make test-all`: a full quick run, peers in their own processes
def test_agreement_benchmark_quick_run():
    pytest.importorskip("statsmodels")  # the peer
    from benchmarks import bench_agreement

    table = bench_agreement.main(["--quick", "--no-save"])
    assert column(table, "models x stimuli x categories") == ["40 x 2,000 x 100"]
    # Every kappa (all models, dense table, 10 bins) against statsmodels; Eq. 1 against float64.
    assert float(column(table, "kappa: max abs diff vs statsmodels")[0]) <= 1e-6
    assert float(column(table, "Eq. 1: max abs diff vs float64 on statsmodels' table")[0]) <= 1e-7


@pytest.mark.parametrize("function, match", [("fleiss_kappa", "kappa"), ("per_stimulus_agreement", "agreement")])
def test_agreement_benchmark_fails_on_a_wrong_answer(monkeypatch, function, match):
    pytest.importorskip("statsmodels")
    from benchmarks import bench_agreement

    right = getattr(ja, function)
    monkeypatch.setattr(ja, function, lambda *args, **kwargs: right(*args, **kwargs) + 1e-4)
    with pytest.raises(AssertionError, match=f"{match} .*differs from"):
        bench_agreement.main(["--quick", "--no-save"])


@pytest.mark.slow  # `make test-all`: a full quick run, peers in their own processes
def test_cka_benchmark_quick_run():
    from benchmarks import bench_cka

    table = bench_cka.main(["--quick", "--no-save"])
    assert column(table, "models x stimuli x dims") == ["8 x 200 x 64"]
    assert float(column(table, "max abs diff vs (a)")[0]) <= 2e-6  # float32 NumPy at this size
    assert float(column(table, "max abs diff vs (c)")[0]) <= 2e-6
    assert "| 8 | gram |" in table  # the scaling table, each size measured in its own process


def test_cka_benchmark_fails_on_a_wrong_answer(monkeypatch):
    from benchmarks import bench_cka

    right = ja.cka_matrix
    monkeypatch.setattr(ja, "cka_matrix", lambda *args, **kwargs: right(*args, **kwargs) * 0.999)
    with pytest.raises(AssertionError, match=r"8 x 200 x 64: CKA differs from peer \(a\)"):
        bench_cka.run_case(*bench_cka.QUICK_CASES[0], rate=1e10, repeats=1, peers=set())


def test_bootstrap_benchmark_quick_run():
    from benchmarks import bench_bootstrap

    table = bench_bootstrap.main(["--quick", "--no-save"])
    assert column(table, "models x stimuli x dims") == ["6 x 64 x 16"]
    assert float(column(table, "max abs diff vs loop")[0]) <= 1e-6  # every replicate against its gathered resample


def test_bootstrap_benchmark_fails_on_a_wrong_answer(monkeypatch):
    from benchmarks import bench_bootstrap

    right = ja.cka_bootstrap
    monkeypatch.setattr(ja, "cka_bootstrap", lambda *args, **kwargs: (lambda r: r._replace(
        replicates=r.replicates * 0.999))(right(*args, **kwargs)))
    with pytest.raises(AssertionError, match="6 x 64 x 16: a replicate differs from cka_matrix of its gathered"):
        bench_bootstrap.run_case(*bench_bootstrap.QUICK_CASES[0], rate=1e10, quick=True)


@pytest.mark.slow  # `make test-all`: a full quick run, peers in their own processes
def test_agreement_bootstrap_benchmark_quick_run():
    pytest.importorskip("statsmodels")  # the peer, and the answers' checks
    from benchmarks import bench_agreement_bootstrap

    table = bench_agreement_bootstrap.main(["--quick", "--no-save"])
    assert column(table, "models x stimuli x categories") == ["12 x 400 x 10"] * 2
    assert column(table, "labels (error consistency)") == ["no", "yes"]
    assert all(float(x) > 0 for x in column(table, "per replicate (ms)") + column(table, "vs statsmodels loop"))


def test_agreement_bootstrap_benchmark_fails_on_a_wrong_answer(monkeypatch):
    pytest.importorskip("statsmodels")
    from benchmarks import bench_agreement_bootstrap

    right = ja.agreement_bootstrap
    monkeypatch.setattr(ja, "agreement_bootstrap", lambda *args, **kwargs: (lambda r: r._replace(
        kappa_contrastive=r.kappa_contrastive._replace(replicates=r.kappa_contrastive.replicates * 0.999)))(
        right(*args, **kwargs)))
    with pytest.raises(AssertionError, match="12 x 400 x 10: a replicate differs from the float64 reference"):
        bench_agreement_bootstrap.run_case(*bench_agreement_bootstrap.QUICK_CASES[0], rate=1e10, quick=True)


def test_device_benchmark_quick_run(monkeypatch):
    from benchmarks import device_cka

    text = device_cka.main(["--quick"])
    assert "6 x 64 x 16 | bfloat16" in text
    error = re.search(r"max \|CKA error\| against float64 NumPy .*?: float32 (\S+),", text)
    assert float(error.group(1)) <= 1e-6
    right = ja.cka_matrix
    monkeypatch.setattr(ja, "cka_matrix", lambda *args, **kwargs: right(*args, **kwargs) * 0.999)
    with pytest.raises(AssertionError, match="float32"):
        device_cka.main(["--quick"])


@pytest.mark.slow  # `make test-all`: a full quick run, peers in their own processes
def test_extract_benchmark_quick_run():
    from benchmarks import bench_extract

    table = bench_extract.main(["--quick", "--no-save"])
    assert "| ViT-B/16 | 8 |" in table and "| ResNet-50 | 8 |" in table


@pytest.mark.slow  # `make test-all`: device_all's dry run (in make test) covers the same models on the device path
def test_device_extract_quick_run():
    from benchmarks import device_extract

    assert "| ResNet-50 | 8 |" in device_extract.main(["--quick"])


@pytest.mark.slow  # `make test-all`: a full quick run
def test_cost_model_benchmark_quick_run():
    from benchmarks import bench_cost_model

    table = bench_cost_model.main(["--quick", "--no-save"])
    rows = [line for line in table.splitlines() if line.startswith("| 40 x")]
    assert len(rows) == 4 and all("dense table" in row or "per rating" in row for row in rows)


def test_sources_benchmark_quick_run():
    from benchmarks import bench_sources

    table = bench_sources.main(["--quick", "--no-save"])
    assert "| decode 48 JPEGs 500x375 -> 256 |" in table and "convnet/tiny over the folder (48 images)" in table


def test_the_cli_reference_is_what_help_prints():
    import importlib.util

    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "docs" / "cli_reference.py")
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    assert (ROOT / "docs" / "cli.md").read_text() == reference.render(), (
        "docs/cli.md is out of date: run .venv/bin/python docs/cli_reference.py")


def test_the_readme_command_table_lists_every_command():
    import argparse

    from jaxagree.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## Command reference"):]
    listed = [cell.strip("` ").removeprefix("jaxagree ") for cell in column(table, "command")]
    assert sorted(listed) == sorted(commands)


def test_the_readme_zoo_files_read(tmp_path):
    from jaxagree.models import read_zoo

    blocks = re.findall(r"```toml\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert len(blocks) >= 2
    for i, block in enumerate(blocks):
        path = tmp_path / f"zoo{i}.toml"
        path.write_text(block)
        zoo = read_zoo(path, trust_code=True)  # only read: a python: entry is not imported
        assert zoo and all(spec.family for spec in zoo)
