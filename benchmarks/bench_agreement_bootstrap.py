"""Bootstrap intervals of Fleiss' kappa (all and contrastive stimuli, per model subset) and of error
consistency against the loops a user would otherwise write.

For each case (models x stimuli x categories, subsets = all models + accuracy bins, replicates,
``k`` = 2% of the stimuli), without labels and with them (error consistency added):

* jaxagree ``agreement_bootstrap``: total time, time per replicate, first-call overhead;
* peer 1, what a user would write today: a Python loop over the same draws
  (``ja.bootstrap_indices(jax.random.key(0), S, R)``) that gathers each replicate's resampled
  prediction table (draws sorted by stimulus index, so that ties go to the lower stimulus as in
  jaxagree) and per subset calls statsmodels ``aggregate_raters`` + ``fleiss_kappa``, takes the
  ``k`` lowest-agreement rows (agreement from the count table in NumPy) and ``fleiss_kappa`` on
  them; with labels, error consistency of every model pair in NumPy (two float64 matmuls). It runs
  in a subprocess without ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE``, which this machine's
  environment sets and which slow NumPy's large matmuls, and with OpenBLAS on one thread: its two
  threads stall, at times, when other processes hold the cores (see ``ENVIRONMENTS`` and the notes);
* peer 2: the same loop with jaxagree's own kernels (``agreement_stats`` + ``fleiss_kappa`` +
  ``per_stimulus_agreement`` + ``contrastive_stimuli`` on the gathered table, ``error_consistency``);
* both peers are timed on a few replicates after a warm-up and scaled to all (marked as such);
* the FLOP floor: the matmul FLOPs of ``agreement_bootstrap`` (see ``floor_flops``) over the
  float32 matmul rate measured in this run.

The answers, over the replicates the peers ran: a replicate with copies of one stimulus is not
Fleiss' kappa of the gathered table (``agreement_bootstrap`` leaves pairs of ratings on two copies
of one draw out of the chance term, see its module docstring), so the checks are: the estimate (all
weights 1) against statsmodels on the stimuli as given; every checked replicate against a float64
reference of the docstring's formula on the gathered table; ``method="randolph"`` (no chance term
from the data) against statsmodels' randolph kappa on the gathered table; error consistency against
NumPy's. A difference beyond the tolerances fails the run.

Usage: ``python benchmarks/bench_agreement_bootstrap.py [--quick] [--no-save]``.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import jaxagree as ja

try:
    from benchmarks.common import (
        BLAS_VARIABLES,
        markdown_table,
        matmul_rate,
        parse_args,
        peer_available,
        publish,
        timed,
    )
except ImportError:  # run as a script from the benchmarks folder
    from common import BLAS_VARIABLES, markdown_table, matmul_rate, parse_args, peer_available, publish, timed

# models, stimuli, categories, accuracy bins (subsets = bins + 1: all models), replicates
CASES = [(100, 10_000, 16, 10, 1000), (100, 5_000, 100, 10, 200), (200, 50_000, 1000, 10, 200)]
QUICK_CASES = [(12, 400, 10, 2, 20)]
LOOP_REPLICATES = 3  # replicates the peers are timed and checked on (all of them in --quick)
# float32 against float64: ~1e-6 at 200 x 50,000 x 1,000.
KAPPA_TOLERANCE = 1e-5
CONSISTENCY_TOLERANCE = 1e-5
# BLAS_VARIABLES (common): OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, which a user's environment lacks.
# The statsmodels peer's environment: this machine's with BLAS_VARIABLES removed (unset) or kept,
# and OPENBLAS_NUM_THREADS (None: OpenBLAS's default, a thread per core). The first is the peer's;
# the others run on the first case only, to show the variables' and the threads' effect.
ENVIRONMENTS = {"peer": (False, "1"), "variables kept": (True, "1"), "default threads": (False, None),
                "this machine's as set": (True, None)}


def make_case(num_models: int, num_stimuli: int, num_categories: int, num_bins: int):
    """(predictions, labels, model_mask): simulated models with no missing response (statsmodels
    needs the same raters on every stimulus); subsets are all models, then equal-count accuracy bins."""
    from jaxagree.demo import simulate_predictions

    table = simulate_predictions(num_models=num_models, num_stimuli=num_stimuli, num_categories=num_categories,
                                 no_response_rate=0.0, seed=0)
    accuracy = ja.model_accuracy(table.predictions, table.labels, num_categories=num_categories)
    bins = np.asarray(ja.accuracy_bins(accuracy, num_bins=num_bins).model_mask)
    mask = np.concatenate([np.ones((1, num_models), bool), bins])
    return table.predictions, table.labels, mask


def floor_flops(num_models, num_stimuli, num_categories, num_subsets, num_bootstrap, k, *, labels: bool) -> float:
    """The matmuls ``agreement_bootstrap`` runs, over ``R + 1`` rows of weights (the estimate is one
    more replicate): the category totals ``2 (R+1) S C subsets``, the four per-stimulus sums
    ``4 x 2 (R+1) S subsets``, the contrastive totals and sums over the agreement-ordered prefix;
    with labels error consistency's ``2 (R+1) S M^2`` (+ ``2 (R+1) S M`` for the right counts)."""
    rows = num_bootstrap + 1
    prefix = min(num_stimuli, k + 8 * int(np.sqrt(k)) + 64)
    flops = 2.0 * rows * num_stimuli * num_subsets * (num_categories + 4)
    flops += 2.0 * rows * num_subsets * prefix * (num_categories + 4)
    if labels:
        flops += 2.0 * rows * num_stimuli * num_models * (num_models + 1)
    return flops


