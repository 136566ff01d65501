"""How many stimuli a study needs: the bootstrap interval of an identifiability score over
subsamples of a pilot pool, and the size at which its width reaches a target (issue 12)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import NamedTuple, no_type_check

import numpy as np

from jaxagree._checks import require_confidence, require_positive_int, require_seed
from jaxagree.cka import check_same_stimuli, cka_bootstrap_replicates
from jaxagree.identify import IdentifiabilityScores, encode_groups, identifiability_scores

SCORES = IdentifiabilityScores._fields
# The fewest stimuli a size may have: the debiased estimator needs 4, and fewer tell nothing.
MIN_SIZE = 4
DEFAULT_NUM_SIZES = 6
DEFAULT_SMALLEST = 16  # or 5% of the pool, whichever is larger


class StimulusPlan(NamedTuple):
    """Results of :func:`stimuli_needed`.

    Attributes:
      score: the identifiability score planned for (a field of :class:`~jaxagree.IdentifiabilityScores`).
      width: the interval width asked for.
      needed: the fewest stimuli whose predicted width ``coefficient / sqrt(n)`` is at most
        ``width`` (at least 4); None without a fit (no measured width above 0: every replicate
        NaN, or a score that saturates at every size, when ``reached_at`` answers).
      extrapolated: whether ``needed`` lies outside the measured sizes (``[sizes[0], sizes[-1]]``;
        with the default sizes, above ``sizes[-1]`` means more stimuli than the pool holds).
      reached_at: the smallest measured size whose measured width is at most ``width`` (None if
        none): the answer without the fit, to prefer within the measured sizes when ``exponent``
        is far from -0.5.
      sizes: ``int64 [k]`` the subsample sizes measured, ascending.
      median, low, high, widths: ``float64 [k]`` per size: the median score over the
        replicates, the percentile interval and its width ``high - low``.
      replicates: ``float64 [k, num_bootstrap]`` the score of every replicate (NaN where a model
        was constant on the resample).
      coefficient: ``c`` of ``width(n) = c n**-0.5``, least squares in log space over the sizes
        with a positive width (NaN when there are none).
      exponent, exponent_coefficient: the free fit ``width(n) = c' n**exponent`` (NaN with
        fewer than two positive widths); an exponent far from -0.5 says the sizes are not yet in
        the ``1/sqrt(n)`` regime (or the score saturates), and ``needed`` is rough.
      chance: the score's value when the similarities carry no group structure: 0.5 for
        ``auc`` and ``conformity``, the mean of ``(own group size - 1) / (models - 1)`` over the
        models with a sibling for ``knn_accuracy``, the share of within-group pairs for
        ``auprc`` (approximately), 0 for ``silhouette`` (approximately).
      separates_at: the smallest measured size whose interval's lower bound exceeds ``chance``
        (None if none does).
      num_stimuli: the pool's size.
      groups: the group (family) names, sorted.
      num_bootstrap, confidence: replicates per size and the intervals' coverage.
    """

    score: str
    width: float
    needed: int | None
    extrapolated: bool
    reached_at: int | None
    sizes: np.ndarray
    median: np.ndarray
    low: np.ndarray
    high: np.ndarray
    widths: np.ndarray
    replicates: np.ndarray
    coefficient: float
    exponent: float
    exponent_coefficient: float
    chance: float
    separates_at: int | None
    num_stimuli: int
    groups: tuple[str, ...]
    num_bootstrap: int
    confidence: float

    def predicted_width(self, n):
        """The fitted ``coefficient / sqrt(n)`` at ``n`` stimuli."""
        return self.coefficient / np.sqrt(np.asarray(n, np.float64))


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def stimuli_needed(
    features,
    groups,
    *,
    width: float,
    score: str = "auc",
    sizes=None,
    num_bootstrap: int = 200,
    confidence: float = 0.95,
    debiased: bool = False,
    seed: int = 0,
    max_bytes: int | None = None,
) -> StimulusPlan:
    """How many stimuli like these separate the families with an interval of width ``width``?

    From a pilot pool of stimuli every model has seen: at each subsample size ``n``, the
    percentile interval of the identifiability ``score`` (of the models' all-pairs linear CKA)
    over ``num_bootstrap`` bootstrap resamples, and its width. The widths are fitted by
    ``c / sqrt(n)`` (the rate of a smooth statistic of ``n`` independent stimuli; the free
    exponent is reported beside it) and ``needed`` is the fewest stimuli the fit says give
    ``width``. ``separates_at`` is the smallest measured size whose interval lies above chance.

    What is resampled at size ``n``: a random ``n`` of the pool's stimuli (without replacement;
    the sizes are nested, each holding the smaller ones, so the curve is smooth), and within
    them ``num_bootstrap`` resamples of ``n`` with replacement (:func:`~jaxagree.cka_bootstrap`,
    all replicates in one batched call). Each width is thus the bootstrap interval a study of
    ``n`` new stimuli like the pool's would report, as it would compute it. It is not the
    ``n``-out-of-pool bootstrap (replicates of ``n`` drawn from the whole pool):
    ``cka_bootstrap`` draws as many stimuli as its set holds.

    Assumptions and caveats: new stimuli are drawn like the pool's (the same distribution; a
    curated or contrastive set is its own pool); each width comes from one draw of ``n``
    stimuli, so it carries that draw's noise (the fit over the sizes smooths it); the larger
    sizes overlap most of the pool, so they share its particular stimuli, and nothing accounts
    for the pool itself being a sample; ``needed`` beyond the pool (``extrapolated``) trusts
    the ``1/sqrt(n)`` law further than it was measured. The law fits a smooth score
    (``silhouette``) at every size, but a rank score (``auc``, ``conformity``, ``knn_accuracy``,
    ``auprc``) only where the structure stands clear of the CKA noise: near chance its spread is
    that of the models' pairs and hardly shrinks with ``n``, and as it saturates (AUC 1 in every
    replicate) it shrinks faster, down to width 0 (such sizes are left out of the fit). The
    score's median moves with ``n`` as well (CKA's sampling noise blurs the structure of small
    sets). Read ``exponent``: far from -0.5, prefer ``reached_at`` within the measured sizes.

    Args:
      features: the models' features on the pool, as :func:`~jaxagree.cka_matrix` takes them
        (``[models, stimuli, dim]``, a sequence of ``[stimuli, dim_m]`` arrays, or a mapping
        from model name to such arrays).
      groups: ``[models]`` group (family) labels; at least two groups and a group of two.
      width: the interval width wanted (> 0, in the score's units).
      score: one of :class:`~jaxagree.IdentifiabilityScores`' fields (default ``"auc"``).
      sizes: the subsample sizes to measure, integers in ``[4, pool]``, at least two distinct
        (default: 6 sizes spaced geometrically from the larger of 16 and 5% of the pool, up to
        the pool).
      num_bootstrap: replicates per size (at least 2).
      confidence: coverage of the percentile intervals.
      debiased: the unbiased HSIC estimator.
      seed: the subsamples and the resamples; the same seed gives the same plan.
      max_bytes: memory bound, as for :func:`~jaxagree.cka_matrix`.

    Returns:
      :class:`StimulusPlan`.
    """
    if score not in SCORES:
        raise ValueError(f"score must be one of {', '.join(SCORES)}; got {score!r}")
    if isinstance(width, bool) or not isinstance(width, (int, float, np.integer, np.floating)) \
            or not 0 < width < math.inf:
        raise ValueError(f"width must be a positive number, got {width!r}")
    num_bootstrap = require_positive_int("num_bootstrap", num_bootstrap)
    if num_bootstrap < 2:
        raise ValueError(f"num_bootstrap must be at least 2 (an interval needs replicates), got {num_bootstrap}")
    confidence = require_confidence(confidence)
    seed = require_seed(seed)
    num_models, pool = _pool_shape(features)
    ids, names = encode_groups(groups, num_models)
    sizes_per_group = np.bincount(ids, minlength=len(names))
    if len(names) < 2 or sizes_per_group.max() < 2:
        raise ValueError(f"groups: {len(names)} group(s) of sizes {sizes_per_group.tolist()}; identifiability "
                         "needs at least two groups and a group of at least two models")
    sizes = _check_sizes(sizes, pool)
    order = np.random.default_rng(int(seed)).permutation(pool)
    replicates = np.empty((len(sizes), num_bootstrap))
    boots = cka_bootstrap_replicates(features, [np.sort(order[:n]) for n in sizes], num_bootstrap=num_bootstrap,
                                     seed=int(seed), debiased=debiased, max_bytes=max_bytes)
    for k, boot in enumerate(boots):
        scores = identifiability_scores(boot, ids, len(names))
        replicates[k] = np.asarray(getattr(scores, score), np.float64)
    tails = 100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2
    with warnings.catch_warnings():  # a size whose replicates are all NaN gives NaN, said by the fields
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanpercentile(replicates, tails, axis=1)
        median = np.nanmedian(replicates, axis=1)
    widths = high - low
    coefficient, exponent, free = _fit(sizes, widths)
    needed = max(MIN_SIZE, math.ceil((coefficient / width) ** 2)) if math.isfinite(coefficient) else None
    extrapolated = needed is not None and not sizes[0] <= needed <= sizes[-1]
    reached = np.flatnonzero(widths <= width)
    reached_at = int(sizes[reached[0]]) if reached.size else None
    chance = _chance(score, ids)
    above = np.flatnonzero(low > chance)
    separates_at = int(sizes[above[0]]) if above.size else None
    return StimulusPlan(score, float(width), needed, bool(extrapolated), reached_at, sizes, median, low, high, widths,
                        replicates, coefficient, exponent, free, chance, separates_at, pool, tuple(names),
                        num_bootstrap, float(confidence))


def _pool_shape(features) -> tuple[int, int]:
    """(models, stimuli) of ``features``; :func:`cka_bootstrap` checks the rest."""
    if hasattr(features, "ndim"):
        if features.ndim != 3:
            raise ValueError(f"features must have shape [models, stimuli, dim] or be a sequence of [stimuli, dim] "
                             f"arrays, got shape {tuple(features.shape)}")
        return features.shape[0], features.shape[1]
    if isinstance(features, Mapping):
        labels, models = [f"model {name!r}" for name in features], list(features.values())
    elif isinstance(features, (list, tuple)):
        labels, models = [f"model {m}" for m in range(len(features))], list(features)
    else:
        raise ValueError(f"features must be an array, a sequence or a mapping of arrays, got {type(features).__name__}")
    if not models:
        raise ValueError("features holds no models")
    counts = [np.shape(m)[0] if np.ndim(m) else 0 for m in models]
    check_same_stimuli(counts, labels)
    return len(models), counts[0]


def _check_sizes(sizes, pool: int) -> np.ndarray:
    """Distinct sizes in ``[MIN_SIZE, pool]``, ascending; the default grid when None."""
    if pool < MIN_SIZE + 1:
        raise ValueError(f"features: a pool of {pool} stimuli; planning needs at least {MIN_SIZE + 1} "
                         f"(two sizes of at least {MIN_SIZE})")
    if sizes is None:
        smallest = min(max(DEFAULT_SMALLEST, math.ceil(0.05 * pool)), pool // 2)
        smallest = max(smallest, MIN_SIZE)
        return np.unique(np.round(np.geomspace(smallest, pool, DEFAULT_NUM_SIZES)).astype(np.int64))
    given = np.asarray(sizes)
    if given.ndim != 1 or not np.issubdtype(given.dtype, np.integer):
        raise ValueError(f"sizes must be a 1-d sequence of integers, got {given.dtype} with shape {given.shape}")
    outside = given[(given < MIN_SIZE) | (given > pool)]
    if outside.size:
        raise ValueError(f"sizes: {int(outside[0])} is outside [{MIN_SIZE}, {pool}] (the pool's stimuli)")
    given = np.unique(given.astype(np.int64))
    if given.size < 2:
        raise ValueError(f"sizes must hold at least two distinct sizes (a curve), got {given.tolist()}")
    return given


def _fit(sizes: np.ndarray, widths: np.ndarray) -> tuple[float, float, float]:
    """(c of c n**-0.5, the free exponent, its coefficient), in log space over positive widths."""
    usable = np.isfinite(widths) & (widths > 0)
    if not usable.any():
        return float("nan"), float("nan"), float("nan")
    log_n, log_w = np.log(sizes[usable]), np.log(widths[usable])
    coefficient = float(np.exp(np.mean(log_w + 0.5 * log_n)))
    if usable.sum() < 2:
        return coefficient, float("nan"), float("nan")
    slope, intercept = np.polyfit(log_n, log_w, 1)
    return coefficient, float(slope), float(np.exp(intercept))


def _chance(score: str, ids: np.ndarray) -> float:
    """The score without group structure (see :class:`StimulusPlan`)."""
    if score in ("auc", "conformity"):
        return 0.5
    if score == "silhouette":
        return 0.0
    own = np.bincount(ids)[ids] - 1  # each model's siblings
    if score == "knn_accuracy":
        return float(np.mean(own[own > 0] / (len(ids) - 1)))
    return float(own.sum() / (len(ids) * (len(ids) - 1)))  # auprc: within pairs / pairs


__all__ = ["StimulusPlan", "stimuli_needed"]
