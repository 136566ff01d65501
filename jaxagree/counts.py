"""Predictions -> counts: one-hot count aggregation, optionally per model subset.

``T[i, j]`` counts the models that predicted category ``j`` for stimulus ``i`` (the paper's
Eq. 1 notation). Two outputs are offered:

* :func:`count_predictions` returns the dense table ``[stimuli, categories]`` (or one per subset).
* :func:`agreement_stats` returns only what agreement and Fleiss' kappa need (raters and sum of
  squared counts per stimulus, totals per category). It never materialises the dense table, so it
  is several times faster and needs ``O(stimuli + categories)`` memory per subset.

Both process stimuli in blocks small enough for the block's work to stay in cache. The stats
have three kernels that give identical results: a dense block table filled by one scatter-add of
the block's ratings (:func:`_block_stats`), a per-rating scatter/gather that never sweeps the table
(:func:`_sparse_stats`), and a compare-and-sum over the categories that vectorises and has no
scatter (:func:`_onehot_stats`, one subset and few categories). :func:`stats_plan` picks one, and
its block size, by a cost model that takes the number of distinct answers per stimulus (estimated
from a sample of stimuli) into account, and splits the stimuli over the CPU's cores. Predictions
``-1`` mean "no response" and are not counted.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import NamedTuple, no_type_check

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec
from jaxtyping import Array, Bool, Int, Integer

from jaxagree._checks import (
    is_traced,
    out_of_range,
    outside_categories,
    require_integer,
    require_ndim,
    require_num_categories,
)
from jaxagree._typing import AnyArray
from jaxagree.sharding import device_local
from jaxagree.stats import INT32_LIMIT, WIDE_RATERS, AgreementStats, merge_stats, sum_squares

# Elements of one block's count table; 2**19 int16 cells (1 MiB) stay in a CPU's L2 cache.
_BLOCK_CELLS = 2**19
class _Raters(NamedTuple):
    """The (model, subset) pairs to count: every model once without a mask."""

    model: np.ndarray | None  # [raters] model index; None means all models, in order
    subset: np.ndarray  # [raters] subset index
    num_subsets: int
    squeeze: bool  # no mask was given: drop the subset axis from outputs
    largest: int  # models in the largest subset: the most raters a stimulus can have


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def check_predictions(
    preds: AnyArray, num_categories: int, *, min_models: int = 2, check_values: bool = True
) -> jax.Array:
    """Validate ``preds [models, stimuli]`` and return it as an int32 jax array.

    With ``check_values=False`` the caller checks the range itself (the count kernels do it in
    their own pass and call :func:`raise_out_of_range`)."""
    require_num_categories(num_categories)
    if not hasattr(preds, "dtype"):
        preds = np.asarray(preds)
    require_ndim("predictions", preds, 2, "models, stimuli")
    require_integer("predictions", preds)
    num_models, num_stimuli = preds.shape
    if num_models < min_models:
        raise ValueError(
            f"predictions has {num_models} model(s); agreement needs at least {min_models}"
        )
    if num_stimuli < 1:
        raise ValueError("predictions has no stimuli (shape [models, 0])")
    if isinstance(preds, np.ndarray) and np.iinfo(preds.dtype).max > np.iinfo(np.int32).max:
        # Values that do not fit int32 would wrap when moved to the device: check them here.
        if outside_categories(np.array([preds.min(), preds.max()]), num_categories).any():
            raise_out_of_range(preds, num_categories)
    elif check_values and not is_traced(preds):
        if outside_categories(np.array(_value_range(jnp.asarray(preds))), num_categories).any():
            raise_out_of_range(preds, num_categories)
    return jnp.asarray(preds, dtype=jnp.int32)


def raise_out_of_range(preds: AnyArray, num_categories: int) -> None:
    """Raise the ValueError for the first prediction outside [-1, num_categories)."""
    host = np.asarray(preds)
    model, stimulus = np.argwhere(outside_categories(host, num_categories))[0]
    raise out_of_range(f"predictions[model {model}, stimulus {stimulus}] = {host[model, stimulus]}", num_categories)


def _check_invalid(invalid: jax.Array, preds: AnyArray, num_categories: int) -> None:
    if not is_traced(invalid) and int(invalid) > 0:
        raise_out_of_range(preds, num_categories)


@jax.jit
def _value_range(x: Integer[Array, ...]) -> tuple[Integer[Array, ""], Integer[Array, ""]]:
    return x.min(), x.max()


def _raters_from_mask(model_mask: AnyArray | None, num_models: int) -> _Raters:
    if model_mask is None:
        return _Raters(None, np.zeros(num_models, np.int32), 1, True, num_models)
    if is_traced(model_mask):
        raise ValueError(
            "model_mask must be a concrete array (it fixes how many ratings are counted); "
            "call count_predictions outside jit or close over the mask"
        )
    mask = np.asarray(model_mask)
    if mask.dtype != np.bool_:
        raise ValueError(f"model_mask must be a bool array [subsets, models], got dtype {mask.dtype}")
    require_ndim("model_mask", mask, 2, "subsets, models")
    if mask.shape[1] != num_models:
        raise ValueError(
            f"model_mask has {mask.shape[1]} models but predictions has {num_models}"
        )
    if mask.shape[0] < 1:
        raise ValueError("model_mask has no subsets (shape [0, models])")
    sizes = mask.sum(axis=1)
    if (sizes < 2).any():
        row = int(np.argmax(sizes < 2))
        raise ValueError(
            f"model_mask row {row} selects {int(sizes[row])} model(s); each subset needs at least 2"
        )
    subset, model = np.nonzero(mask)
    return _Raters(model.astype(np.int32), subset.astype(np.int32), mask.shape[0], False, int(sizes.max()))


def _block_size(num_stimuli: int, cells_per_stimulus: int, cells: int | None = None) -> int:
    """Stimuli per block: the most whose table fits ``cells`` (default ``_BLOCK_CELLS``),
    preferring a divisor of ``num_stimuli`` (down to half that size) so that no block overlaps
    the one before it (see :func:`_blocks`)."""
    cells = _BLOCK_CELLS if cells is None else cells
    largest = max(1, min(num_stimuli, cells // max(cells_per_stimulus, 1)))
    for size in range(largest, (largest + 1) // 2 - 1, -1):
        if num_stimuli % size == 0:
            return size
    return largest


class _Blocks(NamedTuple):
    """Stimulus blocks of the predictions, as flat indices into a block's count table."""

    num_blocks: int
    indices: object  # fn(block) -> (flat cell index [raters, B] (past the end if not counted),
    #                                 answered [raters, B], predictions outside [-1, C) in the block)
    table_dtype: object  # narrowest exact dtype for a block's counts
    table_size: int  # B * subsets * categories
    ratings: object  # fn(block) -> (the block's ratings [raters, B], columns not in an earlier block [B])


