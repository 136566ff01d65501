"""All-pairs linear CKA against the peers a user would otherwise pick, in one run.

For each case (models x stimuli x dims):

* jaxagree ``cka_matrix`` (biased);
* (a) a float32 NumPy stacked-Gram implementation (centre, Gram per model, unit-normalise,
  one product of the stacked Grams): the fastest known CPU method;
* (b) rsatoolbox ``compare(..., method='cosine_cov')`` on RDMs of the same models;
* (c) a per-pair loop in the style of Kornblith et al.'s reference code (timed on a sample of
  pairs and scaled to all pairs; marked as such);
* the answers: the largest difference from (a), and from (c) over its pairs; beyond
  ``CKA_TOLERANCE`` the run fails;
* the FLOP floor: FLOPs the path jaxagree chose needs (for the Gram path about half of the
  ``2 M n^2 d + 2 M^2 n^2`` of full Grams, by symmetry) over the float32 matmul rate measured in
  this run; also the full-Gram FLOPs over that rate, the floor of any method that forms whole
  Grams (peers (a) and (b)).

Peers (a), (b) and (c) run as a user runs them: in a separate process whose environment lacks
this machine's ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` (``common.run_as_user``).

Then a scaling table over models (10 to 500 at 2,000 stimuli x 768 dims): time and peak resident
memory, each size in its own process so that peaks do not mix.

Usage: ``python benchmarks/bench_cka.py [--quick] [--no-save]``.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import jaxagree as ja

try:
    from benchmarks.common import AS_USER_NOTE, matmul_rate, parse_args, peer_available, publish, run_as_user, timed
except ImportError:  # run as a script from the benchmarks folder
    from common import AS_USER_NOTE, matmul_rate, parse_args, peer_available, publish, run_as_user, timed

CASES = [(50, 1000, 512), (200, 2000, 768)]
QUICK_CASES = [(8, 200, 64)]
SCALING_MODELS = [10, 20, 50, 100, 200, 500]
SCALING_SHAPE = (2000, 768)  # stimuli, dims
QUICK_SCALING_MODELS, QUICK_SCALING_SHAPE = [8], (100, 32)
LOOP_PAIRS = 20  # pairs timed for the per-pair loop
# jaxagree against the float32 peers: (a) differs by up to 3e-5 at 200 x 2,000 x 768, nearly all
# its own error (jaxagree and (c) are within 3e-7 of float64), so more than this fails the run.
CKA_TOLERANCE = 1e-4


def make_features(num_models: int, num_stimuli: int, dim: int, seed: int = 0) -> np.ndarray:
    """Two families of models: random projections of shared latents, with family-specific
    non-linearities and a large mean (as real activations have)."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(num_stimuli, 64)).astype(np.float32)
    out = np.empty((num_models, num_stimuli, dim), np.float32)
    for m in range(num_models):
        projected = latent @ rng.normal(size=(64, dim)).astype(np.float32) / 8
        out[m] = (np.tanh(projected) if m % 2 else np.maximum(projected, 0)) + 5.0
        out[m] += 0.3 * rng.normal(size=(num_stimuli, dim)).astype(np.float32)
    return out


def numpy_stacked_gram(features: np.ndarray) -> np.ndarray:
    """Peer (a): NumPy in the features' dtype (float32 here), Grams stacked, one product."""
    grams = []
    for x in features:
        xc = x - x.mean(0, keepdims=True)
        g = xc @ xc.T
        grams.append((g / np.linalg.norm(g)).ravel())
    stacked = np.stack(grams)
    return stacked @ stacked.T


def _reference_pair(x: np.ndarray, y: np.ndarray) -> float:
    """Peer (c): Kornblith et al.'s gram_linear + center_gram + cka, one pair at a time."""
    def centre(gram):
        means = gram.mean(0, dtype=np.float64)
        means -= means.mean() / 2
        return gram - means[:, None] - means[None, :]

    gx, gy = centre(x @ x.T), centre(y @ y.T)
    return float(gx.ravel().dot(gy.ravel()) / (np.linalg.norm(gx) * np.linalg.norm(gy)))


def per_pair_seconds(features: np.ndarray) -> tuple[float, dict[tuple[int, int], float]]:
    """(seconds for all pairs of the per-pair loop, scaled from LOOP_PAIRS timed pairs; the CKA
    of those pairs)."""
    num_models = features.shape[0]
    pairs = [(a, b) for a in range(num_models) for b in range(a + 1, num_models)][:LOOP_PAIRS]
    start = time.perf_counter()
    values = {(a, b): _reference_pair(features[a], features[b]) for a, b in pairs}
    per_pair = (time.perf_counter() - start) / len(pairs)
    return per_pair * num_models * (num_models - 1) / 2, values


