"""The count kernels: stimuli in blocks whose table stays in cache, one ``lax.scan`` over blocks.

``dense_counts`` fills the dense table; three stats kernels give identical
:class:`~jaxagree.stats.AgreementStats` without it (``block_stats``, ``sparse_stats``,
``onehot_stats``; ``wide_block_stats`` for more raters than int16 counts hold)."""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Int

from jaxagree._checks import outside_categories
from jaxagree.sharding import device_local
from jaxagree.stats import AgreementStats, sum_squares

# Elements of one block's count table; 2**19 int16 cells (1 MiB) stay in a CPU's L2 cache.
BLOCK_CELLS = 2**19


def stimuli_per_block(num_stimuli: int, cells_per_stimulus: int, cells: int | None = None) -> int:
    """Stimuli per block: the most whose table fits ``cells`` (default ``BLOCK_CELLS``),
    preferring a divisor of ``num_stimuli`` (down to half that size) so that no block overlaps
    the one before it (see :func:`make_blocks`)."""
    cells = BLOCK_CELLS if cells is None else cells
    largest = max(1, min(num_stimuli, cells // max(cells_per_stimulus, 1)))
    for size in range(largest, (largest + 1) // 2 - 1, -1):
        if num_stimuli % size == 0:
            return size
    return largest


class Blocks(NamedTuple):
    """Stimulus blocks of the predictions, as flat indices into a block's count table."""

    num_blocks: int
    indices: object  # fn(block) -> (flat cell index [raters, B] (table_size if not counted),
    #                                 answered [raters, B], predictions outside [-1, C) in the block)
    table_dtype: object  # narrowest exact dtype for a block's counts
    table_size: int  # B * subsets * categories
    ratings: object  # fn(block) -> (the block's ratings [raters, B], columns not in an earlier block [B])


def make_blocks(
    preds: Int[Array, "models stimuli"],
    rater_model: Int[Array, " raters"] | None,
    rater_subset: Int[Array, " raters"],
    *,
    num_categories: int,
    num_subsets: int,
    block_size: int,
    start=0,
    count: int | None = None,
) -> Blocks:
    """Blocks of ``block_size`` stimuli over ``preds[:, start:start + count]`` (all by default),
    read in place: no padded copy. When ``block_size`` does not divide ``count`` the last block
    ends at the piece's end and overlaps the one before it; the overlapping stimuli are counted
    once (masked as "no response" in the last block), and :func:`unblock` keeps its tail."""
    count = preds.shape[1] if count is None else count
    num_blocks = -(-count // block_size)
    cells = num_subsets * num_categories
    cell_offset = rater_subset[:, None] * num_categories
    row_offset = jnp.arange(block_size, dtype=jnp.int32)[None, :] * cells
    table_size = block_size * cells  # the index of a rating not counted (dropped, or a spare cell)

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
    return Blocks(num_blocks, indices, table_dtype, table_size, ratings)


def unblock(x, count: int):
    """Per-block outputs ``[blocks, B, ...]`` -> ``[count, ...]``: the last block's overlap with
    the one before it (see :func:`make_blocks`) is dropped."""
    num_blocks, block_size = x.shape[:2]
    rest = x.shape[2:]
    tail = count - (num_blocks - 1) * block_size
    if tail == block_size:
        return x.reshape(num_blocks * block_size, *rest)
    return jnp.concatenate([x[:-1].reshape(-1, *rest), x[-1, block_size - tail:]], axis=0)


def block_table(blocks: Blocks, i, num_subsets: int, num_categories: int):
    """(count table [B, S, C] of block i, predictions outside [-1, C) in it)."""
    flat, _, invalid = blocks.indices(i)
    # A spare cell past the table takes the ratings not counted (index table_size), so every index
    # is in bounds and the scatter runs without its bounds checks: 400 x 50,000 x 1,000 on two
    # cores, 106 -> 91 ms (median of 5, alternated; 2026-12-03).
    counts = jnp.zeros((blocks.table_size + 1,), blocks.table_dtype)
    counts = counts.at[flat.ravel()].add(1, mode="promise_in_bounds")
    return counts[: blocks.table_size].reshape(-1, num_subsets, num_categories), invalid


STATIC = ("num_categories", "num_subsets", "block_size", "device_axes", "count")


@partial(jax.jit, static_argnames=STATIC)
def dense_counts(
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
    blocks = make_blocks(
        preds, rater_model, rater_subset,
        num_categories=num_categories, num_subsets=num_subsets, block_size=block_size,
        start=start, count=count,
    )

    def step(invalid, i):
        counts, bad = block_table(blocks, i, num_subsets, num_categories)
        return invalid + bad, counts.astype(jnp.int32)

    invalid, tables = jax.lax.scan(
        step, device_local(jnp.zeros((), jnp.int32), device_axes), jnp.arange(blocks.num_blocks)
    )
    counts = unblock(tables, count)  # [stimuli, subsets, categories]
    return jnp.swapaxes(counts, 0, 1), invalid  # [subsets, stimuli, categories]


@partial(jax.jit, static_argnames=STATIC + ("wide",))
def block_stats(
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
    blocks = make_blocks(
        preds, rater_model, rater_subset,
        num_categories=num_categories, num_subsets=num_subsets, block_size=block_size,
        start=start, count=count,
    )

    def step(carry, i):
        totals, invalid = carry
        counts, bad = block_table(blocks, i, num_subsets, num_categories)
        counts = counts.astype(jnp.int32)  # [B, S, C]
        return (totals + counts.sum(0), invalid + bad), (counts.sum(-1), sum_squares(counts, wide))

    carry = (jnp.zeros((num_subsets, num_categories), jnp.int32), jnp.zeros((), jnp.int32))
    carry = device_local(carry, device_axes)
    (totals, invalid), (n, sq) = jax.lax.scan(step, carry, jnp.arange(blocks.num_blocks))
    return AgreementStats(unblock(n, count).T, unblock(sq, count).T, totals), invalid


# A module-level object, so that the cache of compiled executables recognises it.
wide_block_stats = partial(block_stats, wide=True)


@partial(jax.jit, static_argnames=STATIC)
def sparse_stats(
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
    """:func:`block_stats` without dense passes over each block's ``[B, S, C]`` table.

    Work per rating instead of per table cell: ``sum_j T_ij**2`` is the sum, over the ratings,
    of the count in each rating's own cell, so a block's table is filled by a scatter, read back
    by a gather at the same cells and cleared by a scatter there. Cheaper than the dense kernel
    when subsets x categories is large against the number of ratings (many subsets).
    Needs fewer than 4096 raters (per-subset sums are exact float32 matmuls), so it is always
    narrow.
    """
    count = preds.shape[1] if count is None else count
    blocks = make_blocks(
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
    totals = model_totals(piece, num_categories)
    totals = totals if rater_model is None else totals[rater_model]
    totals = jnp.zeros((num_subsets, num_categories), jnp.int32).at[rater_subset].add(totals)
    n, sq = (unblock(jnp.swapaxes(x, 1, 2), count).T for x in (n, sq))  # [blocks, S, B] -> [S, count]
    return AgreementStats(n, sq, totals), invalid


# Raters compared at once in the one-hot kernel's inner loop.
ONEHOT_GROUP = 8


@partial(jax.jit, static_argnames=STATIC)
def onehot_stats(
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
    """:func:`block_stats` for one subset without a scatter: a block's counts ``[C, B]`` are
    sums over its raters of ``rating == category``, elementwise work that vectorises (int16
    counts: fewer than 2**15 raters). Costs ``raters x categories`` per stimulus, so it pays
    for few categories only."""
    assert num_subsets == 1  # every rater is in the one subset
    count = preds.shape[1] if count is None else count
    blocks = make_blocks(
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
        pad = (-num_raters) % ONEHOT_GROUP
        if pad:
            block = jnp.pad(block, ((0, pad), (0, 0)), constant_values=-1)
        groups = block.reshape(-1, ONEHOT_GROUP, block_size)

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
    return AgreementStats(unblock(n, count)[None], unblock(sq, count)[None], totals[None]), invalid


def model_totals(
    preds: Int[Array, "models stimuli"], num_categories: int
) -> Int[Array, "models {num_categories}"]:
    """How often each model predicted each category (one scatter into a small table)."""
    num_models = preds.shape[0]
    answered = (preds >= 0) & (preds < num_categories)
    flat = jnp.arange(num_models, dtype=jnp.int32)[:, None] * num_categories + preds
    flat = jnp.where(answered, flat, num_models * num_categories)
    totals = jnp.zeros((num_models * num_categories,), jnp.int32).at[flat.ravel()].add(1, mode="drop")
    return totals.reshape(num_models, num_categories)