def _blocks(
    preds: Int[Array, "models stimuli"],
    rater_model: Int[Array, " raters"] | None,
    rater_subset: Int[Array, " raters"],
    *,
    num_categories: int,
    num_subsets: int,
    block_size: int,
    start=0,
    count: int | None = None,
) -> _Blocks:
    """Blocks of ``block_size`` stimuli over ``preds[:, start:start + count]`` (all by default),
    read in place: no padded copy. When ``block_size`` does not divide ``count`` the last block
    ends at the piece's end and overlaps the one before it; the overlapping stimuli are counted
    once (masked as "no response" in the last block), and :func:`_unblock` keeps its tail."""
    count = preds.shape[1] if count is None else count
    num_blocks = -(-count // block_size)
    cells = num_subsets * num_categories
    cell_offset = rater_subset[:, None] * num_categories
    row_offset = jnp.arange(block_size, dtype=jnp.int32)[None, :] * cells
    table_size = block_size * cells  # any index at or past the end is dropped by a scatter

    def ratings(i):
        first = i * block_size
        offset = jnp.minimum(first, count - block_size)
        block = jax.lax.dynamic_slice_in_dim(preds, start + offset, block_size, axis=1)
        fresh = offset + jnp.arange(block_size, dtype=jnp.int32) >= first  # not in an earlier block
        return block, fresh

    def indices(i):
        block, fresh = ratings(i)
        # Range checking here, in the same pass, spares the caller a pass over the predictions.
        invalid = (outside_categories(block, num_categories) & fresh[None, :]).sum(dtype=jnp.int32)
        if rater_model is not None:
            block = block[rater_model]
        answered = (block >= 0) & (block < num_categories) & fresh[None, :]
        return jnp.where(answered, row_offset + cell_offset + block, table_size), answered, invalid

    # Counts per cell never exceed the number of raters, so int16 tables are exact below 2**15
    # raters and halve the memory traffic of the dense passes on a CPU. GPUs have no 16-bit
    # atomic add, so they keep int32.
    narrow = rater_subset.shape[0] < 2**15 and jax.default_backend() == "cpu"
    table_dtype = jnp.int16 if narrow else jnp.int32
    return _Blocks(num_blocks, indices, table_dtype, table_size, ratings)


def _unblock(x, count: int):
    """Per-block outputs ``[blocks, B, ...]`` -> ``[count, ...]``: the last block's overlap with
    the one before it (see :func:`_blocks`) is dropped."""
    num_blocks, block_size = x.shape[:2]
    rest = x.shape[2:]
    tail = count - (num_blocks - 1) * block_size
    if tail == block_size:
        return x.reshape(num_blocks * block_size, *rest)
    return jnp.concatenate([x[:-1].reshape(-1, *rest), x[-1, block_size - tail:]], axis=0)


def _block_table(blocks: _Blocks, i, num_subsets: int, num_categories: int):
    """(count table [B, S, C] of block i, predictions outside [-1, C) in it)."""
    flat, _, invalid = blocks.indices(i)
    counts = jnp.zeros((blocks.table_size,), blocks.table_dtype).at[flat.ravel()].add(1, mode="drop")
    return counts.reshape(-1, num_subsets, num_categories), invalid


_STATIC = ("num_categories", "num_subsets", "block_size", "device_axes", "count")


@partial(jax.jit, static_argnames=_STATIC)
def _dense_counts(
    preds: Int[Array, "models stimuli"],
    rater_model: Int[Array, " raters"] | None,
    rater_subset: Int[Array, " raters"],
    *,
    num_categories: int,
    num_subsets: int,
    block_size: int,
    device_axes: tuple[str, ...] | None,
    start=0,
    count: int | None = None,
) -> tuple[Int[Array, "{num_subsets} stimuli {num_categories}"], Int[Array, ""]]:
    count = preds.shape[1] if count is None else count
    blocks = _blocks(
        preds, rater_model, rater_subset,
        num_categories=num_categories, num_subsets=num_subsets, block_size=block_size,
        start=start, count=count,
    )

    def step(invalid, i):
        counts, bad = _block_table(blocks, i, num_subsets, num_categories)
        return invalid + bad, counts.astype(jnp.int32)

    invalid, tables = jax.lax.scan(
        step, device_local(jnp.zeros((), jnp.int32), device_axes), jnp.arange(blocks.num_blocks)
    )
    counts = _unblock(tables, count)  # [stimuli, subsets, categories]
    return jnp.swapaxes(counts, 0, 1), invalid  # [subsets, stimuli, categories]


@partial(jax.jit, static_argnames=_STATIC + ("wide",))
def _block_stats(
    preds: Int[Array, "models stimuli"],
    rater_model: Int[Array, " raters"] | None,
    rater_subset: Int[Array, " raters"],
    *,
    num_categories: int,
    num_subsets: int,
    block_size: int,
    device_axes: tuple[str, ...] | None,
    start=0,
    count: int | None = None,
    wide: bool = False,
) -> tuple[AgreementStats, Int[Array, ""]]:
    """Per block: its count table, then raters, sums of squares (float32 if ``wide``) and
    category totals from it. Stimuli ``start`` to ``start + count`` (all by default)."""
    count = preds.shape[1] if count is None else count
    blocks = _blocks(
        preds, rater_model, rater_subset,
        num_categories=num_categories, num_subsets=num_subsets, block_size=block_size,
        start=start, count=count,
    )

    def step(carry, i):
        totals, invalid = carry
        counts, bad = _block_table(blocks, i, num_subsets, num_categories)
        counts = counts.astype(jnp.int32)  # [B, S, C]
        return (totals + counts.sum(0), invalid + bad), (counts.sum(-1), sum_squares(counts, wide))

    carry = (jnp.zeros((num_subsets, num_categories), jnp.int32), jnp.zeros((), jnp.int32))
    carry = device_local(carry, device_axes)
    (totals, invalid), (n, sq) = jax.lax.scan(step, carry, jnp.arange(blocks.num_blocks))
    return AgreementStats(_unblock(n, count).T, _unblock(sq, count).T, totals), invalid


# A module-level object, so that the cache of compiled executables recognises it.
_wide_block_stats = partial(_block_stats, wide=True)


@partial(jax.jit, static_argnames=_STATIC)
def _sparse_stats(
    preds: Int[Array, "models stimuli"],
    rater_model: Int[Array, " raters"] | None,
    rater_subset: Int[Array, " raters"],
    *,
    num_categories: int,
    num_subsets: int,
    block_size: int,
    device_axes: tuple[str, ...] | None,
    start=0,
    count: int | None = None,
) -> tuple[AgreementStats, Int[Array, ""]]:
    """:func:`_block_stats` without dense passes over each block's ``[B, S, C]`` table.

    Work per rating instead of per table cell: ``sum_j T_ij**2`` is the sum, over the ratings,
    of the count in each rating's own cell, so a block's table is filled by a scatter, read back
    by a gather at the same cells and cleared by a scatter there. Cheaper than the dense kernel
    when subsets x categories is large against the number of ratings (many subsets).
    Needs fewer than 4096 raters (per-subset sums are exact float32 matmuls), so it is always
    narrow.
    """
    count = preds.shape[1] if count is None else count
    blocks = _blocks(
        preds, rater_model, rater_subset,
        num_categories=num_categories, num_subsets=num_subsets, block_size=block_size,
        start=start, count=count,
    )
    member = (rater_subset[None, :] == jnp.arange(num_subsets)[:, None]).astype(jnp.float32)

    def per_subset(values):  # [raters, B] -> [S, B]; sums below 2**24 are exact in float32
        summed = jnp.matmul(member, values.astype(jnp.float32), precision=jax.lax.Precision.HIGHEST)
        return summed.astype(jnp.int32)

    def step(carry, i):
        table, invalid = carry
        flat, answered, bad = blocks.indices(i)
        flat = flat.ravel()
        table = table.at[flat].add(1, mode="drop")
        own_cell = table.at[flat].get(mode="fill", fill_value=0).reshape(answered.shape)
        table = table.at[flat].set(0, mode="drop")  # zero again for the next block
        return (table, invalid + bad), (per_subset(answered), per_subset(own_cell))

    carry = (jnp.zeros((blocks.table_size,), blocks.table_dtype), jnp.zeros((), jnp.int32))
    carry = device_local(carry, device_axes)
    (_, invalid), (n, sq) = jax.lax.scan(step, carry, jnp.arange(blocks.num_blocks))
    piece = preds if count == preds.shape[1] else jax.lax.dynamic_slice_in_dim(preds, start, count, axis=1)
    totals = _model_totals(piece, num_categories)
    totals = totals if rater_model is None else totals[rater_model]
    totals = jnp.zeros((num_subsets, num_categories), jnp.int32).at[rater_subset].add(totals)
    n, sq = (_unblock(jnp.swapaxes(x, 1, 2), count).T for x in (n, sq))  # [blocks, S, B] -> [S, count]
    return AgreementStats(n, sq, totals), invalid


# Raters compared at once in the one-hot kernel's inner loop.
_ONEHOT_GROUP = 8


@partial(jax.jit, static_argnames=_STATIC)
def _onehot_stats(
    preds: Int[Array, "models stimuli"],
    rater_model: Int[Array, " raters"] | None,
    rater_subset: Int[Array, " raters"],
    *,
    num_categories: int,
    num_subsets: int,
    block_size: int,
    device_axes: tuple[str, ...] | None,
    start=0,
    count: int | None = None,
) -> tuple[AgreementStats, Int[Array, ""]]:
    """:func:`_block_stats` for one subset without a scatter: a block's counts ``[C, B]`` are
    sums over its raters of ``rating == category``, elementwise work that vectorises (int16
    counts: fewer than 2**15 raters). Costs ``raters x categories`` per stimulus, so it pays
    for few categories only."""
    assert num_subsets == 1  # every rater is in the one subset
    count = preds.shape[1] if count is None else count
    blocks = _blocks(
        preds, rater_model, rater_subset,
        num_categories=num_categories, num_subsets=1, block_size=block_size, start=start, count=count,
    )
    categories = jnp.arange(num_categories, dtype=jnp.int32)

    def step(carry, i):
        totals, invalid = carry
        block, fresh = blocks.ratings(i)
        bad = (outside_categories(block, num_categories) & fresh[None, :]).sum(dtype=jnp.int32)
        if rater_model is not None:
            block = block[rater_model]
        block = jnp.where(fresh[None, :], block, -1)  # counted in an earlier block
        num_raters = block.shape[0]
        pad = (-num_raters) % _ONEHOT_GROUP
        if pad:
            block = jnp.pad(block, ((0, pad), (0, 0)), constant_values=-1)
        groups = block.reshape(-1, _ONEHOT_GROUP, block_size)

        def add(g, counts):
            group = jax.lax.dynamic_index_in_dim(groups, g, 0, keepdims=False)  # [G, B]
            return counts + (group[:, None, :] == categories[None, :, None]).sum(0, dtype=jnp.int16)

        zeros = device_local(jnp.zeros((num_categories, block_size), jnp.int16), device_axes)
        counts = jax.lax.fori_loop(0, groups.shape[0], add, zeros)
        counts = counts.astype(jnp.int32)  # [C, B]
        return (totals + counts.sum(1), invalid + bad), (counts.sum(0), (counts * counts).sum(0))

    carry = (jnp.zeros((num_categories,), jnp.int32), jnp.zeros((), jnp.int32))
    carry = device_local(carry, device_axes)
    (totals, invalid), (n, sq) = jax.lax.scan(step, carry, jnp.arange(blocks.num_blocks))
    return AgreementStats(_unblock(n, count)[None], _unblock(sq, count)[None], totals[None]), invalid


def _model_totals(
    preds: Int[Array, "models stimuli"], num_categories: int
) -> Int[Array, "models {num_categories}"]:
    """How often each model predicted each category (one scatter into a small table)."""
    num_models = preds.shape[0]
    answered = (preds >= 0) & (preds < num_categories)
    flat = jnp.arange(num_models, dtype=jnp.int32)[:, None] * num_categories + preds
    flat = jnp.where(answered, flat, num_models * num_categories)
    totals = jnp.zeros((num_models * num_categories,), jnp.int32).at[flat.ravel()].add(1, mode="drop")
    return totals.reshape(num_models, num_categories)


# The cost model that picks a stats kernel and its block size: nanoseconds on one core of a
# 2-core AVX-512 CPU (the benchmark's machine), from timings of each kernel forced on the
# benchmark's cases (benchmarks/bench_agreement.py shows the choice and the times).
_SCATTER_NS = 1.5  # dense kernel, per rating: one scatter-add into a cache-resident table
_CELL_NS = 0.15  # dense kernel, per table cell: zeroing and the vectorised sweep
_SPARSE_NS = 4.5  # sparse kernel, per rating: scatter-add, gather, scatter-clear
_ONEHOT_NS = 0.06  # one-hot kernel, per rating and category: a vectorised compare-and-add
# Scatter kernels, per distinct answer of a stimulus (its table line is first touched there), by
# the size of the block's working set (bytes): about 1 ns in L1 (32 KiB), 5 ns at 1 MiB of L2,
# 15 ns beyond L2 (4 MiB), interpolated in log2 of the size. A block with few distinct answers
# per stimulus may be large; with many it must be small to stay near L1, and then the per-block
# cost grows: this is where distinct answers change the choice.
_MISS_NS = ((2**15, 1.0), (2**20, 5.0), (2**22, 15.0))
_BLOCK_NS = 500.0  # every kernel, per block: one loop iteration's fixed work
_LINE_CELLS = 32  # int16 table cells per 64-byte line
_ONEHOT_BLOCK = 2**16  # ratings in a one-hot block
_ONEHOT_MAX_CATEGORIES = 256
_SPARSE_MAX_RATERS = 4096
_SAMPLE_STIMULI = 64  # stimuli sampled to estimate distinct answers per stimulus
_MIN_SPLIT_NS = 2e6  # estimated work (ns) from which stimulus pieces run on several cores
# Tests force one kernel: "dense", "sparse" or "one-hot" (None: the cost model decides).
_FORCE_METHOD: str | None = None

_METHODS = {"dense": "dense table", "sparse": "per rating", "one-hot": "one-hot"}


class StatsPlan(NamedTuple):
    """How :func:`agreement_stats` computes its result (see :func:`stats_plan`)."""

    method: str  # "one-hot", "dense table", "per rating" or "dense table (wide)"
    kernel: object
    block_size: int  # stimuli per block, in each piece
    pieces: int  # stimulus pieces run at once, one per core
    distinct: float  # estimated distinct answers per stimulus and subset (NaN: not estimated)
    costs: dict  # method -> estimated ns per stimulus on one core, for every method that applies


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _distinct_answers(preds: jax.Array, raters: _Raters, num_categories: int) -> float:
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


def _plan_for(raters: _Raters, num_categories: int, count: int, distinct: float, pieces: int = 1) -> StatsPlan:
    """The cost model for ``count`` stimuli per piece, given the distinct answers per stimulus."""
    num_raters = raters.subset.shape[0]
    subsets = raters.num_subsets
    cells = subsets * num_categories
    if raters.largest >= WIDE_RATERS:
        size = _block_size(count, cells)
        return StatsPlan("dense table (wide)", _wide_block_stats, size, pieces, distinct, {})
    if np.isnan(distinct):
        distinct = min(raters.largest, num_categories)  # the most it can be
    lines = subsets * max(1.0, min(distinct, -(-num_categories // _LINE_CELLS)))  # per stimulus

    def miss(working_set) -> float:
        sizes, ns = zip(*_MISS_NS)
        return float(np.interp(np.log2(max(working_set, 1)), np.log2(sizes), ns))

    def best(cost_of, limit: int) -> tuple[float, int]:
        """(cost per stimulus, block size) of the cheapest block size up to ``limit`` stimuli."""
        sizes = {_block_size(count, 1, min(limit, 2**k)) for k in range(3, 21)}  # 8 stimuli at least
        return min((cost_of(size) + _BLOCK_NS / size, size) for size in sizes)

    options = {"dense": best(lambda b: num_raters * _SCATTER_NS + cells * _CELL_NS
                             + subsets * distinct * miss(b * cells * 2), max(1, _BLOCK_CELLS // cells))}
    if num_raters < _SPARSE_MAX_RATERS:
        options["sparse"] = best(lambda b: num_raters * _SPARSE_NS + subsets * distinct * miss(b * lines * 64),
                                 max(1, 2 * _BLOCK_CELLS // cells))
    if subsets == 1 and num_raters < 2**15 and num_categories <= _ONEHOT_MAX_CATEGORIES:
        size = _block_size(count, num_raters, _ONEHOT_BLOCK)
        options["one-hot"] = (num_raters * num_categories * _ONEHOT_NS + _BLOCK_NS / size, size)
    costs = {name: cost for name, (cost, _) in options.items()}
    sizes = {name: size for name, (_, size) in options.items()}
    name = _FORCE_METHOD if _FORCE_METHOD in costs else min(costs, key=costs.get)
    kernel = {"dense": _block_stats, "sparse": _sparse_stats, "one-hot": _onehot_stats}[name]
    return StatsPlan(_METHODS[name], kernel, sizes[name], pieces, distinct,
                     {_METHODS[k]: v for k, v in costs.items()})


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
    return _stats_plan(preds, _raters_from_mask(model_mask, preds.shape[0]), num_categories, mesh)


def _stats_plan(preds: jax.Array, raters: _Raters, num_categories: int, mesh: Mesh | None) -> StatsPlan:
    num_stimuli = preds.shape[1]
    distinct = _distinct_answers(preds, raters, num_categories)
    if mesh is not None:  # the mesh's devices split the stimuli
        return _plan_for(raters, num_categories, -(-num_stimuli // mesh.devices.size), distinct)
    plan = _plan_for(raters, num_categories, num_stimuli, distinct)
    cores = _cores() if not is_traced(preds) else 1
    work = min(plan.costs.values(), default=_BLOCK_NS) * num_stimuli
    pieces = max(1, min(cores, num_stimuli // max(plan.block_size, 1), int(work // _MIN_SPLIT_NS)))
    if pieces == 1:
        return plan
    return _plan_for(raters, num_categories, -(-num_stimuli // pieces), distinct, pieces)


def _stats_kernel(raters: _Raters, num_categories: int, distinct: float = float("nan")):
    """(kernel, block size) the cost model picks for all stimuli on one core (tests call it)."""
    plan = _plan_for(raters, num_categories, 2**20, distinct)
    return plan.kernel, plan.block_size


@functools.lru_cache(maxsize=256)
def _executable(
    kernel, *, num_categories: int, num_subsets: int, block_size: int, num_stimuli: int,
    squeeze: bool, mesh: Mesh | None, count: int | None = None,
):
    """One jitted function: the kernel on one device over stimuli ``start`` to ``start + count``
    (all by default), or with the stimuli split over every device of ``mesh`` (padded with "no
    response" to a multiple of the device count), then trimmed and squeezed inside the same
    executable so a large table is never copied again."""
    statics = {"num_categories": num_categories, "num_subsets": num_subsets, "block_size": block_size}
    stats = kernel is not _dense_counts
    kept = num_stimuli if count is None else count
    if mesh is None:
        def body(preds, rater_model, rater_subset, start):
            return kernel(preds, rater_model, rater_subset, **statics, device_axes=None, start=start, count=count)

        pad = 0
    else:
        axes = tuple(mesh.axis_names)
        per_stimulus = PartitionSpec(None, axes)
        values_spec = (
            AgreementStats(per_stimulus, per_stimulus, PartitionSpec()) if stats
            else PartitionSpec(None, axes, None)
        )
        local = partial(kernel, **statics, device_axes=axes)

        def summed(preds, rater_model, rater_subset):
            # Per-stimulus outputs stay split; totals over stimuli are summed across devices.
            values, invalid = local(preds, rater_model, rater_subset)
            if stats:
                values = values._replace(category_totals=jax.lax.psum(values.category_totals, axes))
            return values, jax.lax.psum(invalid, axes)

        sharded = jax.shard_map(
            summed,
            mesh=mesh,
            in_specs=(per_stimulus, PartitionSpec(), PartitionSpec()),
            out_specs=(values_spec, PartitionSpec()),
        )

        def body(preds, rater_model, rater_subset, start):
            del start
            return sharded(preds, rater_model, rater_subset)

        pad = (-num_stimuli) % mesh.devices.size

    def run(preds, rater_model, rater_subset, start):
        if pad:
            preds = jnp.pad(preds, ((0, 0), (0, pad)), constant_values=-1)
        values, invalid = body(preds, rater_model, rater_subset, start)
        if stats:
            values = values._replace(
                n_raters=values.n_raters[:, :kept], sum_squares=values.sum_squares[:, :kept]
            )
        else:
            values = values[:, :kept]
        if squeeze:
            values = jax.tree.map(lambda x: x[0], values)
        return values, invalid

    return jax.jit(run)


def _count(kernel, preds: jax.Array, raters: _Raters, num_categories: int, mesh: Mesh | None, block_size: int):
    """Run a count kernel over all stimuli in blocks of ``block_size``."""
    run = _executable(
        kernel,
        num_categories=num_categories,
        num_subsets=raters.num_subsets,
        block_size=block_size,
        num_stimuli=preds.shape[1],
        squeeze=raters.squeeze,
        mesh=mesh,
    )
    model = None if raters.model is None else jnp.asarray(raters.model)
    return run(preds, model, jnp.asarray(raters.subset), 0)


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=_cores(), thread_name_prefix="jaxagree-counts")
    return _POOL


def _count_pieces(plan: StatsPlan, preds: jax.Array, raters: _Raters, num_categories: int):
    """Run ``plan``'s kernel on ``plan.pieces`` contiguous stimulus pieces at once, one per core
    (XLA:CPU runs one computation's scatter loop on one core; jax releases the GIL while a
    computation runs), and merge them: per-stimulus fields concatenated, totals summed."""
    num_stimuli = preds.shape[1]
    size = -(-num_stimuli // plan.pieces)
    starts = list(range(0, num_stimuli, size))
    model = None if raters.model is None else jnp.asarray(raters.model)
    subset = jnp.asarray(raters.subset)

    def piece(start):
        count = min(size, num_stimuli - start)
        run = _executable(
            plan.kernel, num_categories=num_categories, num_subsets=raters.num_subsets,
            block_size=min(plan.block_size, count), num_stimuli=num_stimuli, squeeze=raters.squeeze,
            mesh=None, count=count,
        )
        return jax.block_until_ready(run(preds, model, subset, jnp.int32(start)))

    parts = list(_pool().map(piece, starts))
    return _merge_pieces(parts)


@jax.jit
def _merge_pieces(parts):
    stats = [p[0] for p in parts]
    merged = AgreementStats(
        jnp.concatenate([s.n_raters for s in stats], axis=-1),
        jnp.concatenate([s.sum_squares for s in stats], axis=-1),
        sum(s.category_totals for s in stats),
    )
    return merged, sum(p[1] for p in parts)


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def count_predictions(
    preds: Int[AnyArray, "models stimuli"],
    *,
    num_categories: int,
    model_mask: Bool[AnyArray, "subsets models"] | None = None,
    mesh: Mesh | None = None,
) -> Int[Array, "*subsets stimuli categories"]:
    """Count, for every stimulus, how many models predicted each category.

    Args:
      preds: ``int [models, stimuli]`` predicted category per model and stimulus; ``-1`` is
        "no response" and is not counted.
      num_categories: number of categories ``C`` (fixes the output shape; static).
      model_mask: optional ``bool [subsets, models]``; one count table per row, over the models
        the row selects, all in one call. Must be concrete (not traced); each row needs at least
        2 models.
      mesh: optional device mesh; the stimuli are split over all of its devices and the result
        stays split the same way.

    Returns:
      ``int32 [stimuli, C]``, or ``int32 [subsets, stimuli, C]`` with ``model_mask``.
    """
    preds = check_predictions(preds, num_categories, check_values=False)
    raters = _raters_from_mask(model_mask, preds.shape[0])
    devices = 1 if mesh is None else mesh.devices.size
    size = _block_size(-(-preds.shape[1] // devices), raters.num_subsets * num_categories)
    counts, invalid = _count(_dense_counts, preds, raters, num_categories, mesh, size)
    _check_invalid(invalid, preds, num_categories)
    return counts


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def agreement_stats(
    preds: Int[AnyArray, "models stimuli"],
    *,
    num_categories: int,
    model_mask: Bool[AnyArray, "subsets models"] | None = None,
    mesh: Mesh | None = None,
) -> AgreementStats:
    """Agreement statistics straight from predictions, without the dense count table.

    Same arguments as :func:`count_predictions`. The result can be passed to
    :func:`~jaxagree.per_stimulus_agreement` and :func:`~jaxagree.fleiss_kappa` in place of a
    count table, with identical results.
    """
    preds = check_predictions(preds, num_categories, check_values=False)
    num_stimuli = preds.shape[1]
    raters = _raters_from_mask(model_mask, preds.shape[0])
    num_raters = raters.subset.shape[0]
    chunk = max(1, INT32_LIMIT // num_raters)
    if num_stimuli > chunk:
        return _chunked_stats(preds, model_mask, num_categories, mesh, chunk)
    plan = _stats_plan(preds, raters, num_categories, mesh)
    if plan.pieces > 1:
        stats, invalid = _count_pieces(plan, preds, raters, num_categories)
    else:
        stats, invalid = _count(plan.kernel, preds, raters, num_categories, mesh, plan.block_size)
    _check_invalid(invalid, preds, num_categories)
    return stats


def _chunked_stats(preds, model_mask, num_categories, mesh, chunk) -> AgreementStats:
    """Merge stimulus chunks whose category totals each fit in int32; totals summed in int64."""
    parts = [
        agreement_stats(
            preds[:, start : start + chunk], num_categories=num_categories,
            model_mask=model_mask, mesh=mesh,
        )
        for start in range(0, preds.shape[1], chunk)
    ]
    return merge_stats(parts)


__all__ = ["StatsPlan", "agreement_stats", "check_predictions", "count_predictions", "stats_plan"]
