"""Per-stimulus agreement (Eq. 1), Fleiss' kappa, contrastive stimuli and error consistency.

Agreement and kappa are pure functions of the counts ``T [..., stimuli, categories]``, or of the
:class:`~jaxagree.AgreementStats` that :func:`~jaxagree.agreement_stats` computes directly from
predictions; both give identical results (from 46,341 models on, both are "wide" and agree to
float32 rounding: see :class:`~jaxagree.AgreementStats`).
"""

from __future__ import annotations

from functools import partial
from typing import Literal, no_type_check

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, Integer, Real, Shaped

from jaxagree._checks import is_traced, require_ndim, require_positive_int
from jaxagree._typing import AnyArray
from jaxagree.stats import WIDE_RATERS, AgreementStats, check_counts, stats_from_counts, table_stats

KappaMethod = Literal["fleiss", "randolph"]


def pair_terms(
    n: Int[Array, "*subsets stimuli"], sum_squares: Real[Array, "*subsets stimuli"]
) -> tuple[Float[Array, "*subsets stimuli"], Float[Array, "*subsets stimuli"]]:
    """Ordered rater pairs per stimulus, in float32: those that agree, ``sum_j T_ij (T_ij - 1)
    = S - n``, and those apart, ``sum_j T_ij (n - T_ij) = n**2 - S`` (``S = sum_j T_ij**2``)."""
    nf = n.astype(jnp.float32)
    if jnp.issubdtype(sum_squares.dtype, jnp.floating):  # wide: S is already rounded
        squares = sum_squares.astype(jnp.float32)
        return squares - nf, nf * nf - squares
    # Narrow: both differences are exact in int32 (n * n while n < WIDE_RATERS); one rounding.
    apart = jnp.where(
        n < WIDE_RATERS, (n * n - sum_squares).astype(jnp.float32), nf * nf - sum_squares.astype(jnp.float32)
    )
    return (sum_squares - n).astype(jnp.float32), apart


@jax.jit
def _traced_table_terms(counts: Integer[Array, "*subsets stimuli categories"]):
    """(n, agreeing, apart, float32 category totals) of a count table inside ``jit``, where
    :func:`~jaxagree.stats.table_stats` cannot look at the values to choose: narrow and wide
    terms are both computed and chosen per stimulus, so the results equal those outside ``jit``.
    A stimulus with ``2**31`` raters or more, which outside ``jit`` raises, gives NaN."""
    raters = counts.astype(jnp.float32).sum(-1)  # cannot wrap, and exact below 2**24
    narrow = stats_from_counts(counts)
    n = narrow.n_raters
    agreeing, apart = pair_terms(n, narrow.sum_squares)
    wide_agreeing, wide_apart = pair_terms(n, stats_from_counts(counts, wide=True).sum_squares)
    wide = raters >= WIDE_RATERS
    # An int32 sum beyond 2**31 - 1 wraps by a multiple of 2**32: far from the float32 sum.
    fits = (n >= 0) & (jnp.abs(raters - n.astype(jnp.float32)) <= 0.25 * raters)
    agreeing = jnp.where(fits, jnp.where(wide, wide_agreeing, agreeing), jnp.nan)
    apart = jnp.where(fits, jnp.where(wide, wide_apart, apart), jnp.nan)
    n = jnp.where(fits, n, 2)  # a wrapped count must not drop the stimulus from kappa's mean
    float_totals = counts.astype(jnp.float32).sum(-2)
    totals = jnp.where(float_totals < 2.0**30, narrow.category_totals.astype(jnp.float32), float_totals)
    return n, agreeing, apart, totals


def _agreement_of(
    n: Int[Array, "*subsets stimuli"], agreeing: Float[Array, "*subsets stimuli"]
) -> Float[Array, "*subsets stimuli"]:
    nf = n.astype(jnp.float32)
    return jnp.where(n >= 2, agreeing / (nf * (nf - 1.0)), jnp.nan)


