"""The README's Python quickstart runs as written, and the benchmark runs (at a tiny size)."""

import re
from pathlib import Path

import numpy as np

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
    np.testing.assert_allclose(namespace["sharded"], namespace["similarity"], atol=1e-6)


def test_agreement_benchmark_quick_run():
    from benchmarks import bench_agreement

    table = bench_agreement.main(["--quick", "--no-save"])
    assert "40 x 2,000 x 100" in table


def test_cka_benchmark_quick_run():
    from benchmarks import bench_cka

    table = bench_cka.main(["--quick", "--no-save"])
    assert "8 x 200 x 64" in table
    assert "| 8 | gram |" in table  # the scaling table, each size measured in its own process


def test_device_benchmark_quick_run():
    from benchmarks import device_cka

    text = device_cka.main(["--quick"])
    assert "6 x 64 x 16 | bfloat16" in text


def test_extract_benchmark_quick_run():
    from benchmarks import bench_extract

    table = bench_extract.main(["--quick", "--no-save"])
    assert "| ViT-B/16 | 8 |" in table and "| ResNet-50 | 8 |" in table


def test_device_extract_quick_run():
    from benchmarks import device_extract

    assert "| ResNet-50 | 8 |" in device_extract.main(["--quick"])


def test_sources_benchmark_quick_run():
    from benchmarks import bench_sources

    table = bench_sources.main(["--quick", "--no-save"])
    assert "| decode 48 JPEGs 500x375 -> 256 |" in table and "convnet/tiny over the folder (48 images)" in table
