"""The sufficient statistics of a count table for agreement and Fleiss' kappa
(:class:`AgreementStats`): from a dense table (checked, narrow or wide), and merged across
stimulus batches. :mod:`jaxagree.counts` computes them straight from predictions.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple, no_type_check

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, Integer, Real

from jaxagree._checks import require_integer
from jaxagree._typing import AnyArray

# Counts, raters and category totals are int32 on the device; beyond this they are split or widened.
INT32_LIMIT = 2**31 - 1
# From this many raters on one stimulus, sum_j T_ij**2 (up to n_i**2) can exceed int32
# (46,341**2 > 2**31 - 1) and AgreementStats switch to float32 sums of squares ("wide").
WIDE_RATERS = 46_341


class AgreementStats(NamedTuple):
    """Sufficient statistics of a count table for agreement and Fleiss' kappa.

    Mergeable over stimulus batches: concatenate the per-stimulus fields along the stimulus axis
    and add the category totals (this is how sharded and chunked runs combine).

    Two representations of ``sum_squares``, chosen before counting (static under ``jit``):

    * narrow, ``int32``: when no stimulus can have 46,341 raters or more (fewer models, or a
      count table whose rows all sum below that). Exact, and agreement and kappa round once.
    * wide, ``float32``: otherwise, where ``sum_j T_ij**2`` may exceed the int32 range. Rounded
      to about 1e-7 relative, so agreement keeps about 1e-7 absolute accuracy, and kappa about
      1e-7 over the chance disagreement ``1 - P_e``.

    :func:`~jaxagree.agreement_stats` goes wide when a subset has 46,341 models or more, :func:`table_stats`
    when a row of the table sums to 46,341 or more (it checks the values). Merging narrow and wide
    statistics gives wide ones. Up to ``2**31 - 1`` raters per stimulus are supported.

    Attributes:
      n_raters: ``int32 [*subsets, stimuli]``, models that responded to each stimulus (``n_i``).
      sum_squares: ``int32`` (narrow) or ``float32`` (wide) ``[*subsets, stimuli]``, ``sum_j T_ij**2``.
      category_totals: ``int32 [*subsets, categories]``, ``sum_i T_ij`` (int64 NumPy when the total
        number of ratings exceeds the int32 range).
    """

    n_raters: Int[Array, "*subsets stimuli"]
    sum_squares: Real[Array, "*subsets stimuli"]
    category_totals: Int[AnyArray, "*subsets categories"]


def sum_squares(counts: Int[Array, "*batch categories"], wide: bool) -> Real[Array, "*batch"]:
    """``sum_j T_j**2``: exact int32 when narrow, float32 when wide (see :class:`AgreementStats`)."""
    if wide:
        counts = counts.astype(jnp.float32)
    return (counts * counts).sum(-1)


def merge_stats(parts: list[AgreementStats]) -> AgreementStats:
    """Combine statistics of consecutive stimulus batches (same models and categories); wide if
    any part is."""
    if not parts:
        raise ValueError("merge_stats needs at least one AgreementStats")
    return AgreementStats(
        jnp.concatenate([p.n_raters for p in parts], axis=-1),
        jnp.concatenate([p.sum_squares for p in parts], axis=-1),
        np.sum([np.asarray(p.category_totals, np.int64) for p in parts], axis=0),
    )


@partial(jax.jit, static_argnames="wide")
def stats_from_counts(counts: Integer[Array, "*subsets stimuli categories"], *, wide: bool = False) -> AgreementStats:
    """:class:`AgreementStats` of a dense count table, narrow or ``wide``; the table's row and
    column sums must fit int32 (not checked here: :func:`table_stats` checks and chooses)."""
    counts = counts.astype(jnp.int32)
    return AgreementStats(counts.sum(-1), sum_squares(counts, wide), counts.sum(-2))


@jax.jit
def _table_limits(counts: Integer[Array, "*subsets stimuli categories"]):
    """Smallest and largest counts, most raters of a stimulus, all ratings (float32): what table
    statistics need to be known right, in one pass that is cheaper than the statistics', so the
    caller waits on it alone. Row sums are int32, exact unless ``largest * categories`` exceeds
    int32 (then see :func:`_float_raters`)."""
    raters = counts.astype(jnp.int32).sum(-1)
    return counts.min(), counts.max(), raters.max(), raters.astype(jnp.float32).sum()


@jax.jit
def _float_raters(counts: Integer[Array, "*subsets stimuli categories"]) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """Most raters of a stimulus and all ratings from float32 row sums, which cannot wrap."""
    raters = counts.astype(jnp.float32).sum(-1)
    return raters.max(), raters.sum()


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def table_stats(counts: Int[AnyArray, "*subsets stimuli categories"]) -> AgreementStats:
    """Validate a dense count table and return its :class:`AgreementStats`, wide where a row sums
    to 46,341 raters or more; category totals are int64 NumPy beyond the int32 range.

    Raises ValueError for a negative count or a stimulus with more than ``2**31 - 1`` raters.
    Needs concrete values (under ``jit`` see ``jaxagree.agreement``).
    """
    counts = jnp.asarray(check_counts(counts))  # moved to the device once
    smallest, largest, most_raters, ratings = (int(x) for x in jax.device_get(_table_limits(counts)))
    if smallest < 0:
        bad = np.argwhere(np.asarray(counts) < 0)[0]
        raise ValueError(f"counts must be non-negative; counts[{', '.join(map(str, bad))}] < 0")
    if largest * counts.shape[-1] > INT32_LIMIT:  # int32 row sums may have wrapped
        most_raters, ratings = (int(x) for x in jax.device_get(_float_raters(counts)))
        if most_raters >= 2**30:  # float32 sums round: near the int32 limit, decide exactly
            raters = np.asarray(counts, np.int64).sum(-1)
            _check_raters(raters)
            most_raters = int(raters.max())
    stats = stats_from_counts(counts, wide=most_raters >= WIDE_RATERS)
    if ratings >= 2**30:  # a category total may have wrapped: sum exactly
        totals = np.asarray(counts, np.int64).sum(-2)
        if totals.max() > INT32_LIMIT:
            stats = stats._replace(category_totals=totals)
    return stats


def _check_raters(raters: np.ndarray) -> None:
    """Raise naming the first stimulus (row of the table) with more raters than int32 holds."""
    if raters.max() > INT32_LIMIT:
        row = np.unravel_index(int(np.argmax(raters > INT32_LIMIT)), raters.shape)
        raise ValueError(
            f"counts[{', '.join(map(str, row))}, :] sums to {int(raters[row]):,} raters; at most "
            f"{INT32_LIMIT:,} (2**31 - 1) raters per stimulus are supported"
        )


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def check_counts(counts: AnyArray) -> AnyArray:
    """Check a dense count table's shape and dtype ``[..., stimuli, categories]``; return it as an
    array whose values the device holds as they are (a host table of a wider integer type is
    checked first, as it would wrap in int32)."""
    if not hasattr(counts, "dtype"):
        counts = np.asarray(counts)
    require_integer("counts", counts)
    if counts.ndim < 2:
        raise ValueError(
            f"counts must have shape [..., stimuli, categories], got shape {tuple(counts.shape)}"
        )
    if counts.shape[-2] < 1 or counts.shape[-1] < 1:
        raise ValueError(f"counts is empty (shape {tuple(counts.shape)})")
    if isinstance(counts, np.ndarray) and np.iinfo(counts.dtype).max > INT32_LIMIT:
        if counts.min() < 0:
            bad = np.argwhere(counts < 0)[0]
            raise ValueError(f"counts must be non-negative; counts[{', '.join(map(str, bad))}] < 0")
        if counts.max() > INT32_LIMIT:  # before the row sums, which could wrap in int64
            bad = np.argwhere(counts > INT32_LIMIT)[0]
            raise ValueError(
                f"counts[{', '.join(map(str, bad))}] = {int(counts[tuple(bad)]):,} raters; at most "
                f"{INT32_LIMIT:,} (2**31 - 1) raters per stimulus are supported"
            )
        counts = counts.astype(np.int32)  # exact now; row sums are checked with the other values
    return counts


__all__ = ["INT32_LIMIT", "WIDE_RATERS", "AgreementStats", "check_counts", "merge_stats", "stats_from_counts",
           "sum_squares", "table_stats"]
