"""Percentile bootstrap intervals over stimuli for Fleiss' kappa (over all stimuli and over the
contrastive ones, per model subset) and for error consistency, computed in ``jit``.

A replicate draws the ``S`` stimuli with replacement; ``w_i`` counts the draws of stimulus ``i``
(the draws of :func:`jaxagree.bootstrap_indices`: with one seed and stimulus count, this and
:func:`jaxagree.cka_bootstrap` resample the same stimuli). Every quantity is a function of
weighted sums, so no resampled prediction table is ever built:

* kappa's observed disagreement ``sum_i w_i D_i / sum_i w_i [n_i >= 2]`` with
  ``D_i = sum_j T_ij (n_i - T_ij) / (n_i (n_i - 1))``, and its chance disagreement
  ``sum_j t_j (N - t_j) / N**2`` from the weighted category totals ``t = sum_i w_i T_i``
  (``N = sum_j t_j``), the conventions of :func:`jaxagree.fleiss_kappa`;
* a stimulus drawn ``w > 1`` times stands for ``w`` distinct stimuli of a new sample, whose
  ratings would pair across stimuli at the chance rate; pairs of ratings on two copies of one
  draw agree as often as its own raters do and would inflate the chance agreement (the bootstrap
  would centre kappa below the estimate: by about a third of the interval's half-width over 40
  contrastive stimuli). So the chance term leaves them out:
  ``(sum_j t_j (N - t_j) - sum_i (w_i**2 - w_i) A_i) / (N**2 - sum_i (w_i**2 - w_i) n_i**2)`` with
  ``A_i = sum_j T_ij (n_i - T_ij)``: Fleiss' term exactly when no stimulus is drawn twice;
* the contrastive stimuli are selected again in each replicate: the resample's ``k``
  lowest-agreement draws. A stimulus's agreement does not depend on which others were drawn, so
  they are the first draws in the stimuli's fixed agreement order (ties to the lower index, as
  :func:`jaxagree.contrastive_stimuli`): in that order ``w'_p = min(w_p, max(0, k - sum_{q<p} w_q))``.
  Repeated draws of one stimulus count as separate stimuli, as in a resampled table. A replicate
  with fewer than ``k`` draws that have an agreement value takes them all;
* error consistency from ``sum_i w_i c_ai c_bi`` and ``sum_i w_i c_ai`` over the labelled stimuli
  (``c``: right or not), see :func:`jaxagree.agreement.consistency_of_counts`.
"""

from __future__ import annotations

import math
import warnings
from functools import partial
from typing import NamedTuple, no_type_check

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, Real

from jaxagree._checks import require_confidence, require_ndim, require_positive_int, require_seed
from jaxagree._typing import AnyArray
from jaxagree.accuracy import check_labels
from jaxagree.agreement import (
    KappaMethod,
    consistency_of_counts,
    consistency_of_pair_counts,
    pair_terms,
    per_stimulus_agreement,
)
from jaxagree.cka.resample import bootstrap_indices, bootstrap_weights
from jaxagree.counts import agreement_stats, check_predictions, count_predictions

DEFAULT_MAX_BYTES = 1 << 30
_HIGHEST = jax.lax.Precision.HIGHEST


class Interval(NamedTuple):
    """A statistic on the stimuli as given, and its percentile bootstrap interval.

    Attributes:
      estimate: ``float32 [...]`` on the stimuli as given.
      low, high: ``float32 [...]`` the interval's ends (replicates where the statistic is
        undefined, NaN, are left out; NaN when all are).
      replicates: ``float32 [replicates, ...]``.
    """

    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray
    replicates: np.ndarray


class AgreementBootstrap(NamedTuple):
    """Results of :func:`agreement_bootstrap`.

    Attributes:
      kappa_all: :class:`Interval` ``[subsets]``, Fleiss' kappa over all stimuli.
      kappa_contrastive: :class:`Interval` ``[subsets]``, over each subset's ``k`` contrastive
        stimuli, selected again in every replicate.
      error_consistency: :class:`Interval` ``[models, models]`` over the labelled stimuli, or
        None without labels.
      k: contrastive stimuli per subset.
      num_bootstrap: replicates.
      confidence: the intervals' coverage.
    """

    kappa_all: Interval
    kappa_contrastive: Interval
    error_consistency: Interval | None
    k: int
    num_bootstrap: int
    confidence: float


