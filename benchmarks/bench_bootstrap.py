"""Stimulus bootstrap of the all-pairs CKA matrix against the loop a user would otherwise write.

For each case (models x stimuli x dims, replicates):

* jaxagree ``cka_bootstrap`` (biased): total time, time per replicate, first-call overhead;
* the naive peer: a Python loop of ``cka_matrix`` on each replicate's gathered resample (the
  definition of a replicate), timed on a few replicates after a warm-up and scaled to all
  (marked as such); the largest difference between the two over those replicates fails the run
  beyond ``BOOTSTRAP_TOLERANCE``;
* the FLOP floor: the FLOPs jaxagree's way needs (each model's Gram once, ``Kw`` for every
  replicate, and per replicate one product over the unordered pairs of the drawn stimuli:
  ``M^2 u (u - 1)`` for ``u`` drawn) over the float32 matmul rate measured in this run; and the
  floor of the loop's way (``cka_matrix``'s own path FLOPs per replicate).

Usage: ``python benchmarks/bench_bootstrap.py [--quick] [--no-save]``.
"""

from __future__ import annotations

import sys
import time

import numpy as np

import jaxagree as ja

try:
    from benchmarks.bench_cka import make_features
    from benchmarks.common import matmul_rate, parse_args, publish, timed
except ImportError:  # run as a script from the benchmarks folder
    from bench_cka import make_features
    from common import matmul_rate, parse_args, publish, timed

CASES = [(50, 500, 256, 200), (100, 1000, 512, 200), (200, 2000, 768, 200)]  # models, stimuli, dims, replicates
QUICK_CASES = [(6, 64, 16, 10)]
LOOP_REPLICATES = 3  # replicates the naive loop is timed on
# float32 against float32: ~1e-6 at 100 x 1,000 x 512 (the tests hold 2e-6 at small sizes).
BOOTSTRAP_TOLERANCE = 2e-5


def loop_replicates(features, indices) -> tuple[float, list[np.ndarray]]:
    """Peer: ``cka_matrix`` of each gathered resample (one warm-up first); (seconds per
    replicate, the matrices)."""
    import jax

    jax.block_until_ready(ja.cka_matrix(features[:, np.asarray(indices[0])]))
    start = time.perf_counter()
    results = [np.asarray(ja.cka_matrix(features[:, np.asarray(idx)])) for idx in indices]
    return (time.perf_counter() - start) / len(indices), results


def run_case(num_models, num_stimuli, dim, num_bootstrap, *, rate, quick):
    import jax.numpy as jnp

    device = jnp.asarray(make_features(num_models, num_stimuli, dim))
    row = {"case": f"{num_models} x {num_stimuli:,} x {dim}", "replicates": num_bootstrap}
    results = []

    def run():
        results.append(ja.cka_bootstrap(device, num_bootstrap=num_bootstrap))
        return results[-1]

    first, row["jaxagree_s"] = timed(run, repeats=2 if quick else 1)
    row["compile_s"] = max(first - row["jaxagree_s"], 0.0)
    row["per_replicate_ms"] = 1e3 * row["jaxagree_s"] / num_bootstrap
    result = results[-1]
    checked = num_bootstrap if quick else LOOP_REPLICATES
    per_replicate, expected = loop_replicates(device, result.indices[:checked])
    row["loop_s"] = per_replicate * num_bootstrap
    row["x_loop"] = row["loop_s"] / row["jaxagree_s"]
    got = np.asarray(result.replicates[:checked])
    row["max_loop_diff"] = max(float(np.abs(g - e).max()) for g, e in zip(got, expected))
    drawn = np.asarray((ja.bootstrap_weights(result.indices, num_stimuli) > 0).sum(axis=1), np.float64)
    flops = 2 * num_models * num_stimuli**2 * dim + 2 * num_models * num_stimuli**2 * num_bootstrap \
        + num_models**2 * float(np.sum(drawn * (drawn - 1)))
    row["floor_s"] = flops / rate
    row["share_of_matmul_rate"] = row["floor_s"] / row["jaxagree_s"]
    path = ja.cka.plan.choose_path([dim] * num_models, num_stimuli, ja.cka.plan.default_max_bytes(), "auto")
    row["loop_floor_s"] = path.flops * num_bootstrap / rate
    if not row["max_loop_diff"] <= BOOTSTRAP_TOLERANCE:
        raise AssertionError(f"{row['case']}: a replicate differs from cka_matrix of its gathered resample by "
                             f"{row['max_loop_diff']:.2e} (> {BOOTSTRAP_TOLERANCE})")
    print(f"  {row['case']}: {row['jaxagree_s']:.2f} s for {num_bootstrap} replicates", flush=True)
    return row


COLUMNS = [
    ("case", "models x stimuli x dims", "s"),
    ("replicates", "replicates", "d"),
    ("jaxagree_s", "jaxagree (s)", ".2f"),
    ("per_replicate_ms", "per replicate (ms)", ".1f"),
    ("loop_s", "loop of cka_matrix, scaled (s)", ".1f"),
    ("x_loop", "vs loop", ".1f"),
    ("floor_s", "FLOP floor (s)", ".2f"),
    ("share_of_matmul_rate", "share of matmul rate", ".0%"),
    ("loop_floor_s", "loop's FLOP floor (s)", ".1f"),
    ("max_loop_diff", "max abs diff vs loop", ".1e"),
    ("compile_s", "first-call overhead (s)", ".2f"),
]


def main(argv=None) -> str:
    args = parse_args(argv, __doc__.splitlines()[0])
    rate = matmul_rate(1024 if args.quick else 2048)
    rows = [run_case(*case, rate=rate, quick=args.quick) for case in (QUICK_CASES if args.quick else CASES)]
    notes = (
        f"\n\nBiased CKA, default max_bytes, seed 0. float32 matmul rate measured in this run: {rate / 1e9:.1f} "
        "GFLOP/s. FLOP floor = (2 M n^2 d for the Grams + 2 M n^2 B for Kw + M^2 u(u-1) per replicate over "
        "its u drawn stimuli) / that rate; the loop's FLOP floor = B x the FLOPs of cka_matrix's chosen path "
        f"/ that rate. The loop is timed on {LOOP_REPLICATES} replicates after a warm-up and scaled to all; "
        "'max abs diff vs loop' is over those replicates (every replicate in --quick), and above "
        f"{BOOTSTRAP_TOLERANCE:g} fails the run. First-call overhead = first call minus a warm call.\n"
    )
    return publish("bootstrap", rows, COLUMNS, notes, args)


if __name__ == "__main__":
    main(sys.argv[1:])