# ---------------------------------------------------------------------------------------------
# Peer 1: statsmodels + NumPy, in a subprocess without the OpenBLAS variables.


def peer_statsmodels(path_in: str, path_out: str) -> None:
    """Run the statsmodels loop on the replicates in ``path_in`` (npz) and write times and answers
    to ``path_out`` (npz). Only NumPy and statsmodels are used here."""
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    data = np.load(path_in)
    preds, mask, indices = data["preds"], data["mask"], data["indices"]
    labels = data["labels"] if data["labels"].size else None
    C, k = int(data["num_categories"]), int(data["k"])
    num_subsets = mask.shape[0]

    def kappas(counts):
        """The user's code per subset: kappa over all rows, then over the k lowest-agreement rows."""
        n = counts.sum(1)
        squares = (counts * counts).sum(1)
        agreement = (squares - n) / (n * (n - 1.0))
        chosen = np.argsort(agreement, kind="stable")[:k]
        return fleiss_kappa(counts), fleiss_kappa(counts[chosen]), n, squares, chosen

    def consistency(correct):
        """The user's error consistency of every pair (Geirhos et al. 2020), float64."""
        right = correct.astype(np.float64)
        accuracy = right.mean(1)
        observed = (right @ right.T + (1 - right) @ (1 - right).T) / right.shape[1]
        expected = np.outer(accuracy, accuracy) + np.outer(1 - accuracy, 1 - accuracy)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(expected < 1, (observed - expected) / (1 - expected), np.nan)

    estimate = np.array([kappas(aggregate_raters(preds[m].T, n_cat=C)[0])[:2] for m in mask])  # [subsets, 2]
    out = {name: np.zeros((len(indices), num_subsets)) for name in
           ("statsmodels_all", "statsmodels_contrastive", "randolph_all", "randolph_contrastive",
            "reference_all", "reference_contrastive")}
    out["consistency"] = np.zeros((len(indices),) + (preds.shape[0],) * 2) if labels is not None else np.zeros(0)
    kappa_s, consistency_s = [], []
    for r in range(-1, len(indices)):  # r = -1: warm-up on replicate 0, untimed
        idx = indices[max(r, 0)]
        start = time.perf_counter()
        idx = np.sort(idx)
        table = preds[:, idx]
        elapsed = time.perf_counter() - start
        for s, members in enumerate(mask):
            start = time.perf_counter()
            counts = aggregate_raters(table[members].T, n_cat=C)[0]
            kappa_all, kappa_contrastive, n, squares, chosen = kappas(counts)
            elapsed += time.perf_counter() - start
            if r < 0:
                continue
            # The checks, untimed: randolph on the same tables; the float64 reference of
            # agreement_bootstrap's formula (copies of one draw left out of the chance term).
            out["statsmodels_all"][r, s], out["statsmodels_contrastive"][r, s] = kappa_all, kappa_contrastive
            out["randolph_all"][r, s] = fleiss_kappa(counts, method="randolph")
            out["randolph_contrastive"][r, s] = fleiss_kappa(counts[chosen], method="randolph")
            out["reference_all"][r, s] = reference_kappa(counts.sum(0), n, squares, idx)
            out["reference_contrastive"][r, s] = reference_kappa(
                counts[chosen].sum(0), n[chosen], squares[chosen], idx[chosen])
        if labels is not None:
            start = time.perf_counter()
            ec = consistency(table == labels[idx][None, :])
            if r >= 0:
                consistency_s.append(time.perf_counter() - start)
                out["consistency"][r] = ec
        if r >= 0:
            kappa_s.append(elapsed)
    np.savez(path_out, estimate=estimate, kappa_s=np.array(kappa_s), consistency_s=np.array(consistency_s), **out)


