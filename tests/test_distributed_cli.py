"""``jaxagree cka --distributed`` and ``jaxagree agreement --distributed`` with 2 local processes
(jax.distributed on localhost, CPU collectives over gloo): the files process 0 writes equal one
process's, the other process writes nothing, and bad input on one process stops both with an
error. Also the partial readers the processes use, in this process."""

import json
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import jaxagree as ja
from jaxagree.cli import main
from jaxagree.distributed import FeatureSource, cka_distributed, process_block, read_prediction_block
from jaxagree.io import read_predictions

ROOT = Path(__file__).resolve().parents[1]
DIMS = (3, 5, 7, 4)
NUM_STIMULI = 301  # odd: the two blocks differ by one stimulus


def _features() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    base = rng.normal(size=(NUM_STIMULI, 3))
    return {f"m{i}": (np.tanh(base @ rng.normal(size=(3, d))) + 0.5 * rng.normal(size=(NUM_STIMULI, d)) + 50.0)
            .astype(np.float32) for i, d in enumerate(DIMS)}


def _predictions() -> np.ndarray:
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 6, size=257)
    preds = np.where(rng.random((9, 257)) < 0.6, truth, rng.integers(-1, 6, size=(9, 257)))
    return preds.astype(np.int32)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start(args: list[str], processes: int = 2, env: dict | None = None,
           each: list[list[str]] | None = None) -> list[subprocess.Popen]:
    """``processes`` processes of ``jaxagree ARGS --distributed`` (``each[i]``: process i's own
    ARGS instead)."""
    port = _free_port()
    base = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_COORDINATOR_ADDRESS": f"localhost:{port}",
            "JAX_NUM_PROCESSES": str(processes), **(env or {})}
    return [subprocess.Popen([sys.executable, "-m", "jaxagree.cli", *(args if each is None else each[i]),
                              "--distributed"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**base, "JAX_PROCESS_ID": str(i)}) for i in range(processes)]


def _finish(workers: list[subprocess.Popen], timeout: float = 120) -> list[tuple[int, str, str]]:
    results = []
    for worker in workers:
        try:
            out, err = worker.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for w in workers:
                w.kill()
            raise
        results.append((worker.returncode, out, err))
    return results


def _same_tables(one: Path, two: Path, names: list[str], atol: float) -> None:
    import pandas as pd

    for name in names:
        a, b = pd.read_csv(one / name), pd.read_csv(two / name)
        assert list(a.columns) == list(b.columns), name
        for column in a.columns:
            if a[column].dtype.kind == "f":
                np.testing.assert_allclose(b[column], a[column], rtol=0, atol=atol, err_msg=f"{name}:{column}")
            else:
                assert a[column].tolist() == b[column].tolist(), f"{name}:{column}"