@jax.jit
def _agreement(
    n: Int[Array, "*subsets stimuli"], sum_squares: Real[Array, "*subsets stimuli"]
) -> Float[Array, "*subsets stimuli"]:
    return _agreement_of(n, pair_terms(n, sum_squares)[0])


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def per_stimulus_agreement(
    counts: Int[AnyArray, "*subsets stimuli categories"] | AgreementStats,
) -> Float[Array, "*subsets stimuli"]:
    """Eq. 1: the share of ordered model pairs that agree on each stimulus.

    ``p_i = (sum_j T_ij**2 - n_i) / (n_i (n_i - 1))`` with ``n_i = sum_j T_ij``, in ``[0, 1]``.

    Args:
      counts: ``int [..., stimuli, categories]`` count table, or :class:`AgreementStats`. Up to
        ``2**31 - 1`` raters per stimulus (see :class:`AgreementStats` for the accuracy from
        46,341 raters on).

    Returns:
      ``float32 [..., stimuli]``; NaN where fewer than 2 models responded.
    """
    if isinstance(counts, AgreementStats):
        return _agreement(counts.n_raters, counts.sum_squares)
    if is_traced(counts):
        n, agreeing, _, _ = _traced_table_terms(check_counts(counts))
        return _agreement_of(n, agreeing)
    stats = table_stats(counts)
    return _agreement(stats.n_raters, stats.sum_squares)


def _accurate_mean(
    x: Float[Array, "*batch n"], valid: Bool[Array, "*batch n"]
) -> Float[Array, "*batch"]:
    """Mean over the last axis of ``x`` where ``valid``, summed in two levels for float32."""
    width = 256
    pad = (-x.shape[-1]) % width
    widths = [(0, 0)] * (x.ndim - 1) + [(0, pad)]
    values = jnp.pad(jnp.where(valid, x, 0.0), widths).reshape(*x.shape[:-1], -1, width)
    total = values.sum(-1).sum(-1)
    count = valid.sum(-1)
    return jnp.where(count > 0, total / jnp.maximum(count, 1).astype(jnp.float32), jnp.nan)


@partial(jax.jit, static_argnames="method")
def _kappa(
    n: Int[Array, "*subsets stimuli"],
    sum_squares: Real[Array, "*subsets stimuli"],
    category_totals: Shaped[Array, "*subsets categories"],
    *,
    method: KappaMethod,
) -> Float[Array, "*subsets"]:
    return _kappa_of(n, pair_terms(n, sum_squares)[1], category_totals, method=method)


@partial(jax.jit, static_argnames="method")
def _kappa_of(
    n: Int[Array, "*subsets stimuli"],
    pairs_apart: Float[Array, "*subsets stimuli"],
    category_totals: Shaped[Array, "*subsets categories"],
    *,
    method: KappaMethod,
) -> Float[Array, "*subsets"]:
    # kappa = 1 - (1 - P_bar) / (1 - P_e), with both disagreements summed from non-negative
    # terms: near kappa = 0, P_bar and P_e are close and (P_bar - P_e) would cancel in float32.
    rated = n >= 2
    nf = n.astype(jnp.float32)
    disagreement = _accurate_mean(pairs_apart / jnp.where(rated, nf * (nf - 1.0), 1.0), rated)
    if method == "fleiss":
        totals = category_totals.astype(jnp.float32)
        total = totals.sum(-1, keepdims=True)
        chance_disagreement = (totals * (total - totals)).sum(-1) / (total[..., 0] * total[..., 0])
    else:
        num_categories = category_totals.shape[-1]
        chance_disagreement = jnp.full(disagreement.shape, 1.0 - 1.0 / num_categories, jnp.float32)
    # Every rating in one category: chance agreement is 1 and kappa is undefined.
    return jnp.where(chance_disagreement > 0, 1.0 - disagreement / chance_disagreement, jnp.nan)


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def fleiss_kappa(
    counts: Int[AnyArray, "*subsets stimuli categories"] | AgreementStats,
    *,
    method: KappaMethod = "fleiss",
) -> Float[Array, "*subsets"]:
    """Fleiss' kappa (Fleiss 1971) of a count table; raters may vary per stimulus.

    ``kappa = (P_bar - P_e) / (1 - P_e)``. ``method="fleiss"`` uses ``P_e = sum_j p_j**2``;
    ``method="randolph"`` uses the free-marginal ``P_e = 1 / categories`` (Randolph 2005). With the
    same number of raters on every stimulus this equals statsmodels' ``fleiss_kappa``.

    When the raters vary per stimulus (models that gave no response), this follows the paper:
    ``P_bar`` is the plain mean of Eq. 1 over the stimuli with at least 2 raters (each stimulus
    weighs the same, whatever its raters), and the category shares pool every rating,
    ``p_j = sum_i T_ij / sum_i n_i``, those of stimuli with a single rater included. Other
    conventions (``P_bar`` weighted by rater pairs, ``p_j`` as a mean of per-stimulus shares)
    give other values.

    Args:
      counts: ``int [..., stimuli, categories]`` count table, or :class:`AgreementStats`.
      method: ``"fleiss"`` (default) or ``"randolph"``.

    Returns:
      ``float32 [...]``; NaN when no stimulus has 2 raters or all ratings fall in one category.
    """
    if method not in ("fleiss", "randolph"):
        raise ValueError(f"method must be 'fleiss' or 'randolph', got {method!r}")
    if not isinstance(counts, AgreementStats) and is_traced(counts):
        n, _, apart, totals = _traced_table_terms(check_counts(counts))
        return _kappa_of(n, apart, totals, method=method)
    stats = counts if isinstance(counts, AgreementStats) else table_stats(counts)
    totals = stats.category_totals
    if isinstance(totals, np.ndarray):  # int64 totals of a merged run beyond the int32 range
        totals = totals.astype(np.float32)
    return _kappa(stats.n_raters, stats.sum_squares, totals, method=method)


