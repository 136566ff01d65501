"""The notebooks in notebooks/: committed without outputs, generated from make_notebooks.py, and
each executed (nbclient, the venv's ipykernel) at a small size injected after its ``parameters``
cell, in a temporary working folder, so a broken notebook fails the suite."""

import importlib.util
import os
import time
from pathlib import Path

import nbclient
import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
_spec = importlib.util.spec_from_file_location("make_notebooks", NOTEBOOKS / "make_notebooks.py")
make_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_notebooks)

# Sizes for the test: small enough that each notebook runs in ~10-20 s on 2 CPU cores, kernel start
# and jax import included. Each key must be a name of the notebook's parameters cell.
SMALL = {
    "01_agreement.ipynb": dict(NUM_MODELS=30, NUM_STIMULI=400, NUM_CATEGORIES=20, NUM_BINS=3, K=20, NUM_BOOTSTRAP=8),
    "02_cka_many_models.ipynb": dict(NUM_MODELS=8, NUM_STIMULI=200, LATENT=8, BLOCK=64, MAX_BYTES=2**18),
    "03_identifiability.ipynb": dict(NUM_MODELS=9, NUM_STIMULI=200, NUM_CONTRASTIVE=40, DIM=8, NUM_RANDOM=1,
                                     NUM_BOOTSTRAP=10, NUM_PERMUTATIONS=20, NUM_SIZES=2),
    "04_zoo_and_extraction.ipynb": dict(ARCHITECTURES=["convnet", "mixer"], NUM_SEEDS=2, NUM_STIMULI=32, IMAGE_SIZE=32, BATCH_SIZE=16),
}
# What each notebook must leave behind in its working folder (relative paths).
EXPECTED_FILES = {
    "01_agreement.ipynb": ["figures/fig3_kappa_by_bin.png", "figures/fig4_sorted_agreement.png"],
    "02_cka_many_models.ipynb": ["figures/cka_by_family.png"],
    "03_identifiability.ipynb": ["figures/identify_scores.png"],
    "04_zoo_and_extraction.ipynb": [],
}
# A line each notebook must print: its key result.
EXPECTED_TEXT = {
    "01_agreement.ipynb": "Fleiss' kappa over the",
    "02_cka_many_models.ipynb": "mean CKA within families",
    "03_identifiability.ipynb": "contrastive - random_0: AUC",
    "04_zoo_and_extraction.ipynb": "third run: nothing computed",
}
TIMEOUT = 120  # seconds per cell


def committed() -> list[Path]:
    """The notebooks, less executed copies (``jupyter-execute --output='{notebook_name}_executed'``,
    ignored by git)."""
    return sorted(p for p in NOTEBOOKS.glob("*.ipynb") if not p.name.endswith("_executed.ipynb"))


def parameters_cell(nb) -> int:
    tagged = [i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"expected one cell tagged 'parameters', found {len(tagged)}"
    return tagged[0]


def execute(path: Path, workdir: Path, overrides: dict | None) -> tuple[nbformat.NotebookNode, float]:
    """Run ``path`` in ``workdir``; ``overrides`` (name -> value) go into a cell after the
    parameters cell, as papermill injects them. Raises nbclient's CellExecutionError on an error."""
    nb = nbformat.read(path, as_version=4)
    if overrides:
        at = parameters_cell(nb)
        names = {line.split("=")[0].strip() for line in nb.cells[at].source.splitlines() if "=" in line}
        unknown = set(overrides) - names
        assert not unknown, f"{path.name}: {sorted(unknown)} are not in its parameters cell"
        injected = nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in overrides.items()))
        injected.metadata["tags"] = ["injected-parameters"]
        nb.cells.insert(at + 1, injected)
    # The kernel is this interpreter's ipykernel (jupyter_client runs "python" as sys.executable).
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=TIMEOUT,
                                     resources={"metadata": {"path": str(workdir)}})
    start = time.perf_counter()
    client.execute(cwd=str(workdir), env={**os.environ, "MPLBACKEND": "Agg"})
    return nb, time.perf_counter() - start


def printed(nb) -> str:
    return "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                   for out in cell.get("outputs", []) if out.get("output_type") == "stream")


def test_the_notebooks_are_there():
    assert [p.name for p in committed()] == list(make_notebooks.NOTEBOOKS) == list(SMALL)


@pytest.mark.parametrize("path", committed(), ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for number, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: cell {number} has outputs"


@pytest.mark.parametrize("path", committed(), ids=lambda p: p.name)
def test_generated_from_make_notebooks(path):
    """The notebooks are make_notebooks.py's output: edit that file, then run it."""
    nb = nbformat.read(path, as_version=4)
    built = make_notebooks.build(make_notebooks.NOTEBOOKS[path.name])
    assert [(c.cell_type, c.source) for c in nb.cells] == [(c.cell_type, c.source) for c in built.cells], \
        f"{path.name} differs from make_notebooks.py: run .venv/bin/python notebooks/make_notebooks.py"


@pytest.mark.parametrize("path", committed(), ids=lambda p: p.name)
def test_starts_with_markdown_and_has_parameters(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert nb.cells[parameters_cell(nb)].cell_type == "code"


@pytest.mark.parametrize("path", committed(), ids=lambda p: p.name)
def test_runs_at_small_size(path, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    overrides = dict(SMALL[path.name])
    nb = nbformat.read(path, as_version=4)
    if "WORKDIR" in nb.cells[parameters_cell(nb)].source:  # its own folder, not a system temporary one
        overrides["WORKDIR"] = str(tmp_path / "zoo")
    nb, seconds = execute(path, work, overrides)
    errors = [out for cell in nb.cells for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors, errors
    assert EXPECTED_TEXT[path.name] in printed(nb), printed(nb)[-2000:]
    for name in EXPECTED_FILES[path.name]:
        assert (work / name).is_file() and (work / name).stat().st_size > 0, f"{path.name} did not write {name}"
    print(f"{path.name}: {seconds:.1f} s")
