"""Agreement kernels against statsmodels and against the memory floor, in one run.

For each case (models x stimuli x categories):

* jaxagree ``agreement_stats`` + ``per_stimulus_agreement`` + ``fleiss_kappa`` (the fast path,
  no dense table), and ``count_predictions`` + the same (the dense count table);
* statsmodels ``aggregate_raters`` + ``fleiss_kappa`` (the peer a user would otherwise pick);
* the memory floor: bytes of predictions read / the copy bandwidth measured in this run;
* 10 accuracy-bin subsets in one call (``model_mask``) against one call over all models;
* the answers: every kappa (all models, dense table, each bin) against statsmodels', and Eq. 1
  against float64 on statsmodels' count table. A difference beyond the tolerance fails the run.

Compile time (first call minus a warm call) is reported apart. Usage:
``python benchmarks/bench_agreement.py [--quick]``.
"""

from __future__ import annotations

import time

import numpy as np

import jaxagree as ja

try:
    from benchmarks.common import block, copy_bandwidth, parse_args, peer_available, publish, timed
except ImportError:  # run as a script from the benchmarks folder
    from common import block, copy_bandwidth, parse_args, peer_available, publish, timed

CASES = [(400, 50_000, 1000), (1355, 50_000, 1000)]
QUICK_CASES = [(40, 2_000, 100)]
# jaxagree's float32 results against the peer's float64 ones: a run that differs more fails.
KAPPA_TOLERANCE = 1e-5
AGREEMENT_TOLERANCE = 1e-6