def rsatoolbox_seconds(features: np.ndarray) -> float:
    import rsatoolbox

    datasets = [rsatoolbox.data.Dataset(x) for x in features]
    start = time.perf_counter()
    rdms = rsatoolbox.rdm.calc_rdm(datasets, method="euclidean")
    rsatoolbox.rdm.compare(rdms, rdms, method="cosine_cov")
    return time.perf_counter() - start


def numpy_peers(features, rsatoolbox) -> dict:
    """Peers (a), (b) (when ``rsatoolbox``) and (c) in their own process, as a user runs them
    (see ``common.run_as_user``): their times and answers. Only NumPy and rsatoolbox are used."""
    start = time.perf_counter()
    expected = numpy_stacked_gram(features)
    out = {"numpy_s": time.perf_counter() - start, "expected": expected}
    if bool(rsatoolbox):
        out["rsatoolbox_s"] = rsatoolbox_seconds(features)
    out["loop_s"], loop = per_pair_seconds(features)
    out["loop_pairs"] = np.array(list(loop), np.int64).reshape(-1, 2)
    out["loop_values"] = np.array(list(loop.values()), np.float64)
    return out


def run_case(num_models, num_stimuli, dim, *, rate, repeats, peers):
    import jax.numpy as jnp

    host = make_features(num_models, num_stimuli, dim)
    device = jnp.asarray(host)
    row = {"case": f"{num_models} x {num_stimuli:,} x {dim}"}
    first, row["jaxagree_s"] = timed(lambda: ja.cka_matrix(device), repeats=repeats)
    row["compile_s"] = max(first - row["jaxagree_s"], 0.0)
    result = np.asarray(ja.cka_matrix(device))
    peer = run_as_user(numpy_peers, features=host, rsatoolbox="rsatoolbox" in peers)
    row["numpy_s"] = float(peer["numpy_s"])
    row["max_abs_diff"] = float(np.abs(result - peer["expected"]).max())
    path = chosen_path(num_models, num_stimuli, dim)
    row["path"] = path.name
    row["floor_s"] = path.flops / rate
    row["full_gram_floor_s"] = (num_models * num_stimuli**2 * dim * 2 + num_models**2 * num_stimuli**2 * 2) / rate
    row["share_of_matmul_rate"] = row["floor_s"] / row["jaxagree_s"]
    row["x_numpy"] = row["numpy_s"] / row["jaxagree_s"]
    if "rsatoolbox" in peers:
        row["rsatoolbox_s"] = float(peer["rsatoolbox_s"])
        row["x_rsatoolbox"] = row["rsatoolbox_s"] / row["jaxagree_s"]
    row["loop_s"] = float(peer["loop_s"])
    row["x_loop"] = row["loop_s"] / row["jaxagree_s"]
    row["max_loop_diff"] = max(abs(float(result[a, b]) - value)
                               for (a, b), value in zip(peer["loop_pairs"], peer["loop_values"]))
    for name, diff in (("(a)", row["max_abs_diff"]), ("(c)", row["max_loop_diff"])):
        if not diff <= CKA_TOLERANCE:
            raise AssertionError(f"{row['case']}: CKA differs from peer {name} by {diff:.2e} (> {CKA_TOLERANCE})")
    return row


def chosen_path(num_models: int, num_stimuli: int, dim: int):
    """The path ``cka_matrix`` takes for these shapes by default, with its FLOPs."""
    return ja.cka.plan.choose_path([dim] * num_models, num_stimuli, ja.cka.plan.default_max_bytes(), "auto")


