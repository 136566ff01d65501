"""The agreement cost model (``jaxagree.counts.stats_plan``) against each kernel forced.

For 400 models x 20,000 stimuli (accuracies 0.4-0.9, wrong answers uniform over the categories)
at 100, 300, 1,000, 3,000 and 10,000 categories, with all models as one subset and as 8 subsets
of 50: the kernel, block size and pieces the cost model picks, the wall time of each kernel
forced (same block-size rule, same pieces), and the model's own estimate beside the measured
time per stimulus and core (wall time x pieces / stimuli). A choice is right when the picked
kernel is the fastest, or within 15% of it (runs on this shared machine vary by that much).

Usage: ``python benchmarks/bench_cost_model.py [--quick] [--no-save]``.
"""

from __future__ import annotations

import os

import numpy as np

try:
    from benchmarks.common import parse_args, publish, timed
except ImportError:  # run as a script from the benchmarks folder
    from common import parse_args, publish, timed

MODELS, STIMULI = 400, 20_000
CATEGORIES = (100, 300, 1_000, 3_000, 10_000)
SUBSETS = (1, 8)
QUICK = (40, 2_000, (100, 3_000), (1, 4))
TOLERANCE = 1.15  # a choice within 15% of the fastest kernel counts as right


def predictions(num_models: int, num_stimuli: int, num_categories: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    accuracy = rng.uniform(0.4, 0.9, num_models)
    labels = rng.integers(0, num_categories, num_stimuli)
    wrong = rng.integers(0, num_categories, (num_models, num_stimuli))
    return np.where(rng.random((num_models, num_stimuli)) < accuracy[:, None], labels[None], wrong).astype(np.int32)


def main(argv=None) -> str:
    args = parse_args(argv, __doc__.splitlines()[0])
    import jax.numpy as jnp

    import jaxagree as ja
    from jaxagree.counts import _plan

    num_models, num_stimuli, categories, subsets = QUICK if args.quick else (MODELS, STIMULI, CATEGORIES, SUBSETS)
    rows = []
    load_before = os.getloadavg()[0]
    for num_categories in categories:
        preds = jnp.asarray(predictions(num_models, num_stimuli, num_categories))
        for num_subsets in subsets:
            subset_of = np.arange(num_models) % num_subsets  # every model in one subset of num_subsets
            mask = None if num_subsets == 1 else subset_of[None] == np.arange(num_subsets)[:, None]
            row = {"size": f"{num_models} x {num_stimuli:,} x {num_categories:,}", "subsets": num_subsets}
            times, chosen = {}, None
            try:
                for method in (*_plan.METHODS, None):
                    _plan.FORCE_METHOD = method
                    plan = ja.counts.stats_plan(preds, num_categories=num_categories, model_mask=mask)
                    if method is not None and plan.method != _plan.METHODS[method]:
                        continue  # this kernel does not apply here

                    def run():
                        return ja.agreement_stats(preds, num_categories=num_categories, model_mask=mask)

                    seconds = timed(run, repeats=5)[1]  # best of 5 after the compiling call
                    if method is None:
                        pieces = f"{plan.pieces} piece" + ("s" if plan.pieces > 1 else "")
                        row["choice"] = f"{plan.method}, B={plan.block_size}, {pieces}"
                        row["chosen_s"], chosen = seconds, plan.method
                    else:
                        times[plan.method] = seconds
                        row[f"{method}_s"] = seconds
                        row[f"{method}_us"] = seconds * plan.pieces / num_stimuli * 1e6
                        row[f"{method}_model_us"] = plan.costs[plan.method] / 1e3
            finally:
                _plan.FORCE_METHOD = None
            # The chosen plan ran twice (forced, and as agreement_stats runs it): its better time.
            times[chosen] = min(times[chosen], row["chosen_s"])
            fastest = min(times, key=times.get)
            row["fastest"] = fastest
            row["right"] = "yes" if times[chosen] <= TOLERANCE * times[fastest] else "NO"
            rows.append(row)
            print(row, flush=True)
    right = sum(row["right"] == "yes" for row in rows)
    notes = (f"\n\nThe cost model's choice was the fastest kernel, or within {TOLERANCE - 1:.0%} of it, at "
             f"{right} of {len(rows)} sizes. 'µs/stimulus' is wall time x pieces / stimuli (the time per "
             "stimulus and core if the pieces ran fully in parallel); 'model' is the cost model's estimate "
             "of the same. Each time is the best of 5 after a compiling call; 'chosen' ran the plan as "
             "agreement_stats runs it, and differs from the same kernel forced only by run-to-run noise "
             "(this machine is shared): the better of the two is the chosen kernel's time when judging. "
             f"1-minute load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after.\n")
    return publish("cost-model", rows, COLUMNS, notes, args)


COLUMNS = [
    ("size", "models x stimuli x categories", "s"), ("subsets", "subsets", "d"),
    ("choice", "cost model's choice", "s"), ("chosen_s", "chosen (s)", ".4f"),
    ("dense_s", "dense table (s)", ".4f"), ("sparse_s", "per rating (s)", ".4f"), ("one-hot_s", "one-hot (s)", ".4f"),
    ("fastest", "fastest forced", "s"), ("right", "choice right", "s"),
    ("dense_us", "dense µs/stimulus", ".2f"), ("dense_model_us", "dense model", ".2f"),
    ("sparse_us", "per rating µs/stimulus", ".2f"), ("sparse_model_us", "per rating model", ".2f"),
    ("one-hot_us", "one-hot µs/stimulus", ".2f"), ("one-hot_model_us", "one-hot model", ".2f"),
]


if __name__ == "__main__":
    main()
