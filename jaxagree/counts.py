"""Predictions -> counts: one-hot count aggregation, optionally per model subset.

``T[i, j]`` counts the models that predicted category ``j`` for stimulus ``i`` (the paper's
Eq. 1 notation). Two outputs are offered:

* :func:`count_predictions` returns the dense table ``[stimuli, categories]`` (or one per subset).
* :func:`agreement_stats` returns only what agreement and Fleiss' kappa need (raters and sum of
  squared counts per stimulus, totals per category). It never materialises the dense table, so it
  is several times faster and needs ``O(stimuli + categories)`` memory per subset.

Both process stimuli in blocks small enough for the block's count table to stay in cache; the
block's table is built with one scatter-add of all its ratings. For many subsets a second stats
kernel works per rating rather than per table cell (see :func:`_sparse_stats`); the two give
identical results and the cheaper is chosen from the shapes. Predictions ``-1`` mean "no
response" and are not counted.
"""

from __future__ import annotations

import functools
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


def _block_size(num_stimuli: int, cells_per_stimulus: int) -> int:
    """Stimuli per block: the most whose table fits ``_BLOCK_CELLS``, preferring a divisor of
    ``num_stimuli`` (down to half that size) so that no padded copy of the predictions is made."""
    largest = max(1, min(num_stimuli, _BLOCK_CELLS // max(cells_per_stimulus, 1)))
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


def _blocks(
    preds: Int[Array, "models stimuli"],
    rater_model: Int[Array, " raters"] | None,
    rater_subset: Int[Array, " raters"],
    *,
    num_categories: int,
    num_subsets: int,
    block_size: int,
) -> _Blocks:
    """Pad the stimuli to whole blocks (only if needed) and index each block's ratings."""
    num_stimuli = preds.shape[1]
    num_raters = rater_subset.shape[0]
    cells = num_subsets * num_categories
    pad = (-num_stimuli) % block_size
    if pad:
        preds = jnp.pad(preds, ((0, 0), (0, pad)), constant_values=-1)
    cell_offset = rater_subset[:, None] * num_categories
    row_offset = jnp.arange(block_size, dtype=jnp.int32)[None, :] * cells
    table_size = block_size * cells  # any index at or past the end is dropped by a scatter

    def indices(i):
        block = jax.lax.dynamic_slice_in_dim(preds, i * block_size, block_size, axis=1)
        # Range checking here, in the same pass, spares the caller a pass over the predictions.
        invalid = outside_categories(block, num_categories).sum(dtype=jnp.int32)
        if rater_model is not None:
            block = block[rater_model]
        answered = (block >= 0) & (block < num_categories)
        return jnp.where(answered, row_offset + cell_offset + block, table_size), answered, invalid

    # Counts per cell never exceed the number of raters, so int16 tables are exact below 2**15
    # raters and halve the memory traffic of the dense passes on a CPU. GPUs have no 16-bit
    # atomic add, so they keep int32.
    narrow = num_raters < 2**15 and jax.default_backend() == "cpu"
    table_dtype = jnp.int16 if narrow else jnp.int32
    return _Blocks((num_stimuli + pad) // block_size, indices, table_dtype, table_size)


def _block_table(blocks: _Blocks, i, num_subsets: int, num_categories: int):
    """(count table [B, S, C] of block i, predictions outside [-1, C) in it)."""
    flat, _, invalid = blocks.indices(i)
    counts = jnp.zeros((blocks.table_size,), blocks.table_dtype).at[flat.ravel()].add(1, mode="drop")
    return counts.reshape(-1, num_subsets, num_categories), invalid


_STATIC = ("num_categories", "num_subsets", "block_size", "device_axes")


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
) -> tuple[Int[Array, "{num_subsets} stimuli {num_categories}"], Int[Array, ""]]:
    num_stimuli = preds.shape[1]
    blocks = _blocks(
        preds, rater_model, rater_subset,
        num_categories=num_categories, num_subsets=num_subsets, block_size=block_size,
    )

    def step(invalid, i):
        counts, bad = _block_table(blocks, i, num_subsets, num_categories)
        return invalid + bad, counts.astype(jnp.int32)

    invalid, tables = jax.lax.scan(
        step, device_local(jnp.zeros((), jnp.int32), device_axes), jnp.arange(blocks.num_blocks)
    )
    counts = tables.reshape(-1, num_subsets, num_categories)[:num_stimuli]
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
    wide: bool = False,
) -> tuple[AgreementStats, Int[Array, ""]]:
    """Per block: its count table, then raters, sums of squares (float32 if ``wide``) and
    category totals from it."""
    num_stimuli = preds.shape[1]
    blocks = _blocks(
        preds, rater_model, rater_subset,
        num_categories=num_categories, num_subsets=num_subsets, block_size=block_size,
    )

    def step(carry, i):
        totals, invalid = carry
        counts, bad = _block_table(blocks, i, num_subsets, num_categories)
        counts = counts.astype(jnp.int32)  # [B, S, C]
        return (totals + counts.sum(0), invalid + bad), (counts.sum(-1), sum_squares(counts, wide))

    carry = (jnp.zeros((num_subsets, num_categories), jnp.int32), jnp.zeros((), jnp.int32))
    carry = device_local(carry, device_axes)
    (totals, invalid), (n, sq) = jax.lax.scan(step, carry, jnp.arange(blocks.num_blocks))
    n = n.reshape(-1, num_subsets)[:num_stimuli].T
    sq = sq.reshape(-1, num_subsets)[:num_stimuli].T
    return AgreementStats(n, sq, totals), invalid


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
) -> tuple[AgreementStats, Int[Array, ""]]:
    """:func:`_block_stats` without dense passes over each block's ``[B, S, C]`` table.

    Work per rating instead of per table cell: ``sum_j T_ij**2`` is the sum, over the ratings,
    of the count in each rating's own cell, so a block's table is filled by a scatter, read back
    by a gather at the same cells and cleared by a scatter there. Cheaper than the dense kernel
    when subsets x categories is large against the number of ratings (many subsets).
    Needs fewer than 4096 raters (per-subset sums are exact float32 matmuls), so it is always
    narrow.
    """
    num_stimuli = preds.shape[1]
    blocks = _blocks(
        preds, rater_model, rater_subset,
        num_categories=num_categories, num_subsets=num_subsets, block_size=block_size,
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
    totals = _model_totals(preds, num_categories)
    totals = totals if rater_model is None else totals[rater_model]
    totals = jnp.zeros((num_subsets, num_categories), jnp.int32).at[rater_subset].add(totals)
    n = jnp.swapaxes(n, 0, 1).reshape(num_subsets, -1)[:, :num_stimuli]
    sq = jnp.swapaxes(sq, 0, 1).reshape(num_subsets, -1)[:, :num_stimuli]
    return AgreementStats(n, sq, totals), invalid


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


# Choosing between the stats kernels, from timings on a 2-core CPU: a dense-kernel table cell
# costs about 0.4 ns and a rating about 1 ns; a sparse-kernel rating about 5 ns.
_SPARSE_CELLS_PER_RATER = 10
_SPARSE_MAX_RATERS = 4096


def _stats_kernel(raters: _Raters, num_categories: int):
    """(kernel, table cells per stimulus that sizes its blocks)."""
    num_raters = raters.subset.shape[0]
    cells = raters.num_subsets * num_categories
    if raters.largest >= WIDE_RATERS:
        return _wide_block_stats, cells
    if num_raters < _SPARSE_MAX_RATERS and cells > _SPARSE_CELLS_PER_RATER * num_raters:
        return _sparse_stats, cells // 2  # its table is never swept, so blocks may be larger
    return _block_stats, cells


@functools.lru_cache(maxsize=256)
def _executable(
    kernel, *, num_categories: int, num_subsets: int, block_size: int, num_stimuli: int,
    squeeze: bool, mesh: Mesh | None,
):
    """One jitted function: the kernel on one device, or with the stimuli split over every
    device of ``mesh`` (padded with "no response" to a multiple of the device count), then
    trimmed and squeezed inside the same executable so a large table is never copied again."""
    statics = {"num_categories": num_categories, "num_subsets": num_subsets, "block_size": block_size}
    stats = kernel is not _dense_counts
    if mesh is None:
        body = partial(kernel, **statics, device_axes=None)
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

        body = jax.shard_map(
            summed,
            mesh=mesh,
            in_specs=(per_stimulus, PartitionSpec(), PartitionSpec()),
            out_specs=(values_spec, PartitionSpec()),
        )
        pad = (-num_stimuli) % mesh.devices.size

    def run(preds, rater_model, rater_subset):
        if pad:
            preds = jnp.pad(preds, ((0, 0), (0, pad)), constant_values=-1)
        values, invalid = body(preds, rater_model, rater_subset)
        if stats:
            values = values._replace(
                n_raters=values.n_raters[:, :num_stimuli], sum_squares=values.sum_squares[:, :num_stimuli]
            )
        else:
            values = values[:, :num_stimuli]
        if squeeze:
            values = jax.tree.map(lambda x: x[0], values)
        return values, invalid

    return jax.jit(run)


def _count(kernel, preds: jax.Array, raters: _Raters, num_categories: int, mesh: Mesh | None, cells: int):
    """Run a count kernel; ``cells`` (table cells per stimulus) sizes its blocks."""
    num_stimuli = preds.shape[1]
    devices = 1 if mesh is None else mesh.devices.size
    run = _executable(
        kernel,
        num_categories=num_categories,
        num_subsets=raters.num_subsets,
        block_size=_block_size(-(-num_stimuli // devices), cells),
        num_stimuli=num_stimuli,
        squeeze=raters.squeeze,
        mesh=mesh,
    )
    model = None if raters.model is None else jnp.asarray(raters.model)
    return run(preds, model, jnp.asarray(raters.subset))


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
    cells = raters.num_subsets * num_categories
    counts, invalid = _count(_dense_counts, preds, raters, num_categories, mesh, cells)
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
    kernel, cells = _stats_kernel(raters, num_categories)
    stats, invalid = _count(kernel, preds, raters, num_categories, mesh, cells)
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


__all__ = ["agreement_stats", "check_predictions", "count_predictions"]