@partial(jax.jit, static_argnames="k")
def _lowest(agreement: Float[Array, "*subsets stimuli"], k: int) -> Int[Array, "*subsets {k}"]:
    # top_k keeps the lower index first among equal values; NaN becomes the largest value.
    key = -jnp.where(jnp.isnan(agreement), jnp.inf, agreement)
    return jax.lax.top_k(key, k)[1].astype(jnp.int32)


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def contrastive_stimuli(
    agreement: Float[AnyArray, "*subsets stimuli"], k: int
) -> Int[Array, "*subsets k"]:
    """Indices of the ``k`` lowest-agreement stimuli, lowest first; ties go to the lower index.

    Stimuli whose agreement is NaN (fewer than 2 raters) are never selected.

    Args:
      agreement: ``float [..., stimuli]`` from :func:`per_stimulus_agreement`.
      k: how many stimuli to select per row (static).

    Returns:
      ``int32 [..., k]``.
    """
    k = require_positive_int("k", k)
    agreement = agreement if hasattr(agreement, "dtype") else np.asarray(agreement)
    if agreement.ndim < 1:
        raise ValueError("agreement must have a stimulus axis, got a scalar")
    if not jnp.issubdtype(agreement.dtype, jnp.floating):
        raise ValueError(f"agreement must be a float array, got dtype {agreement.dtype}")
    if not is_traced(agreement):
        defined = np.asarray(jnp.sum(~jnp.isnan(jnp.asarray(agreement)), axis=-1)).reshape(-1)
        if k > defined.min():
            row = int(np.argmin(defined))
            where = f" (row {row})" if defined.size > 1 else ""
            raise ValueError(
                f"k={k} is larger than the {int(defined[row])} stimuli with an agreement value"
                f"{where}; stimuli with fewer than 2 raters have none"
            )
    elif k > agreement.shape[-1]:
        raise ValueError(f"k={k} is larger than the number of stimuli ({agreement.shape[-1]})")
    return _lowest(jnp.asarray(agreement, jnp.float32), k)


def consistency_of_counts(
    both_right: Float[Array, "*batch models models"],
    n_right: Float[Array, "*batch models"],
    num_stimuli: Float[Array, "*batch"] | float,
) -> Float[Array, "*batch models models"]:
    """Error consistency from counts: stimuli both models of a pair get right, each model's right
    answers, and the stimuli (weighted counts of a bootstrap replicate too)."""
    r1, r2 = n_right[..., :, None], n_right[..., None, :]
    total = jnp.asarray(num_stimuli, jnp.float32)[..., None, None]
    # kappa = 1 - (1 - c_obs) / (1 - c_exp); times N**2 both disagreements are sums of
    # non-negative counts, so nothing cancels in float32 when kappa is near 0.
    disagree = r1 + r2 - 2.0 * both_right  # stimuli exactly one of the two gets right
    chance = r1 * (total - r2) + r2 * (total - r1)
    return jnp.where(chance > 0, 1.0 - total * disagree / jnp.where(chance > 0, chance, 1.0), jnp.nan)


@jax.jit
def _error_consistency(correct: Bool[Array, "models stimuli"]) -> Float[Array, "models models"]:
    right = correct.astype(jnp.float32)
    # Counts, exact in float32 (and TF32: 0/1 inputs) up to 2**24 stimuli.
    both_right = jnp.matmul(right, right.T, precision=jax.lax.Precision.HIGHEST)
    return consistency_of_counts(both_right, right.sum(1), float(right.shape[1]))


