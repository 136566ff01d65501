"""Streaming CKA over 2 processes (jax.distributed on localhost, CPU collectives over gloo): each
process streams its share of the batches, the states are summed across processes, and the result
equals the one-shot cka_matrix (exact estimators) or the one-process stream (minibatch)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

import jaxagree as ja

ROOT = Path(__file__).resolve().parents[1]
NUM_STIMULI, BATCH, DIMS = 800, 100, (3, 5, 7)

# Process i streams batches i, i + 2, ...; the states are gathered from every process and summed.
WORKER = """
import sys
import numpy as np
from jaxagree.sharding import start_distributed

start_distributed()
import jax
from jax.experimental import multihost_utils

import jaxagree as ja
from tests.test_cka_distributed import BATCH, features

data = features()
rank, processes = jax.process_index(), jax.process_count()
results = {}
for estimator in ("exact", "exact-debiased", "minibatch"):
    stream = ja.cka_stream([f[:BATCH] for f in data], estimator=estimator)  # the same reference everywhere
    state = stream.init()
    for start in range(rank * BATCH, data[0].shape[0], processes * BATCH):
        state = stream.update(state, [f[start : start + BATCH] for f in data])
    gathered = multihost_utils.process_allgather(state)  # every field stacked [processes, ...]
    total = ja.CKAState(*(np.sum(field, axis=0) for field in gathered))
    results[estimator] = np.asarray(stream.compute(total))
    results[estimator + "_count"] = np.asarray(total.count)
if rank == 0:
    np.savez(sys.argv[1], **results)
"""


def features() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    base = rng.normal(size=(NUM_STIMULI, 3))
    return [(np.tanh(base @ rng.normal(size=(3, d))) + 0.5 * rng.normal(size=(NUM_STIMULI, d)) + 300.0)
            .astype(np.float32) for d in DIMS]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(tmp_path):
    out = tmp_path / "cka.npz"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_COORDINATOR_ADDRESS": f"localhost:{_free_port()}",
           "JAX_NUM_PROCESSES": "2"}
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**env, "JAX_PROCESS_ID": str(i)})
               for i in range(2)]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    got = np.load(out)
    data = features()
    for estimator in ("exact", "exact-debiased", "minibatch"):
        assert int(got[estimator + "_count"]) == NUM_STIMULI
        if estimator == "minibatch":
            stream = ja.cka_stream(data, estimator=estimator)
            state = stream.init()
            for start in range(0, NUM_STIMULI, BATCH):
                state = stream.update(state, [f[start : start + BATCH] for f in data])
            expected = np.asarray(stream.compute(state))
        else:
            expected = np.asarray(ja.cka_matrix(data, debiased=estimator == "exact-debiased"))
        np.testing.assert_allclose(got[estimator], expected, atol=2e-5, err_msg=estimator)