class _Subsets(NamedTuple):
    """What every replicate needs of the model subsets, computed once."""

    disagreement: Float[Array, "subsets stimuli"]  # D_i, 0 where fewer than 2 raters
    apart: Float[Array, "subsets stimuli"]  # A_i, ordered pairs of ratings in different categories
    pairs: Float[Array, "subsets stimuli"]  # n_i**2, ordered pairs of ratings
    rated: Float[Array, "subsets stimuli"]  # 1 where 2 raters or more
    order: Int[Array, "subsets stimuli"]  # stimuli by agreement, lowest first, undefined last


def percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The percentile interval over axis 0, NaN replicates left out (NaN where all are)."""
    tails = 100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2
    with warnings.catch_warnings():  # an all-NaN cell is NaN, which is what we report
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanpercentile(np.asarray(replicates, np.float64), tails, axis=0)
    return low.astype(np.float32), high.astype(np.float32)


@jax.jit
def _subset_terms(
    n: Int[Array, "subsets stimuli"],
    sum_squares: Real[Array, "subsets stimuli"],
    agreement: Float[Array, "subsets stimuli"],
) -> _Subsets:
    rated = n >= 2
    nf = n.astype(jnp.float32)
    apart = pair_terms(n, sum_squares)[1]
    disagreement = jnp.where(rated, apart / jnp.where(rated, nf * (nf - 1.0), 1.0), 0.0)
    key = jnp.where(jnp.isnan(agreement), jnp.inf, agreement)
    order = jnp.argsort(key, axis=-1, stable=True).astype(jnp.int32)
    return _Subsets(disagreement, apart, nf * nf, rated.astype(jnp.float32), order)


class _Sums(NamedTuple):
    """A replicate's weighted sums per subset, from which its kappa follows."""

    disagreement: Float[Array, "*batch"]  # sum w D
    rated: Float[Array, "*batch"]  # sum w [n >= 2]
    totals: Float[Array, "*batch categories"]  # t
    copies_apart: Float[Array, "*batch"]  # sum (w**2 - w) A
    copies_pairs: Float[Array, "*batch"]  # sum (w**2 - w) n**2


@partial(jax.jit, static_argnames="method")
def _kappa_of_sums(sums: _Sums, *, method: KappaMethod) -> Float[Array, "*batch"]:
    rated = sums.rated
    observed = jnp.where(rated > 0, sums.disagreement / jnp.where(rated > 0, rated, 1.0), jnp.nan)
    if method == "fleiss":
        totals = sums.totals
        total = totals.sum(-1)
        pairs = total * total - sums.copies_pairs
        apart = (totals * (total[..., None] - totals)).sum(-1) - sums.copies_apart
        chance = apart / jnp.where(pairs > 0, pairs, 1.0)
    else:
        chance = jnp.full(observed.shape, 1.0 - 1.0 / sums.totals.shape[-1], jnp.float32)
    return jnp.where(chance > 0, 1.0 - observed / jnp.where(chance > 0, chance, 1.0), jnp.nan)


@jax.jit
def _stimulus_sums(
    weights: Int[Array, "replicates *subsets stimuli"],
    disagreement: Float[Array, "subsets stimuli"],
    rated: Float[Array, "subsets stimuli"],
    apart: Float[Array, "subsets stimuli"],
    pairs: Float[Array, "subsets stimuli"],
) -> tuple[Float[Array, "replicates subsets"], ...]:
    """The per-stimulus sums of :class:`_Sums` (all but the totals), for weights that may differ
    per subset (``[replicates, subsets, stimuli]``) or not (``[replicates, stimuli]``)."""
    w = weights.astype(jnp.float32)
    copies = w * (w - 1.0)
    if w.ndim == 2:  # one matmul per sum: no [replicates, subsets, stimuli] intermediate
        return tuple(jnp.matmul(a, b.T, precision=_HIGHEST)
                     for a, b in ((w, disagreement), (w, rated), (copies, apart), (copies, pairs)))
    return (w * disagreement).sum(-1), (w * rated).sum(-1), (copies * apart).sum(-1), (copies * pairs).sum(-1)


@jax.jit
def _weighted_totals(
    weights: Int[Array, "replicates block"], counts: Int[Array, "subsets block categories"]
) -> Float[Array, "replicates subsets categories"]:
    # Exact: a block's weighted counts stay far below 2**24 (see _stimulus_block).
    return jnp.einsum("rb,sbc->rsc", weights.astype(jnp.float32), counts.astype(jnp.float32), precision=_HIGHEST)