def peak_rss_bytes() -> int:
    """This process's peak resident memory: features, Python and XLA included. VmHWM, not
    ru_maxrss: Linux carries ru_maxrss over from the parent across fork and exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def scaling_case(num_models: int, num_stimuli: int, dim: int, repeats: int) -> dict:
    """One row of the scaling table, measured in this process (run it in a fresh one)."""
    import jax.numpy as jnp

    features = jnp.asarray(make_features(num_models, num_stimuli, dim))
    first, best = timed(lambda: ja.cka_matrix(features), repeats=repeats)
    path = chosen_path(num_models, num_stimuli, dim)
    return {
        "models": num_models,
        "path": path.name,
        "seconds": best,
        "compile_s": max(first - best, 0.0),
        "gflops": path.flops / best / 1e9,
        "features_gb": features.nbytes / 1e9,
        "peak_rss_gb": peak_rss_bytes() / 1e9,
    }


def scaling_rows(models: list[int], shape: tuple[int, int], repeats: int, rate: float) -> list[dict]:
    rows = []
    root = Path(__file__).resolve().parents[1]
    for num_models in models:
        command = [sys.executable, "-m", "benchmarks.bench_cka", "--scaling-case",
                   str(num_models), str(shape[0]), str(shape[1]), str(repeats)]
        done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=True, timeout=1800)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        row["share_of_matmul_rate"] = row["gflops"] * 1e9 / rate
        rows.append(row)
        print(f"  {num_models} models: {row['seconds']:.3f} s, peak RSS {row['peak_rss_gb']:.2f} GB", flush=True)
    return rows


SCALING_COLUMNS = [
    ("models", "models", "d"),
    ("path", "path", "s"),
    ("seconds", "time (s)", ".3f"),
    ("gflops", "GFLOP/s of the path", ".0f"),
    ("share_of_matmul_rate", "share of matmul rate", ".0%"),
    ("features_gb", "features (GB)", ".2f"),
    ("peak_rss_gb", "peak RSS (GB)", ".2f"),
    ("compile_s", "first-call overhead (s)", ".2f"),
]


COLUMNS = [
    ("case", "models x stimuli x dims", "s"),
    ("jaxagree_s", "jaxagree (s)", ".3f"),
    ("numpy_s", "(a) NumPy stacked Grams (s)", ".3f"),
    ("x_numpy", "vs (a)", ".2f"),
    ("rsatoolbox_s", "(b) rsatoolbox (s)", ".2f"),
    ("x_rsatoolbox", "vs (b)", ".1f"),
    ("loop_s", "(c) per-pair loop, scaled (s)", ".1f"),
    ("x_loop", "vs (c)", ".0f"),
    ("path", "path", "s"),
    ("floor_s", "FLOP floor of the path (s)", ".3f"),
    ("full_gram_floor_s", "full-Gram FLOP floor (s)", ".3f"),
    ("share_of_matmul_rate", "share of matmul rate", ".0%"),
    ("max_abs_diff", "max abs diff vs (a)", ".1e"),
    ("max_loop_diff", "max abs diff vs (c)", ".1e"),
    ("compile_s", "first-call overhead (s)", ".2f"),
]


def main(argv=None) -> str:
    args = parse_args(argv, __doc__.splitlines()[0])
    peers = {"rsatoolbox"} if peer_available("rsatoolbox") else set()
    rate = matmul_rate(1024 if args.quick else 2048)
    rows = [run_case(*case, rate=rate, repeats=1 if args.quick else 3, peers=peers)
            for case in (QUICK_CASES if args.quick else CASES)]
    notes = (
        f"\n\nfloat32 matmul rate measured in this run: {rate / 1e9:.1f} GFLOP/s. FLOP floor of the path = "
        "the FLOPs of the path jaxagree chose (Gram path: half of each Gram and of the products, by "
        "symmetry) / that rate; full-Gram FLOP floor = (2 M n^2 d + 2 M^2 n^2) / that rate, the least "
        "time for any method that forms whole Grams. (c) is timed on "
        f"{LOOP_PAIRS} pairs and scaled to all M(M-1)/2 pairs. 'max abs diff vs (a)' is mostly (a)'s own "
        "float32 error: against float64 at 8 x 2000 x 768, jaxagree is within 2.4e-7 and (a) within 2.7e-5 "
        f"((c), over its timed pairs, within 3e-7). A difference above {CKA_TOLERANCE:g} fails the run. "
        "First-call overhead = first call minus a warm call (compiling, and first touch of new memory). "
        f"{AS_USER_NOTE} Peers (a), (b) and (c) all run in that process.\n"
    )
    table = publish("cka", rows, COLUMNS, notes, args)
    models, shape = (QUICK_SCALING_MODELS, QUICK_SCALING_SHAPE) if args.quick else (SCALING_MODELS, SCALING_SHAPE)
    print(f"\nscaling over models at {shape[0]:,} stimuli x {shape[1]} dims:")
    scaling = scaling_rows(models, shape, 1 if args.quick else 3, rate)
    notes = (
        f"\n\n{shape[0]:,} stimuli x {shape[1]} dims, biased CKA, default max_bytes; each size in a fresh "
        f"process. float32 matmul rate in the parent process: {rate / 1e9:.1f} GFLOP/s. Peak RSS is the "
        "whole process (features, Python and XLA included).\n"
    )
    return table + "\n" + publish("cka-scaling", scaling, SCALING_COLUMNS, notes, args)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--scaling-case"]:
        print(json.dumps(scaling_case(*(int(a) for a in sys.argv[2:6]))))
    else:
        main()