def reference_kappa(totals, n, squares, stimuli) -> float:
    """Float64 kappa of rows (drawn stimuli, all with >= 2 raters) by ``agreement_bootstrap``'s
    formula: observed disagreement over the rows; chance disagreement from the category totals
    without the rating pairs that fall on two copies of one stimulus."""
    totals, n, squares = (np.asarray(x, np.float64) for x in (totals, n, squares))
    apart = n * n - squares  # ordered rating pairs in different categories
    observed = np.mean(apart / (n * (n - 1)))
    _, inverse, copies = np.unique(stimuli, return_inverse=True, return_counts=True)
    others = copies[inverse] - 1.0  # each row's other copies among the rows
    total = totals.sum()
    chance = ((totals * (total - totals)).sum() - (others * apart).sum()) / (total * total - (others * n * n).sum())
    return float(1.0 - observed / chance)


def start_statsmodels_peer(preds, labels, mask, indices, num_categories, k, *, environment: str = "peer"):
    """Start peer 1 in a subprocess (in one of ``ENVIRONMENTS``); returns a function that waits for
    it and returns its results as a dict."""
    keep, threads = ENVIRONMENTS[environment]
    env = {key: value for key, value in os.environ.items()
           if (keep or key not in BLAS_VARIABLES) and key != "OPENBLAS_NUM_THREADS"}
    if threads is not None:
        env["OPENBLAS_NUM_THREADS"] = threads
    folder = tempfile.TemporaryDirectory()
    path_in, path_out = Path(folder.name) / "in.npz", Path(folder.name) / "out.npz"
    np.savez(path_in, preds=preds, mask=mask, indices=indices, num_categories=num_categories, k=k,
             labels=labels if labels is not None else np.zeros(0, np.int32))
    process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--peer", str(path_in), str(path_out)],
                               env=env)

    def finish() -> dict:
        with folder:
            if process.wait():
                raise RuntimeError(f"the statsmodels peer failed (exit status {process.returncode})")
            with np.load(path_out) as out:
                return {name: out[name] for name in out.files}

    return finish


# ---------------------------------------------------------------------------------------------
# Peer 2: the same loop with jaxagree's kernels.


def peer_jaxagree(preds, labels, mask, indices, num_categories, k) -> dict:
    """(seconds of kappa work and of error-consistency work per replicate, kappas [replicates,
    subsets] over all and contrastive stimuli) of a Python loop of jaxagree's kernels."""
    import jax
    import jax.numpy as jnp

    preds, mask = jnp.asarray(preds), jnp.asarray(mask)
    labels = None if labels is None else jnp.asarray(labels)
    all_kappas, contrastive_kappas, kappa_s, consistency_s = [], [], [], []
    for r in range(-1, len(indices)):  # r = -1: warm-up (compiles), untimed
        start = time.perf_counter()
        idx = jnp.sort(jnp.asarray(indices[max(r, 0)]))
        table = preds[:, idx]
        stats = ja.agreement_stats(table, num_categories=num_categories, model_mask=mask)
        kappa_all = ja.fleiss_kappa(stats)
        chosen = ja.contrastive_stimuli(ja.per_stimulus_agreement(stats), k)
        kappa_contrastive = jnp.stack([
            ja.fleiss_kappa(ja.agreement_stats(table[:, chosen[s]], num_categories=num_categories,
                                               model_mask=mask[s:s + 1]))[0]
            for s in range(mask.shape[0])])
        jax.block_until_ready((kappa_all, kappa_contrastive))
        elapsed = time.perf_counter() - start
        if labels is not None:
            start = time.perf_counter()
            jax.block_until_ready(ja.error_consistency(table == labels[idx][None, :]))
            if r >= 0:
                consistency_s.append(time.perf_counter() - start)
        if r >= 0:
            kappa_s.append(elapsed)
            all_kappas.append(np.asarray(kappa_all))
            contrastive_kappas.append(np.asarray(kappa_contrastive))
    return {"kappa_s": np.array(kappa_s), "consistency_s": np.array(consistency_s),
            "all": np.array(all_kappas), "contrastive": np.array(contrastive_kappas)}