@partial(jax.jit, static_argnames=("k", "prefix"))
def _contrastive_weights(
    weights: Int[Array, "replicates stimuli"], subsets: _Subsets, *, k: int, prefix: int
) -> tuple[Int[Array, "replicates subsets {prefix}"], Bool[Array, ""]]:
    """Each replicate's ``k`` lowest-agreement draws per subset, as weights over the first
    ``prefix`` stimuli in agreement order, and whether that prefix held them all (every replicate
    reached ``k`` in it, or it holds every stimulus with an agreement value: those come first)."""
    order = subsets.order[:, :prefix]
    rated = jnp.take_along_axis(subsets.rated, order, -1) > 0
    ordered = jnp.where(rated, weights[:, order], 0)  # [replicates, subsets, prefix]
    before = jnp.cumsum(ordered, axis=-1) - ordered
    chosen = jnp.minimum(ordered, jnp.maximum(0, k - before))
    holds_every_rated = ~rated[:, -1] if prefix < subsets.order.shape[1] else jnp.ones(rated.shape[0], bool)
    return chosen, jnp.all((chosen.sum(-1) >= k) | holds_every_rated[None, :])


@jax.jit
def _ordered_totals(
    chosen: Int[Array, "replicates subsets prefix"], counts: Int[Array, "subsets prefix categories"]
) -> Float[Array, "replicates subsets categories"]:
    return jnp.einsum("rsp,spc->rsc", chosen.astype(jnp.float32), counts.astype(jnp.float32), precision=_HIGHEST)


@jax.jit
def _consistency_replicates(
    weights: Int[Array, "replicates stimuli"], right: Bool[Array, "models stimuli"], labelled: Bool[Array, " stimuli"]
) -> Float[Array, "replicates models models"]:
    w = jnp.where(labelled, weights, 0).astype(jnp.float32)
    r = right.astype(jnp.float32)
    # Weighted rows first, then one matmul per replicate: contracted the other way, XLA would
    # form a [stimuli, models, models] intermediate.
    both = jnp.einsum("rms,ns->rmn", w[:, None, :] * r[None], r, precision=_HIGHEST)
    return consistency_of_counts(both, jnp.matmul(w, r.T, precision=_HIGHEST), w.sum(-1))


@jax.jit
def _consistency_replicates_observed(
    weights: Int[Array, "replicates stimuli"], right: Bool[Array, "models stimuli"], seen: Bool[Array, "models stimuli"]
) -> Float[Array, "replicates models models"]:
    w = weights.astype(jnp.float32)
    o = seen.astype(jnp.float32)
    r = (right & seen).astype(jnp.float32)
    shared = jnp.einsum("rms,ns->rmn", w[:, None, :] * o[None], o, precision=_HIGHEST)
    both = jnp.einsum("rms,ns->rmn", w[:, None, :] * r[None], r, precision=_HIGHEST)
    right_a = jnp.einsum("rms,ns->rmn", w[:, None, :] * r[None], o, precision=_HIGHEST)
    return consistency_of_pair_counts(shared, both, right_a)


def _check_mask(model_mask, num_models: int) -> jax.Array:
    if model_mask is None:
        return jnp.ones((1, num_models), bool)
    mask = np.asarray(model_mask)
    require_ndim("model_mask", mask, 2, "subsets, models")
    if mask.dtype != bool:
        raise ValueError(f"model_mask must be a bool array [subsets, models], got dtype {mask.dtype}")
    if mask.shape[1] != num_models:
        raise ValueError(f"model_mask has {mask.shape[1]} models but predictions has {num_models}")
    small = np.flatnonzero(mask.sum(1) < 2)
    if small.size:
        raise ValueError(f"model_mask row {small[0]} selects {int(mask[small[0]].sum())} model(s); kappa needs 2")
    return jnp.asarray(mask)