def test_cka_two_processes_equal_one(tmp_path):
    """Debiased CKA of a stimulus subset of a folder of .npy files, with families: the files of
    two processes equal one process's (and cka_matrix of the subset)."""
    features = _features()
    (tmp_path / "folder").mkdir()
    for name, array in features.items():
        np.save(tmp_path / "folder" / f"{name}.npy", array)
    (tmp_path / "families.csv").write_text("model,family\nm0,a\nm1,a\nm2,b\nm3,b\n")
    chosen = np.random.default_rng(5).choice(NUM_STIMULI, size=41, replace=False)
    (tmp_path / "subset.txt").write_text("\n".join(map(str, chosen)) + "\n")
    args = ["cka", str(tmp_path / "folder"), "--debiased", "--stimuli", str(tmp_path / "subset.txt"), "--families",
            str(tmp_path / "families.csv")]
    workers = _start([*args, "--out", str(tmp_path / "two")])
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    results = _finish(workers)
    assert [code for code, _, _ in results] == [0, 0], results[0][2][-2000:] + results[1][2][-2000:]
    assert "over 2 processes" in results[0][1] and "models x" not in results[1][1]
    assert "wrote" in results[0][2] and "wrote" not in results[1][2]  # process 1 writes nothing
    one, two = tmp_path / "one", tmp_path / "two"
    assert sorted(p.name for p in two.iterdir() if not p.name.startswith(".")) == \
        sorted(p.name for p in one.iterdir() if not p.name.startswith(".")) == ["cka.csv", "cka.png", "cka_long.csv"]
    _same_tables(one, two, ["cka.csv", "cka_long.csv"], atol=2e-5)
    import pandas as pd

    got = pd.read_csv(two / "cka.csv", index_col=0).to_numpy()
    expected = np.asarray(ja.cka_matrix([f[np.sort(chosen)] for f in features.values()], debiased=True))
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_agreement_two_processes_equal_one(tmp_path):
    """An uncompressed .npz with labels and rater groups (each process maps its block's columns):
    agreement, contrastive stimuli, accuracy, accuracy bins, error consistency and summary.json
    equal one process's exactly."""
    preds = _predictions()
    labels = np.random.default_rng(6).integers(0, 6, size=preds.shape[1])
    labels[::13] = -1
    skill = np.random.default_rng(7).random(preds.shape) < np.linspace(0.2, 0.9, preds.shape[0])[:, None]
    preds = np.where(skill, labels, preds).astype(np.int32)
    np.savez(tmp_path / "preds.npz", predictions=preds, labels=labels, models=np.array([f"r{i}" for i in range(9)]),
             rater_groups=np.array(["a"] * 4 + ["b"] * 5))
    args = ["agreement", str(tmp_path / "preds.npz"), "--k", "9", "--bins", "2"]
    workers = _start([*args, "--out", str(tmp_path / "two")])
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    results = _finish(workers)
    assert [code for code, _, _ in results] == [0, 0], results[0][2][-2000:] + results[1][2][-2000:]
    one, two = tmp_path / "one", tmp_path / "two"
    files = ["agreement.csv", "contrastive.csv", "accuracy.csv", "bins.csv", "error_consistency.csv"]
    for file in files:
        assert (two / file).read_text() == (one / file).read_text(), file
    summary = json.loads((two / "summary.json").read_text())
    assert summary == json.loads((one / "summary.json").read_text()) and summary["k"] == 9
    # stdout is the summary's JSON alone (gloo's "[Gloo] Rank N is connected" goes to stderr).
    assert json.loads(results[0][1])["fleiss_kappa"] == summary["fleiss_kappa"] and results[1][1] == ""


