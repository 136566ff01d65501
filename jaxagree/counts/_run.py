"""The count kernels run: one executable per shape (on one device, or split over a mesh), stimulus
pieces at once on the CPU's cores, chunks whose totals fit int32; the public entry points."""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import no_type_check

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec
from jaxtyping import Array, Bool, Int

from jaxagree._typing import AnyArray
from jaxagree.counts import _plan
from jaxagree.counts._checks import Raters, check_invalid, check_predictions, raters_from_mask
from jaxagree.counts._kernels import dense_counts, stimuli_per_block
from jaxagree.counts._plan import StatsPlan, choose_plan
from jaxagree.stats import INT32_LIMIT, AgreementStats, merge_stats


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
    stats = kernel is not dense_counts
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


def _count(kernel, preds: jax.Array, raters: Raters, num_categories: int, mesh: Mesh | None, block_size: int):
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
        _POOL = ThreadPoolExecutor(max_workers=_plan.num_cores(), thread_name_prefix="jaxagree-counts")
    return _POOL


def _count_pieces(plan: StatsPlan, preds: jax.Array, raters: Raters, num_categories: int):
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
    raters = raters_from_mask(model_mask, preds.shape[0])
    devices = 1 if mesh is None else mesh.devices.size
    size = stimuli_per_block(-(-preds.shape[1] // devices), raters.num_subsets * num_categories)
    counts, invalid = _count(dense_counts, preds, raters, num_categories, mesh, size)
    check_invalid(invalid, preds, num_categories)
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
    raters = raters_from_mask(model_mask, preds.shape[0])
    num_raters = raters.subset.shape[0]
    chunk = max(1, INT32_LIMIT // num_raters)
    if num_stimuli > chunk:
        return _chunked_stats(preds, model_mask, num_categories, mesh, chunk)
    plan = choose_plan(preds, raters, num_categories, mesh)
    if plan.pieces > 1:
        stats, invalid = _count_pieces(plan, preds, raters, num_categories)
    else:
        stats, invalid = _count(plan.kernel, preds, raters, num_categories, mesh, plan.block_size)
    check_invalid(invalid, preds, num_categories)
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