def _stimulus_block(num_stimuli: int, num_models: int, cells_per_stimulus: int, max_bytes: int) -> int:
    # Weighted counts of a block are summed in float32: exact while block * models * (largest
    # weight) < 2**24; weights above 8 are vanishingly rare (P(w >= 9) < 1e-6 per stimulus).
    exact = max(1, 2**21 // max(1, num_models))
    return max(1, min(num_stimuli, exact, max_bytes // (8 * max(1, cells_per_stimulus))))


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def agreement_bootstrap(
    preds: Int[AnyArray, "models stimuli"],
    *,
    num_categories: int,
    k: int,
    model_mask: Bool[AnyArray, "subsets models"] | None = None,
    labels: Int[AnyArray, " stimuli"] | None = None,
    num_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    method: KappaMethod = "fleiss",
    max_bytes: int | None = None,
    observed: Bool[AnyArray, "models stimuli"] | None = None,
) -> AgreementBootstrap:
    """Percentile bootstrap intervals over stimuli for Fleiss' kappa over all stimuli and over
    the ``k`` contrastive stimuli (selected again in every replicate), per model subset, and for
    error consistency when labels are given. See the module docstring for how a replicate is
    computed from weighted sums in ``jit``.

    Args:
      preds: ``int [models, stimuli]`` (-1 = no response).
      num_categories: number of categories.
      k: contrastive stimuli per subset (at most the stimuli with an agreement value).
      model_mask: ``bool [subsets, models]``, each row at least 2 models; default all models.
      labels: optional ``int [stimuli]`` (-1 = unlabelled): adds error consistency over the
        labelled stimuli (a missing response counts as wrong).
      num_bootstrap: replicates.
      observed: optional ``bool [models, stimuli]``, whether each model was shown each stimulus:
        error consistency is then over the labelled stimuli both models of a pair were shown, as
        :func:`~jaxagree.error_consistency` with ``observed``.
      seed: the replicates' draws (:func:`jaxagree.bootstrap_indices` with ``jax.random.key(seed)``).
      confidence: coverage of the percentile intervals.
      method: ``"fleiss"`` or ``"randolph"`` chance agreement.
      max_bytes: memory for one step's arrays (default 1 GiB). The replicates' draws
        (``2 x 4 x replicates x stimuli`` bytes) and error consistency's replicates
        (``4 x replicates x models**2``) are held whole besides.

    Cost: the category totals take ``2 x replicates x stimuli x categories x subsets`` FLOPs
    (a matmul), error consistency ``2 x replicates x stimuli x models**2``.
    """
    if method not in ("fleiss", "randolph"):
        raise ValueError(f"method must be 'fleiss' or 'randolph', got {method!r}")
    num_bootstrap = require_positive_int("num_bootstrap", num_bootstrap)
    if num_bootstrap < 2:
        raise ValueError("num_bootstrap must be at least 2 for an interval")
    seed = require_seed(seed)
    confidence = require_confidence(confidence)
    max_bytes = DEFAULT_MAX_BYTES if max_bytes is None else require_positive_int("max_bytes", max_bytes)
    k = require_positive_int("k", k)
    preds = check_predictions(preds, num_categories)
    num_models, num_stimuli = preds.shape
    mask = _check_mask(model_mask, num_models)
    if labels is not None:
        labels = check_labels(labels, num_stimuli, num_categories)
        ec_bytes = 4 * num_bootstrap * num_models * num_models
        if ec_bytes > 4 * max_bytes:
            raise ValueError(
                f"error consistency's {num_bootstrap} replicates of {num_models} x {num_models} models need "
                f"{ec_bytes / 2**30:.1f} GiB; raise max_bytes, use fewer replicates, or leave labels out")
    stats = agreement_stats(preds, num_categories=num_categories, model_mask=mask)
    agreement = per_stimulus_agreement(stats)
    defined = np.asarray(jnp.sum(~jnp.isnan(agreement), -1))
    if k > defined.min():
        row = int(np.argmin(defined))
        raise ValueError(f"k={k} is larger than the {int(defined[row])} stimuli with an agreement value in "
                         f"subset {row}; stimuli with fewer than 2 raters have none")
    subsets = _subset_terms(stats.n_raters, stats.sum_squares, agreement)
    weights = bootstrap_weights(bootstrap_indices(jax.random.key(int(seed)), num_stimuli, num_bootstrap), num_stimuli)
    # The stimuli as given are one more replicate, all weights 1: estimate and replicates share one code path.
    weights = jnp.concatenate([jnp.ones((1, num_stimuli), jnp.int32), weights])

    num_subsets = mask.shape[0]
    block = _stimulus_block(num_stimuli, num_models, num_subsets * num_categories, max_bytes)
    totals = np.zeros((num_bootstrap + 1, num_subsets, num_categories))
    for start in range(0, num_stimuli, block):
        counts = count_predictions(preds[:, start:start + block], num_categories=num_categories, model_mask=mask)
        totals += np.asarray(_weighted_totals(weights[:, start:start + block], counts), np.float64)
    disagreement, rated, copies_apart, copies_pairs = _stimulus_sums(
        weights, subsets.disagreement, subsets.rated, subsets.apart, subsets.pairs)
    sums = _Sums(disagreement, rated, jnp.asarray(totals, jnp.float32), copies_apart, copies_pairs)
    kappa_all = np.asarray(_kappa_of_sums(sums, method=method))

    kappa_contrastive = _contrastive_kappas(preds, mask, subsets, weights, k, num_categories, method, max_bytes)
    consistency = None
    if labels is not None:
        consistency = _interval(_consistency(preds, labels, weights, max_bytes, observed), confidence)
    return AgreementBootstrap(_interval(kappa_all, confidence), _interval(kappa_contrastive, confidence),
                              consistency, k, num_bootstrap, confidence)


def _interval(values: np.ndarray, confidence: float) -> Interval:
    """Row 0 is the estimate, the rest the replicates."""
    values = np.asarray(values, np.float32)
    low, high = percentile_interval(values[1:], confidence)
    return Interval(values[0], low, high, values[1:])


def _contrastive_kappas(preds, mask, subsets: _Subsets, weights, k: int, num_categories: int, method,
                        max_bytes: int) -> np.ndarray:
    """``[replicates, subsets]`` kappa over each replicate's own contrastive draws."""
    num_replicates, num_stimuli = weights.shape
    num_subsets = mask.shape[0]
    # A replicate reaches k draws within about k + a few sqrt(k) stimuli of the agreement order:
    # only that prefix is gathered and counted, and it doubles in the rare chunk that needs more.
    prefix = min(num_stimuli, k + 8 * math.isqrt(k) + 64)
    chunk = max(1, min(num_replicates, max_bytes // (8 * num_subsets * prefix)))
    counts = _ordered_counts(preds, mask, subsets.order, prefix, num_categories)
    result = np.empty((num_replicates, num_subsets), np.float32)
    for start in range(0, num_replicates, chunk):
        chosen, complete = _contrastive_weights(weights[start:start + chunk], subsets, k=k, prefix=prefix)
        while not bool(complete):
            prefix = min(num_stimuli, 2 * prefix)
            counts = _ordered_counts(preds, mask, subsets.order, prefix, num_categories)
            chosen, complete = _contrastive_weights(weights[start:start + chunk], subsets, k=k, prefix=prefix)
        ordered = (jnp.take_along_axis(x, subsets.order[:, :prefix], -1)
                   for x in (subsets.disagreement, subsets.rated, subsets.apart, subsets.pairs))
        disagreement, rated, copies_apart, copies_pairs = _stimulus_sums(chosen, *ordered)
        sums = _Sums(disagreement, rated, _ordered_totals(chosen, counts), copies_apart, copies_pairs)
        result[start:start + chunk] = np.asarray(_kappa_of_sums(sums, method=method))
    return result


def _ordered_counts(preds, mask, order, prefix: int, num_categories: int) -> jax.Array:
    """``[subsets, prefix, categories]``: each subset's counts on its ``prefix`` lowest-agreement stimuli."""
    return jnp.stack([
        count_predictions(preds[:, order[s, :prefix]], num_categories=num_categories, model_mask=mask[s:s + 1])[0]
        for s in range(mask.shape[0])
    ])


def _consistency(preds, labels, weights, max_bytes: int, observed=None) -> np.ndarray:
    num_models, num_stimuli = preds.shape
    right = preds == labels[None, :]
    labelled = labels >= 0
    if observed is not None:
        observed = np.asarray(observed)
        if observed.dtype != bool or observed.shape != (num_models, num_stimuli):
            raise ValueError(f"observed must be bool [models, stimuli] {(num_models, num_stimuli)}, got "
                             f"{observed.dtype} {observed.shape}")
        seen = jnp.asarray(observed) & labelled[None, :]
        per_replicate = 4 * (3 * num_stimuli * (num_models + 1) + 4 * num_models * num_models)
        chunk = max(1, min(weights.shape[0], max_bytes // per_replicate))
        return np.concatenate([np.asarray(_consistency_replicates_observed(weights[s:s + chunk], right, seen))
                               for s in range(0, weights.shape[0], chunk)])
    per_replicate = 4 * (num_stimuli * (num_models + 1) + 2 * num_models * num_models)
    chunk = max(1, min(weights.shape[0], max_bytes // per_replicate))
    return np.concatenate([np.asarray(_consistency_replicates(weights[s:s + chunk], right, labelled))
                           for s in range(0, weights.shape[0], chunk)])


__all__ = ["AgreementBootstrap", "Interval", "agreement_bootstrap", "percentile_interval"]
