"""The cost model that picks a stats kernel, its block size and the stimulus pieces run at once."""

from __future__ import annotations

import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jaxtyping import Bool, Int

from jaxagree._checks import is_traced
from jaxagree._typing import AnyArray
from jaxagree.counts import _kernels as kernels
from jaxagree.counts._checks import Raters, check_predictions, raters_from_mask
from jaxagree.counts._kernels import block_stats, onehot_stats, sparse_stats, stimuli_per_block, wide_block_stats
from jaxagree.stats import WIDE_RATERS

# The cost model that picks a stats kernel and its block size: nanoseconds of wall time per
# stimulus on one core of a 2-core AVX-512 CPU (the benchmark's machine). The ratios between the
# terms come from timings of each kernel forced on bench_agreement's cases; the common scale
# (_SCALE) from benchmarks/bench_cost_model.py (2026-12-03: 400 models x 20,000 stimuli, 100-10,000
# categories, 1 and 8 subsets), where the estimates had been 4-20x low. Now: the dense table
# within 40% while a block's table fits in L2 (2.5x low beyond: 10,000 categories x 8 subsets),
# per rating within 1.6x (3.4x low at 10,000 x 8). The choice was the fastest kernel, or within
# 15% of it, at all 10 sizes of that grid.
_SCALE = 6.0
_SCATTER_NS = 1.5 * _SCALE  # dense kernel, per rating: one scatter-add into a cache-resident table
_CELL_NS = 0.15 * _SCALE  # dense kernel, per table cell: zeroing and the vectorised sweep
_SPARSE_NS = 4.5 * _SCALE  # sparse kernel, per rating: scatter-add, gather, scatter-clear
_ONEHOT_NS = 0.06 * _SCALE  # one-hot kernel, per rating and category: a vectorised compare-and-add
# Scatter kernels, per distinct answer of a stimulus (its table line is first touched there), by
# the size of the block's working set (bytes): about 1 ns in L1 (32 KiB), 5 ns at 1 MiB of L2,
# 15 ns beyond L2 (4 MiB) before the common scale, interpolated in log2 of the size. A block with
# few distinct answers per stimulus may be large; with many it must be small to stay near L1,
# and then the per-block cost grows: this is where distinct answers change the choice.
_MISS_NS = ((2**15, 1.0 * _SCALE), (2**20, 5.0 * _SCALE), (2**22, 15.0 * _SCALE))
_BLOCK_NS = 500.0 * _SCALE  # every kernel, per block: one loop iteration's fixed work
_LINE_CELLS = 32  # int16 table cells per 64-byte line
ONEHOT_BLOCK = 2**16  # ratings in a one-hot block
_ONEHOT_MAX_CATEGORIES = 256
_SPARSE_MAX_RATERS = 4096
_SAMPLE_STIMULI = 64  # stimuli sampled to estimate distinct answers per stimulus
_MIN_SPLIT_NS = 2e6 * _SCALE  # estimated work (ns) from which stimulus pieces run on several cores
# Tests force one kernel: "dense", "sparse" or "one-hot" (None: the cost model decides).
FORCE_METHOD: str | None = None

METHODS = {"dense": "dense table", "sparse": "per rating", "one-hot": "one-hot"}


class StatsPlan(NamedTuple):
    """How :func:`agreement_stats` computes its result (see :func:`stats_plan`)."""

    method: str  # "one-hot", "dense table", "per rating" or "dense table (wide)"
    kernel: object
    block_size: int  # stimuli per block, in each piece
    pieces: int  # stimulus pieces run at once, one per core
    distinct: float  # estimated distinct answers per stimulus and subset (NaN: not estimated)
    costs: dict  # method -> estimated ns per stimulus on one core, for every method that applies


def num_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def distinct_answers(preds: jax.Array, raters: Raters, num_categories: int) -> float:
    """Mean distinct answers per stimulus and subset over an evenly spaced sample of stimuli
    (NaN when the predictions are traced)."""
    if is_traced(preds):
        return float("nan")
    num_stimuli = preds.shape[1]
    columns = np.unique(np.linspace(0, num_stimuli - 1, min(_SAMPLE_STIMULI, num_stimuli)).astype(np.int64))
    sample = np.asarray(preds[:, jnp.asarray(columns)])  # [models, sample]
    if raters.model is not None:
        sample = sample[raters.model]
    answered = (sample >= 0) & (sample < num_categories)
    found = 0
    for s in range(raters.num_subsets):
        mine = np.where(answered[raters.subset == s], sample[raters.subset == s], -1)
        ordered = np.sort(mine, axis=0)
        new = ordered >= 0
        new[1:] &= ordered[1:] != ordered[:-1]
        found += int(new.sum())
    return found / (raters.num_subsets * len(columns))