@jax.jit
def _error_consistency_observed(
    correct: Bool[Array, "models stimuli"], observed: Bool[Array, "models stimuli"]
) -> Float[Array, "models models"]:
    seen = observed.astype(jnp.float32)
    right = (correct & observed).astype(jnp.float32)
    highest = jax.lax.Precision.HIGHEST
    shared = jnp.matmul(seen, seen.T, precision=highest)  # trials both models did
    both_right = jnp.matmul(right, right.T, precision=highest)
    right_a = jnp.matmul(right, seen.T, precision=highest)  # [a, b]: a right on the trials b did too
    return consistency_of_pair_counts(shared, both_right, right_a)


def consistency_of_pair_counts(
    shared: Float[Array, "*batch models models"],
    both_right: Float[Array, "*batch models models"],
    right_a: Float[Array, "*batch models models"],
) -> Float[Array, "*batch models models"]:
    """Error consistency from per-pair counts over the trials both models of a pair did:
    ``shared[a, b]`` such trials, ``both_right[a, b]`` both right, ``right_a[a, b]`` model ``a``
    right (so ``right_a[b, a]`` is model ``b`` right); weighted counts of a bootstrap replicate too."""
    right_b = jnp.swapaxes(right_a, -1, -2)
    disagree = right_a + right_b - 2.0 * both_right
    chance = right_a * (shared - right_b) + right_b * (shared - right_a)
    return jnp.where(chance > 0, 1.0 - shared * disagree / jnp.where(chance > 0, chance, 1.0), jnp.nan)


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def error_consistency(
    correct: Bool[AnyArray, "models stimuli"], *, observed: Bool[AnyArray, "models stimuli"] | None = None
) -> Float[Array, "models models"]:
    """Error consistency (Geirhos, Meding & Wichmann 2020) of every pair of models at once.

    Cohen's kappa on trial-by-trial correctness: ``c_obs`` is the share of stimuli both models
    get right or both get wrong, ``c_exp = p1 p2 + (1 - p1)(1 - p2)`` from their accuracies,
    ``kappa = (c_obs - c_exp) / (1 - c_exp)``.

    With ``observed``, each pair is taken over the trials both models did (``observed`` True for
    both), and ``p1``, ``p2`` are the two accuracies on those shared trials: this is
    model-vs-human's ``ErrorConsistency.analysis`` (bethgelab/model-vs-human,
    ``modelvshuman/plotting/analyses.py``), which pairs two observers' data frames trial by trial
    (it asserts they hold the same trials), computes ``p1``, ``p2`` as accuracies over those
    trials, and marks a trial right when ``object_response == category``, so an ``na`` response
    counts as wrong. There, a pair whose ``c_obs`` is 1 gets 1.0; here it gets the formula's value
    (also 1.0) except where ``c_exp == 1``, where the kappa is 0/0 and stays NaN.

    Args:
      correct: ``bool [models, stimuli]``, whether each model was right on each stimulus (a
        missing response counts as wrong).
      observed: optional ``bool [models, stimuli]``, whether each model did the trial at all;
        None: every model did every trial.

    Returns:
      ``float32 [models, models]``, symmetric; NaN for pairs where ``c_exp == 1`` (a model that
      is always right or always wrong paired with one that is the same) or with no shared trial.
    """
    correct = correct if hasattr(correct, "dtype") else np.asarray(correct)
    require_ndim("correct", correct, 2, "models, stimuli")
    if correct.dtype != jnp.bool_:
        raise ValueError(
            f"correct must be a bool array [models, stimuli], got dtype {correct.dtype}; "
            "use predictions == labels"
        )
    if correct.shape[0] < 2:
        raise ValueError(f"correct has {correct.shape[0]} model(s); error consistency needs 2")
    if correct.shape[1] < 1:
        raise ValueError("correct has no stimuli (shape [models, 0])")
    if observed is None:
        return _error_consistency(jnp.asarray(correct))
    observed = observed if hasattr(observed, "dtype") else np.asarray(observed)
    if observed.dtype != jnp.bool_ or observed.shape != correct.shape:
        raise ValueError(f"observed must be a bool array of the shape of correct {tuple(correct.shape)}, "
                         f"got {observed.dtype} {tuple(observed.shape)}")
    return _error_consistency_observed(jnp.asarray(correct), jnp.asarray(observed))


__all__ = [
    "KappaMethod",
    "consistency_of_counts",
    "consistency_of_pair_counts",
    "contrastive_stimuli",
    "error_consistency",
    "fleiss_kappa",
    "per_stimulus_agreement",
]