# ---------------------------------------------------------------------------------------------


def max_diff(a, b) -> float:
    """Largest |a - b|, NaN where both are NaN counting as equal (and NaN against a number as inf)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    both = np.isnan(a) & np.isnan(b)
    diff = np.where(both, 0.0, np.abs(a - b))
    return float(np.nan_to_num(diff, nan=np.inf).max())


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_case(num_models, num_stimuli, num_categories, num_bins, num_bootstrap, *, rate, quick, blas_effect=False):
    """Two rows (without labels, with labels) of times, ratios and floors; the answers' checks are
    in the with-labels row. Raises AssertionError beyond the tolerances."""
    import jax

    preds, labels, mask = make_case(num_models, num_stimuli, num_categories, num_bins)
    num_subsets = mask.shape[0]
    k = max(1, num_stimuli // 50)
    case = f"{num_models} x {num_stimuli:,} x {num_categories}"
    device_preds = jax.numpy.asarray(preds)
    checked = num_bootstrap if quick else LOOP_REPLICATES
    indices = np.asarray(ja.bootstrap_indices(jax.random.key(0), num_stimuli, num_bootstrap)[:checked])

    # In --quick the statsmodels subprocess runs alongside the rest (a smoke run: its times mean
    # little there); otherwise alone, before anything else is timed.
    statsmodels_peer = start_statsmodels_peer(preds, labels, mask, indices, num_categories, k)
    if not quick:
        statsmodels_peer = statsmodels_peer()
    other_environments = {}
    if blas_effect:  # the same peer in the other environments
        for environment in list(ENVIRONMENTS)[1:]:
            other_environments[environment] = start_statsmodels_peer(
                preds, labels, mask, indices, num_categories, k, environment=environment)()
    jax_peer = peer_jaxagree(preds, labels, mask, indices, num_categories, k)

    rows, results = [], {}
    if quick:
        statsmodels_peer = statsmodels_peer()
    for with_labels in (False, True):
        row = {"case": case, "labels": "yes" if with_labels else "no", "subsets": num_subsets,
               "replicates": num_bootstrap, "k": k}

        def run(with_labels=with_labels):
            results[with_labels] = ja.agreement_bootstrap(
                device_preds, num_categories=num_categories, k=k, model_mask=mask,
                labels=labels if with_labels else None, num_bootstrap=num_bootstrap, seed=0)
            return results[with_labels]

        first, row["jaxagree_s"] = timed(run, repeats=2 if num_stimuli * num_categories < 10**7 else 1)
        row["compile_s"] = max(first - row["jaxagree_s"], 0.0)
        row["per_replicate_ms"] = 1e3 * row["jaxagree_s"] / num_bootstrap
        for name, peer in (("statsmodels", statsmodels_peer), ("loop", jax_peer)):
            per_replicate = np.median(peer["kappa_s"]) + (np.median(peer["consistency_s"]) if with_labels else 0.0)
            row[f"{name}_s"] = per_replicate * num_bootstrap
            row[f"x_{name}"] = row[f"{name}_s"] / row["jaxagree_s"]
        row["floor_s"] = floor_flops(num_models, num_stimuli, num_categories, num_subsets, num_bootstrap, k,
                                     labels=with_labels) / rate
        row["share_of_matmul_rate"] = row["floor_s"] / row["jaxagree_s"]
        row["peak_rss_gib"] = peak_rss_gib()
        for environment, peer in other_environments.items():
            for part in ("kappa_s", "consistency_s"):
                row[f"{environment}: {part}"] = float(np.median(peer[part]) / np.median(statsmodels_peer[part]))
        rows.append(row)
        print(f"  {case}, labels {row['labels']}: {row['jaxagree_s']:.2f} s for {num_bootstrap} replicates",
              flush=True)

    randolph = ja.agreement_bootstrap(device_preds, num_categories=num_categories, k=k, model_mask=mask,
                                      num_bootstrap=num_bootstrap, seed=0, method="randolph")
    plain, labelled = results[False], results[True]
    checks = {
        "estimate_diff": max(max_diff(plain.kappa_all.estimate, statsmodels_peer["estimate"][:, 0]),
                             max_diff(plain.kappa_contrastive.estimate, statsmodels_peer["estimate"][:, 1])),
        "reference_diff": max(
            max_diff(plain.kappa_all.replicates[:checked], statsmodels_peer["reference_all"]),
            max_diff(plain.kappa_contrastive.replicates[:checked], statsmodels_peer["reference_contrastive"])),
        "randolph_diff": max(
            max_diff(randolph.kappa_all.replicates[:checked], statsmodels_peer["randolph_all"]),
            max_diff(randolph.kappa_contrastive.replicates[:checked], statsmodels_peer["randolph_contrastive"])),
        "consistency_diff": max_diff(labelled.error_consistency.replicates[:checked],
                                     statsmodels_peer["consistency"]),
        "labels_same_kappa": max(max_diff(plain.kappa_all.replicates, labelled.kappa_all.replicates),
                                 max_diff(plain.kappa_contrastive.replicates, labelled.kappa_contrastive.replicates)),
        "loop_diff": max(max_diff(jax_peer["all"], statsmodels_peer["statsmodels_all"]),
                         max_diff(jax_peer["contrastive"], statsmodels_peer["statsmodels_contrastive"])),
        # Not a check: how far Fleiss' kappa of the gathered table (copies' pairs in the chance
        # term) lies from agreement_bootstrap's replicate, for the contrastive stimuli.
        "copies_effect": float(np.mean(np.asarray(plain.kappa_contrastive.replicates[:checked], np.float64)
                                       - statsmodels_peer["statsmodels_contrastive"])),
    }
    rows[1].update(checks)
    limits = {"estimate_diff": ("the estimate differs from statsmodels on the stimuli as given", KAPPA_TOLERANCE),
              "reference_diff": ("a replicate differs from the float64 reference", KAPPA_TOLERANCE),
              "randolph_diff": ("a randolph replicate differs from statsmodels on its gathered table",
                                KAPPA_TOLERANCE),
              "consistency_diff": ("an error-consistency replicate differs from NumPy's", CONSISTENCY_TOLERANCE),
              "labels_same_kappa": ("kappa with labels differs from kappa without", 0.0),
              "loop_diff": ("the loop of jaxagree's kernels differs from statsmodels", KAPPA_TOLERANCE)}
    for name, (what, tolerance) in limits.items():
        if not checks[name] <= tolerance:
            raise AssertionError(f"{case}: {what} by {checks[name]:.2e} (> {tolerance:g})")
    return rows


COLUMNS = [
    ("case", "models x stimuli x categories", "s"),
    ("labels", "labels (error consistency)", "s"),
    ("subsets", "subsets", "d"),
    ("replicates", "replicates", "d"),
    ("k", "k", "d"),
    ("jaxagree_s", "jaxagree (s)", ".2f"),
    ("per_replicate_ms", "per replicate (ms)", ".2f"),
    ("statsmodels_s", "statsmodels loop, scaled (s)", ".1f"),
    ("x_statsmodels", "vs statsmodels loop", ".1f"),
    ("loop_s", "loop of ja kernels, scaled (s)", ".1f"),
    ("x_loop", "vs ja loop", ".1f"),
    ("floor_s", "FLOP floor (s)", ".3f"),
    ("share_of_matmul_rate", "share of matmul rate", ".1%"),
    ("compile_s", "first-call overhead (s)", ".2f"),
    ("peak_rss_gib", "process peak RSS so far (GiB)", ".1f"),
]
CHECK_COLUMNS = [
    ("case", "models x stimuli x categories", "s"),
    ("estimate_diff", "estimate vs statsmodels", ".1e"),
    ("reference_diff", "replicates vs float64 reference", ".1e"),
    ("randolph_diff", "randolph replicates vs statsmodels", ".1e"),
    ("consistency_diff", "error consistency vs NumPy", ".1e"),
    ("loop_diff", "ja loop vs statsmodels loop", ".1e"),
    ("copies_effect", "mean contrastive replicate minus statsmodels on the resample (not a check)", "+.4f"),
]


def main(argv=None) -> str:
    args = parse_args(argv, __doc__.splitlines()[0])
    if not peer_available("statsmodels"):
        raise SystemExit("the answers are checked against statsmodels: pip install -e '.[bench]'")
    load_at_start = os.getloadavg()[0]
    rate = matmul_rate(1024 if args.quick else 2048)
    rows = []
    for number, case in enumerate(QUICK_CASES if args.quick else CASES):
        rows += run_case(*case, rate=rate, quick=args.quick, blas_effect=not args.quick and number == 0)
    checked = [row for row in rows if row["labels"] == "yes"]
    blas_note = "".join(
        f" In the environment '{environment}' the same peer took {rows[0][environment + ': kappa_s']:.2f}x as long "
        f"for its kappa work and {rows[0][environment + ': consistency_s']:.2f}x as long for error consistency."
        for environment in list(ENVIRONMENTS)[1:] if environment + ": kappa_s" in rows[0])
    if blas_note:
        blas_note = (f" Peer environments, measured at {rows[0]['case']} (median per replicate, against the peer's; "
                     "kappa work: per-row bincount and elementwise NumPy, no BLAS; error consistency: two float64 "
                     "matmuls):" + blas_note)
    notes = (
        f"\n\nSeed 0, k = 2% of the stimuli, fleiss method, default max_bytes; subsets = all models + equal-count "
        "accuracy bins (ja.accuracy_bins of ja.model_accuracy); predictions from jaxagree.demo.simulate_predictions "
        "with no missing response (statsmodels needs the same raters on every stimulus). jaxagree times are the best "
        "of 2 warm calls (one at 200 x 50,000 x 1000); first-call overhead = first call minus the best warm call. "
        f"Both peers run on the same draws (ja.bootstrap_indices), timed on {LOOP_REPLICATES} replicates after a "
        "warm-up replicate and scaled to all (median per replicate); with labels their time adds error consistency "
        "(NumPy: two float64 matmuls; ja.error_consistency). The statsmodels peer runs in a subprocess with "
        f"{' and '.join(BLAS_VARIABLES)} unset (this machine sets them, to Haswell kernels and a small L2 size, which "
        "slow large matmuls) and OPENBLAS_NUM_THREADS=1 (OpenBLAS's default two threads stall, at times, when other "
        "processes hold the 2 cores)." + blas_note
        + "\n\n"
        f"1-minute load average at the start and the end of the run: {load_at_start:.1f} and {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} cores (above 1: other processes shared the machine; every time is of this run). "
        f"float32 matmul rate measured in this run: {rate / 1e9:.1f} GFLOP/s. FLOP floor = the matmuls of "
        "agreement_bootstrap over R + 1 weight rows (the estimate is one more row): category totals "
        "2 (R+1) S C subsets, four per-stimulus sums 4 x 2 (R+1) S subsets, the same over the contrastive "
        "prefix (k + 8 sqrt(k) + 64 stimuli), and with labels error consistency's 2 (R+1) S M (M + 1) / that "
        "rate.\n\n"
        "Answers over the checked replicates (every replicate in --quick); above "
        f"{KAPPA_TOLERANCE:g} (kappa) or {CONSISTENCY_TOLERANCE:g} (error consistency) fails the run. A replicate "
        "is not statsmodels' kappa of the gathered table when a stimulus is drawn twice (agreement_bootstrap "
        "leaves pairs of ratings on two copies of one draw out of the chance term), so: the estimate (all weights "
        "1) against statsmodels on the stimuli as given; each replicate (all and contrastive) against a float64 "
        "reference of that formula on the gathered table; method='randolph' (no chance term from the data) "
        "against statsmodels' randolph kappa on the gathered table; error consistency against NumPy's; the loop "
        "of ja kernels against the statsmodels loop. The last column shows the size of the copies' "
        "correction.\n\n" + markdown_table(checked, CHECK_COLUMNS) + "\n"
    )
    return publish("agreement-bootstrap", rows, COLUMNS, notes, args)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--peer"]:
        peer_statsmodels(*sys.argv[2:4])
    else:
        main(sys.argv[1:])