def plan_for(raters: Raters, num_categories: int, count: int, distinct: float, pieces: int = 1) -> StatsPlan:
    """The cost model for ``count`` stimuli per piece, given the distinct answers per stimulus."""
    num_raters = raters.subset.shape[0]
    subsets = raters.num_subsets
    cells = subsets * num_categories
    if raters.largest >= WIDE_RATERS:
        size = stimuli_per_block(count, cells)
        return StatsPlan("dense table (wide)", wide_block_stats, size, pieces, distinct, {})
    if np.isnan(distinct):
        distinct = min(raters.largest, num_categories)  # the most it can be
    lines = subsets * max(1.0, min(distinct, -(-num_categories // _LINE_CELLS)))  # per stimulus

    def miss(working_set) -> float:
        sizes, ns = zip(*_MISS_NS)
        return float(np.interp(np.log2(max(working_set, 1)), np.log2(sizes), ns))

    def best(cost_of, limit: int) -> tuple[float, int]:
        """(cost per stimulus, block size) of the cheapest block size up to ``limit`` stimuli."""
        sizes = {stimuli_per_block(count, 1, min(limit, 2**k)) for k in range(3, 21)}  # 8 stimuli at least
        return min((cost_of(size) + _BLOCK_NS / size, size) for size in sizes)

    options = {"dense": best(lambda b: num_raters * _SCATTER_NS + cells * _CELL_NS
                             + subsets * distinct * miss(b * cells * 2), max(1, kernels.BLOCK_CELLS // cells))}
    if num_raters < _SPARSE_MAX_RATERS:
        options["sparse"] = best(lambda b: num_raters * _SPARSE_NS + subsets * distinct * miss(b * lines * 64),
                                 max(1, 2 * kernels.BLOCK_CELLS // cells))
    if subsets == 1 and num_raters < 2**15 and num_categories <= _ONEHOT_MAX_CATEGORIES:
        size = stimuli_per_block(count, num_raters, ONEHOT_BLOCK)
        options["one-hot"] = (num_raters * num_categories * _ONEHOT_NS + _BLOCK_NS / size, size)
    costs = {name: cost for name, (cost, _) in options.items()}
    sizes = {name: size for name, (_, size) in options.items()}
    name = FORCE_METHOD if FORCE_METHOD in costs else min(costs, key=costs.get)
    kernel = {"dense": block_stats, "sparse": sparse_stats, "one-hot": onehot_stats}[name]
    return StatsPlan(METHODS[name], kernel, sizes[name], pieces, distinct,
                     {METHODS[k]: v for k, v in costs.items()})


def stats_plan(
    preds: Int[AnyArray, "models stimuli"],
    *,
    num_categories: int,
    model_mask: Bool[AnyArray, "subsets models"] | None = None,
    mesh: Mesh | None = None,
) -> StatsPlan:
    """The kernel, block size and number of concurrent stimulus pieces that
    :func:`agreement_stats` uses for these arguments, with the cost model's estimates."""
    preds = check_predictions(preds, num_categories, check_values=False)
    return choose_plan(preds, raters_from_mask(model_mask, preds.shape[0]), num_categories, mesh)


def choose_plan(preds: jax.Array, raters: Raters, num_categories: int, mesh: Mesh | None) -> StatsPlan:
    num_stimuli = preds.shape[1]
    distinct = distinct_answers(preds, raters, num_categories)
    if mesh is not None:  # the mesh's devices split the stimuli
        return plan_for(raters, num_categories, -(-num_stimuli // mesh.devices.size), distinct)
    plan = plan_for(raters, num_categories, num_stimuli, distinct)
    cores = num_cores() if not is_traced(preds) else 1
    work = min(plan.costs.values(), default=_BLOCK_NS) * num_stimuli
    pieces = max(1, min(cores, num_stimuli // max(plan.block_size, 1), int(work // _MIN_SPLIT_NS)))
    if pieces == 1:
        return plan
    return plan_for(raters, num_categories, -(-num_stimuli // pieces), distinct, pieces)


def stats_kernel(raters: Raters, num_categories: int, distinct: float = float("nan")):
    """(kernel, block size) the cost model picks for all stimuli on one core (tests call it)."""
    plan = plan_for(raters, num_categories, 2**20, distinct)
    return plan.kernel, plan.block_size