def make_predictions(num_models: int, num_stimuli: int, num_categories: int, seed: int = 0):
    """Models 40-90% accurate whose errors share a few look-alike classes per stimulus."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_categories, num_stimuli)
    accuracy = rng.uniform(0.4, 0.9, num_models)
    right = rng.random((num_models, num_stimuli)) < accuracy[:, None]
    lookalike = (labels[:, None] + rng.integers(1, num_categories, (num_stimuli, 3))) % num_categories
    wrong = lookalike[np.arange(num_stimuli), rng.integers(0, 3, (num_models, num_stimuli))]
    wrong = np.where(rng.random((num_models, num_stimuli)) < 0.3, rng.integers(0, num_categories, wrong.shape), wrong)
    return np.where(right, labels, wrong).astype(np.int32), accuracy


def run_case(num_models: int, num_stimuli: int, num_categories: int, *, bandwidth: float, repeats: int, peer: bool):
    import jax.numpy as jnp

    preds_host, accuracy = make_predictions(num_models, num_stimuli, num_categories)
    preds = jnp.asarray(preds_host)
    C = num_categories

    def fast():
        stats = ja.agreement_stats(preds, num_categories=C)
        return ja.per_stimulus_agreement(stats), ja.fleiss_kappa(stats)

    def dense():
        counts = ja.count_predictions(preds, num_categories=C)
        return ja.per_stimulus_agreement(counts), ja.fleiss_kappa(counts)

    bins = ja.accuracy_bins(accuracy, num_bins=10).model_mask

    def ten_bins():
        stats = ja.agreement_stats(preds, num_categories=C, model_mask=bins)
        return ja.per_stimulus_agreement(stats), ja.fleiss_kappa(stats)

    def one_bin():
        stats = ja.agreement_stats(preds, num_categories=C, model_mask=bins[:1])
        return ja.per_stimulus_agreement(stats), ja.fleiss_kappa(stats)

    row = {"case": f"{num_models} x {num_stimuli:,} x {C}"}
    first, row["fast_s"] = timed(fast, repeats=repeats)
    row["fast_compile_s"] = max(first - row["fast_s"], 0.0)
    first, row["dense_s"] = timed(dense, repeats=repeats)
    row["dense_compile_s"] = max(first - row["dense_s"], 0.0)
    _, row["bins10_s"] = timed(ten_bins, repeats=repeats)
    _, row["bin1_s"] = timed(one_bin, repeats=repeats)
    row["floor_s"] = preds_host.nbytes / bandwidth
    agreement, kappa = (np.asarray(x, np.float64) for x in fast())
    row["kappa"] = float(kappa)

    if peer:
        from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            table, _ = aggregate_raters(preds_host.T, n_cat=C)
            peer_kappa = fleiss_kappa(table)
            best = min(best, time.perf_counter() - start)
        row["statsmodels_s"] = best
        check_against_statsmodels(row, preds_host, bins, C, agreement=agreement, kappas={
            "agreement_stats": kappa, "count_predictions": float(dense()[1]),
            **{f"bin {b}": k for b, k in enumerate(np.asarray(ten_bins()[1]))},
        }, peer_kappa=peer_kappa, peer_table=table)
    row["speedup_vs_statsmodels"] = row.get("statsmodels_s", float("nan")) / row["fast_s"]
    row["dense_speedup_vs_statsmodels"] = row.get("statsmodels_s", float("nan")) / row["dense_s"]
    row["x_floor"] = row["fast_s"] / row["floor_s"]
    row["bins10_over_all"] = row["bins10_s"] / row["fast_s"]
    row["bins10_over_bin1"] = row["bins10_s"] / row["bin1_s"]
    block(preds)
    return row


def check_against_statsmodels(row, preds, bins, num_categories, *, agreement, kappas, peer_kappa, peer_table):
    """Record in ``row`` the largest differences from statsmodels: every kappa (all models, the
    dense path, each bin) against its ``fleiss_kappa``, and Eq. 1 against the same formula in
    float64 on its ``aggregate_raters`` table; raise AssertionError beyond the tolerances."""
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    expected = {"agreement_stats": peer_kappa, "count_predictions": peer_kappa}
    for b, members in enumerate(bins):
        expected[f"bin {b}"] = fleiss_kappa(aggregate_raters(preds[members].T, n_cat=num_categories)[0])
    kappa_diffs = {name: abs(float(kappas[name]) - expected[name]) for name in expected}
    n = peer_table.sum(1)
    peer_agreement = ((peer_table.astype(np.float64) ** 2).sum(1) - n) / (n * (n - 1.0))
    row["max_kappa_diff"] = max(kappa_diffs.values())
    row["max_agreement_diff"] = float(np.abs(agreement - peer_agreement).max())
    worst = max(kappa_diffs, key=kappa_diffs.get)
    if row["max_kappa_diff"] > KAPPA_TOLERANCE:
        raise AssertionError(f"{row['case']}: kappa ({worst}) differs from statsmodels by {row['max_kappa_diff']:.2e} "
                             f"(> {KAPPA_TOLERANCE}): {float(kappas[worst])} vs {expected[worst]}")
    if row["max_agreement_diff"] > AGREEMENT_TOLERANCE:
        raise AssertionError(f"{row['case']}: agreement differs from Eq. 1 on statsmodels' table by "
                             f"{row['max_agreement_diff']:.2e} (> {AGREEMENT_TOLERANCE})")


COLUMNS = [
    ("case", "models x stimuli x categories", "s"),
    ("fast_s", "jaxagree stats (s)", ".3f"),
    ("dense_s", "jaxagree dense counts (s)", ".3f"),
    ("statsmodels_s", "statsmodels (s)", ".2f"),
    ("speedup_vs_statsmodels", "speed-up vs statsmodels", ".1f"),
    ("dense_speedup_vs_statsmodels", "dense speed-up", ".1f"),
    ("floor_s", "memory floor (s)", ".4f"),
    ("x_floor", "x floor", ".1f"),
    ("bins10_s", "10 bins, one call (s)", ".3f"),
    ("bins10_over_all", "10 bins / all models", ".2f"),
    ("bins10_over_bin1", "10 bins / 1 bin", ".2f"),
    ("fast_compile_s", "compile (s)", ".2f"),
    ("max_kappa_diff", "kappa: max abs diff vs statsmodels", ".1e"),
    ("max_agreement_diff", "Eq. 1: max abs diff vs float64 on statsmodels' table", ".1e"),
]


def targets(rows: list[dict]) -> str:
    """The issue's targets, met or not, with what the memory floor allows."""
    lines = ["Targets (issue 2, on the 2-core CPU):", ""]
    for row in rows:
        speedup = row["speedup_vs_statsmodels"]
        needed = row.get("statsmodels_s", float("nan")) / 20
        lines.append(
            f"- {row['case']}: >= 20x statsmodels: {'met' if speedup >= 20 else 'NOT met'} "
            f"({speedup:.1f}x; 20x needs {needed * 1e3:.1f} ms, the memory floor is "
            f"{row['floor_s'] * 1e3:.1f} ms and jaxagree takes {row['fast_s'] * 1e3:.1f} ms); "
            f"10 bins in one call <= 3x one call: {'met' if row['bins10_over_all'] <= 3 else 'NOT met'} "
            f"({row['bins10_over_all']:.2f}x)"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> str:
    args = parse_args(argv, __doc__.splitlines()[0])
    cases = QUICK_CASES if args.quick else CASES
    bandwidth = copy_bandwidth(64 * 2**20 if args.quick else 512 * 2**20)
    peer = peer_available("statsmodels")
    rows = [
        run_case(*case, bandwidth=bandwidth, repeats=2 if args.quick else 7, peer=peer) for case in cases
    ]
    notes = (
        f"\n\nCopy bandwidth measured in this run: {bandwidth / 1e9:.2f} GB/s (read + write). "
        "Memory floor = bytes of int32 predictions / that bandwidth. Times are best of repeats, "
        "compile excluded; 'compile' is first call minus a warm call.\n\n" + targets(rows)
    )
    return publish("agreement", rows, COLUMNS, notes, args)

if __name__ == "__main__":
    main()
