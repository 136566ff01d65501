"""The CKA size-grid benchmark runs (at tiny sizes) and fails on a wrong answer."""

import pytest


def column(table: str, heading: str) -> list[str]:
    """The cells under ``heading`` in the markdown table at the start of ``table``."""
    lines = [line for line in table.split("\n\n")[0].splitlines() if line.startswith("|")]
    headings = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [line.strip("|").split("|")[headings.index(heading)].strip() for line in lines[2:]]


@pytest.mark.slow  # `make test-all`: a full quick run, each size in its own process
def test_cka_grid_benchmark_quick_run():
    from benchmarks import bench_cka_grid

    table = bench_cka_grid.main(["--quick", "--no-save"])
    assert column(table, "models x stimuli x dims") == ["4 x 100 x 16", "6 x 300 x 128"]
    assert sorted(column(table, "path chosen")) == ["features", "gram"]
    assert sorted(column(table, "other path")) == ["features", "gram"]  # both paths, each size
    assert all(float(cell) <= 2e-6 for cell in column(table, "max abs diff vs NumPy"))  # float32 NumPy here
    assert all(float(cell) <= 1e-6 for cell in column(table, "jaxagree vs float64"))
    assert all(float(cell) > 0 for cell in column(table, "peak RSS jaxagree (GB)"))


def test_cka_grid_benchmark_fails_on_a_wrong_answer(monkeypatch):
    from benchmarks import bench_cka_grid

    monkeypatch.setattr(bench_cka_grid, "CKA_TOLERANCE", -1.0)  # any difference at all now fails
    with pytest.raises(AssertionError, match=r"4 x 100 x 16: CKA differs from float64"):
        bench_cka_grid.run_size(bench_cka_grid.QUICK_GRID[0], quick=True)


def test_cka_grid_plans_what_fits():
    from benchmarks import bench_cka_grid

    assert bench_cka_grid.plan_size(500, 8000, 2048, quick=False)["skip"].startswith("skipped: features alone")
    assert bench_cka_grid.plan_size(50, 8000, 512, quick=False)["peer_skip"].startswith("not run: needs")