def test_bad_input_on_one_process_stops_both(tmp_path):
    """A value out of range in process 1's block only (memory-mapped: process 0 never reads it),
    and two processes given different features: both processes stop with exit status 2 and an
    error, and nothing is written."""
    preds = _predictions()
    preds[3, -1] = 6
    np.save(tmp_path / "preds.npy", preds)
    features = _features()
    np.savez(tmp_path / "a.npz", **features)
    np.savez(tmp_path / "b.npz", **{name: array[:-1] for name, array in features.items()})
    bad_value = _start(["agreement", str(tmp_path / "preds.npy"), "--num-categories", "6", "--out",
                        str(tmp_path / "out")])
    different = _start([], each=[["cka", str(tmp_path / f"{name}.npz"), "--out", str(tmp_path / "cka")]
                                 for name in "ab"])
    results = _finish(bad_value)
    assert [code for code, _, _ in results] == [2, 2]
    assert "outside [-1, num_categories=6)" in results[1][2]
    assert "process(es) 1 stopped on bad input" in results[0][2]
    results = _finish(different)
    assert [code for code, _, _ in results] == [2, 2], results[0][2][-2000:]
    assert all("FEATURES (stimuli, chosen stimuli, model names' checksum, dims) differs between processes: process 1 "
               "sees [300, 300," in err for _, _, err in results)
    assert not (tmp_path / "out").exists() and not (tmp_path / "cka").exists()


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({}, [], "set JAX_COORDINATOR_ADDRESS"),
        ({"JAX_COORDINATOR_ADDRESS": "localhost:1", "JAX_NUM_PROCESSES": "2"}, [], "JAX_PROCESS_ID not set"),
        ({"JAX_COORDINATOR_ADDRESS": "localhost:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"}, [],
         "JAX_PROCESS_ID=2 is outside [0, JAX_NUM_PROCESSES=2)"),
        ({"JAX_COORDINATOR_ADDRESS": "localhost:1", "JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"}, [],
         "JAX_NUM_PROCESSES='two' is not a whole number"),
        ({}, ["--bootstrap", "10"], "does not support --bootstrap"),
        ({}, ["--export-counts", "csv"], "does not support --export-counts"),
    ],
)
def test_distributed_set_up_errors(tmp_path, monkeypatch, capsys, env, args, message):
    """Errors found before jax starts: the environment and the options --distributed refuses."""
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_JOB_ID",
                 "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    np.save(tmp_path / "preds.npy", _predictions())
    assert main(["agreement", str(tmp_path / "preds.npy"), "--out", str(tmp_path / "out"), "--distributed",
                 *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cka_refuses_lower_precision(tmp_path, capsys):
    np.savez(tmp_path / "f.npz", **_features())
    assert main(["cka", str(tmp_path / "f.npz"), "--out", str(tmp_path / "out"), "--distributed",
                 "--matmul-precision", "bfloat16"]) == 2
    assert "--distributed computes in float32" in capsys.readouterr().err


def test_a_bad_value_in_a_block_names_its_stimulus_and_model(tmp_path):
    """A process reads a block of stimuli; an error there names the stimulus by its place in the
    whole table, as one process reading it all would."""
    preds = np.zeros((2, 6), np.int32)
    preds[1, 4] = 7
    stimuli = np.array([f"img{i}" for i in range(6)])
    np.savez(tmp_path / "preds.npz", predictions=preds, stimuli=stimuli, models=np.array(["a", "b"]))
    message = r"predictions value 7 at model 'b', stimulus 'img4'"
    with pytest.raises(ValueError, match=message):
        read_predictions(tmp_path / "preds.npz", num_categories=3)
    with pytest.raises(ValueError, match=message):
        read_prediction_block(tmp_path / "preds.npz", 1, 2, num_categories=3, read_whole=None)


def test_partial_readers(tmp_path):
    """Rows of a folder of .npy files and of an uncompressed .npz are memory-mapped; a compressed
    .npz is streamed; all give the same rows. Prediction blocks: columns of an .npy are mapped."""
    features = _features()
    np.savez(tmp_path / "plain.npz", **features)
    np.savez_compressed(tmp_path / "packed.npz", **features)
    (tmp_path / "folder").mkdir()
    for name, array in features.items():
        np.save(tmp_path / "folder" / f"{name}.npy", array)
    rows = np.array([0, 7, 8, 150, 300])
    for path, partial in (("plain.npz", True), ("packed.npz", False), ("folder", True)):
        source = FeatureSource(tmp_path / path)
        assert (source.models, source.dims, source.num_stimuli, source.partial) == \
            (list(features), list(DIMS), NUM_STIMULI, partial), path
        for got, expected in zip(source.rows(rows), features.values()):
            np.testing.assert_array_equal(got, expected[rows])
    with zipfile.ZipFile(tmp_path / "plain.npz") as archive:
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
    assert [process_block(301, i, 2)[2:] for i in range(2)] == [(0, 151), (151, 301)]
    assert [process_block(5, i, 3)[2:] for i in range(3)] == [(0, 2), (2, 4), (4, 5)]
    preds = _predictions()
    np.save(tmp_path / "preds.npy", preds)
    part = read_prediction_block(tmp_path / "preds.npy", 1, 2, read_whole=None)
    assert part.partial and part.block[2:] == (129, 257)
    np.testing.assert_array_equal(part.table.predictions, preds[:, 129:])
    assert part.table.categories == [] and len(part.table.stimuli) == 257
    np.savez_compressed(tmp_path / "preds.npz", predictions=preds)  # read whole, then cut
    part = read_prediction_block(tmp_path / "preds.npz", 0, 2, read_whole=lambda: read_predictions(
        tmp_path / "preds.npz"))
    assert not part.partial and part.block[2:] == (0, 129) and part.table.categories == [str(c) for c in range(6)]
    np.testing.assert_array_equal(part.table.predictions, preds[:, :129])


def test_one_process_stream_equals_cka_matrix(tmp_path):
    """The distributed CKA in one process (no jax.distributed), read from an uncompressed .npz:
    the exact stream over all stimuli, in steps of 107 stimuli (a small --max-bytes), equals
    cka_matrix."""
    features = _features()
    np.savez(tmp_path / "f.npz", **features)
    source = FeatureSource(tmp_path / "f.npz")
    got = cka_distributed(source, np.arange(NUM_STIMULI), debiased=False, max_bytes=2**16)  # steps of 107
    np.testing.assert_allclose(got, np.asarray(ja.cka_matrix(list(features.values()))), atol=2e-5)
    with pytest.raises(ValueError, match="more than --max-bytes"):
        cka_distributed(source, np.arange(NUM_STIMULI), debiased=False, max_bytes=1000)
