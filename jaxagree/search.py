"""Searching the narrowed space (the paper's proposal): :func:`persistence`, do an accuracy bin's
``k`` most contrastive stimuli stay contrastive for every other bin (Fig. 4); :func:`rank_candidates`,
which new images (features only) the models embed most differently relative to the contrastive
stimuli; :func:`select_stimuli`, a greedy choice of ``k`` pool stimuli maximising the
identifiability AUC of CKA on half of the models, reported on the other half against random draws.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple, no_type_check

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from jaxagree._checks import check_stimulus_indices, require_positive_int
from jaxagree._typing import AnyArray
from jaxagree.agreement import contrastive_stimuli
from jaxagree.cka import cka_matrix
from jaxagree.identify import encode_groups, identifiability_scores

HIGHEST = jax.lax.Precision.HIGHEST
# Candidate AUCs this close to the best are tied (float32 rounding of the rank sums).
AUC_TIE = 1e-5


class Persistence(NamedTuple):
    """Results of :func:`persistence`.

    Attributes:
      contrastive: ``int32 [subsets, k]`` each subset's k lowest-agreement stimuli, lowest first.
      persistence: ``float32 [subsets]`` share of a subset's k that are among the k of every other
        subset (1 with a single subset: there is no other).
      overlap: ``float32 [subsets, subsets]``, ``overlap[a, b]``: share of subset a's k among
        subset b's k (symmetric, unit diagonal: every row holds k stimuli).
      common: ``bool [stimuli]`` the stimuli among the k of every subset
        (``np.flatnonzero(common)`` for their indices).
    """

    contrastive: Int[Array, "subsets k"]
    persistence: Float[Array, " subsets"]
    overlap: Float[Array, "subsets subsets"]
    common: Bool[Array, " stimuli"]


@partial(jax.jit, static_argnames="num_stimuli")
def _persistence(chosen: Int[Array, "subsets k"], num_stimuli: int):
    k = chosen.shape[1]
    member = jnp.zeros((chosen.shape[0], num_stimuli), jnp.float32).at[jnp.arange(chosen.shape[0])[:, None],
                                                                          chosen].set(1.0)
    overlap = jnp.matmul(member, member.T, precision=HIGHEST) / k
    common = member.sum(0) == chosen.shape[0]  # in every subset's k
    kept = jnp.matmul(member, common.astype(jnp.float32), precision=HIGHEST) / k
    return kept, overlap, common


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def persistence(agreement: Float[AnyArray, "subsets stimuli"], k: int) -> Persistence:
    """Do the contrastive stimuli of one model set stay contrastive for the others?

    Args:
      agreement: ``float [subsets, stimuli]`` per-stimulus agreement of each model subset, e.g.
        ``per_stimulus_agreement(agreement_stats(preds, num_categories=C, model_mask=bins.model_mask))``.
      k: contrastive stimuli per subset (:func:`~jaxagree.contrastive_stimuli`: ties go to the
        lower index, NaN is never chosen).

    Returns:
      :class:`Persistence`.
    """
    agreement = agreement if hasattr(agreement, "dtype") else np.asarray(agreement)
    if agreement.ndim != 2 or agreement.shape[0] < 1:
        raise ValueError(f"agreement must have shape [subsets, stimuli], got shape {tuple(agreement.shape)}")
    chosen = contrastive_stimuli(agreement, k)  # checks k and the dtype
    return Persistence(chosen, *_persistence(chosen, agreement.shape[1]))


class CandidateRanking(NamedTuple):
    """Results of :func:`rank_candidates`.

    Attributes:
      order: ``int32 [candidates]`` candidate indices, highest score first (ties: lower index;
        NaN scores last).
      score: ``float32 [candidates]`` ``1 -`` the mean correlation, over pairs of models, of the
        candidate's similarity profiles (in ``[0, 2]``; 0: every model embeds it alike). NaN where
        some model's profile is constant.
    """

    order: Int[Array, " candidates"]
    score: Float[Array, " candidates"]


def _profiles(contrastive: Float[Array, "k dim"], candidates: Float[Array, "candidates dim"]):
    """One model's z-scored profiles ``[candidates, k]``: cosine similarity of each candidate to
    each contrastive stimulus, both centred on the contrastive mean, scaled to unit norm."""
    mean = contrastive.mean(0)
    unit = lambda x: x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-30)
    cosine = jnp.matmul(unit(candidates - mean), unit(contrastive - mean).T, precision=HIGHEST)
    centred = cosine - cosine.mean(-1, keepdims=True)
    norm = jnp.linalg.norm(centred, axis=-1, keepdims=True)
    return jnp.where(norm > 1e-6, centred / jnp.where(norm > 1e-6, norm, 1.0), jnp.nan)


@jax.jit
def _rank(contrastive: Float[Array, "models k dim"], candidates: Float[Array, "models candidates dim"]):
    z = jax.vmap(_profiles)(contrastive.astype(jnp.float32), candidates.astype(jnp.float32))
    m = z.shape[0]
    total = z.sum(0)  # sum over models; |sum z|^2 = M + sum over ordered pairs of correlations
    mean_corr = ((total * total).sum(-1) - m) / (m * (m - 1))
    score = 1.0 - mean_corr
    order = jnp.argsort(-jnp.where(jnp.isnan(score), -jnp.inf, score), stable=True)
    return order.astype(jnp.int32), score


def _stack(features, name: str, axis: str) -> tuple[np.ndarray, list[int]]:
    """Float32 ``[models, n, dim]`` from an array or a sequence of ``[n, dim_m]`` arrays (zero
    columns pad dims: they change no Gram and no cosine), and each model's dims."""
    if hasattr(features, "ndim"):
        items = [features[i] for i in range(features.shape[0])] if features.ndim == 3 else None
    else:
        items = [np.asarray(f) for f in features] if len(features) else None
    if items is None or any(np.ndim(f) != 2 for f in items):
        raise ValueError(f"{name} must be [models, {axis}, dim] or a sequence of [{axis}, dim] arrays")
    for i, f in enumerate(items):
        if not np.issubdtype(np.asarray(f).dtype, np.floating) or not np.isfinite(np.asarray(f)).all():
            raise ValueError(f"{name}[model {i}] must be finite float features")
        if f.shape[0] != items[0].shape[0]:
            raise ValueError(f"{name}[model {i}] has {f.shape[0]} {axis}, model 0 has {items[0].shape[0]}")
    width = max(f.shape[1] for f in items)
    padded = [np.pad(np.asarray(f, np.float32), ((0, 0), (0, width - f.shape[1]))) for f in items]
    return np.stack(padded), [f.shape[1] for f in items]


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def rank_candidates(contrastive_features, candidate_features) -> CandidateRanking:
    """Rank new candidate images by how strongly the models disagree on them.

    The score is the between-model disagreement of each candidate's representation, read
    relative to the contrastive stimuli: per model, the candidate's cosine similarity to each
    contrastive stimulus (features centred on that model's contrastive mean) is its *profile*,
    ``[k]``; profiles live in the same stimulus space for every model, whatever its features'
    basis or width (the idea behind RSA and CKA), and are z-scored so that a model's scale and
    offset do not count. ``score = 1 - mean over pairs of models of corr(profile_a, profile_b)``.
    A candidate that every model places alike among the contrastive stimuli scores about 0; one
    that the models place differently (where they disagree) scores near 1 or above. Labels are
    not needed, and the cost is ``O(models * candidates * k * dim)``.

    Args:
      contrastive_features: ``[models, k, dim]`` (or a sequence of ``[k, dim_m]``), the models'
        features on the contrastive stimuli; ``k >= 2``, models ``>= 2``.
      candidate_features: ``[models, candidates, dim]`` (or a sequence), the same models' features
        on the candidates, in the same model order and the same dims per model.

    Returns:
      :class:`CandidateRanking`.
    """
    known, known_dims = _stack(contrastive_features, "contrastive_features", "stimuli")
    new, new_dims = _stack(candidate_features, "candidate_features", "candidates")
    if known.shape[0] < 2 or known.shape[0] != new.shape[0]:
        raise ValueError(f"contrastive_features has {known.shape[0]} models, candidate_features {new.shape[0]}; "
                         "give the same models (at least 2) in the same order")
    if known.shape[1] < 2:
        raise ValueError("contrastive_features needs at least 2 stimuli (a profile over one is constant)")
    for m, (a, b) in enumerate(zip(known_dims, new_dims)):
        if a != b:
            raise ValueError(f"model {m}: contrastive_features has {a} dims, candidate_features {b}")
    return CandidateRanking(*_rank(jnp.asarray(known), jnp.asarray(new)))


class StimulusSelection(NamedTuple):
    """Results of :func:`select_stimuli`.

    Attributes:
      indices: ``int32 [k]`` the chosen stimuli (indices into ``features``' stimuli), in the
        order they were added (the replacements of the two seed stimuli last).
      train_auc: identifiability AUC of the chosen set's CKA matrix over the training models.
      held_out_auc: the same over the held-out models, which the selection never saw.
      random_held_out_auc: ``float32 [num_random]`` held-out AUC of random draws of ``k`` pool
        stimuli, the baseline that ``held_out_auc`` should beat.
      random_indices: ``int32 [num_random, k]`` those draws.
      train_models: ``bool [models]`` the models the selection was fitted on.
      train_curve: ``float32 [k - 2]`` the training AUC after each greedy addition.
    """

    indices: Int[Array, " k"]
    train_auc: Float[Array, ""]
    held_out_auc: Float[Array, ""]
    random_held_out_auc: Float[Array, " num_random"]
    random_indices: Int[Array, "num_random k"]
    train_models: Bool[Array, " models"]
    train_curve: Float[Array, " steps"]


@jax.jit
def candidate_cka(
    x: Float[Array, "models pool dim"], slots: Int[Array, " k"], size: Int[Array, ""]
) -> Float[Array, "pool models models"]:
    """Biased CKA of every pair of models over the set ``slots[:size]`` plus each pool stimulus.
    Features are re-centred on the set, so its inner products carry no mean and each candidate's
    HSIC is three terms of its own size (no cancellation): with ``s = size``, ``f = s / (s + 1)``,
    ``R_a = X_a[S] X_a^T`` and ``D_a[c] = |x_a[c]|^2``, ``HSIC(S + c)_ab = A_ab
    + 2 f sum_(i in S) R_a[i, c] R_b[i, c] + f^2 D_a[c] D_b[c]``, where
    ``A_ab = sum_(i, j in S) R_a[i, j] R_b[i, j]`` is the set's own HSIC. (A candidate already in
    the set gets a meaningless value; the caller masks it.)"""
    valid = (jnp.arange(slots.shape[0]) < size).astype(jnp.float32)
    s = size.astype(jnp.float32)
    mean = jnp.einsum("k,mkd->md", valid, x[:, slots], precision=HIGHEST) / s
    xs = x - mean[:, None, :]
    rows = jnp.einsum("mkd,mpd->mkp", xs[:, slots] * valid[None, :, None], xs, precision=HIGHEST)
    within = rows[:, :, slots] * valid[None, None, :]
    own = jnp.einsum("mij,lij->ml", within, within, precision=HIGHEST)
    cross = jnp.einsum("mkp,lkp->pml", rows, rows, precision=HIGHEST)
    norms = (xs * xs).sum(-1).T  # [pool, models]
    f = s / (s + 1.0)
    hsic = own[None] + 2.0 * f * cross + f * f * norms[:, :, None] * norms[:, None, :]
    diag = jnp.diagonal(hsic, axis1=1, axis2=2)
    defined = (diag[:, :, None] > 0) & (diag[:, None, :] > 0)
    cka = hsic / jnp.sqrt(jnp.where(defined, diag[:, :, None] * diag[:, None, :], 1.0))
    return jnp.where(defined, cka, jnp.nan)


@partial(jax.jit, static_argnames="num_groups")
def _greedy_step(
    x: Float[Array, "models pool dim"],
    slots: Int[Array, " k"],
    size: Int[Array, ""],
    taken: Bool[Array, " pool"],
    ids: Int[Array, " models"],
    num_groups: int,
) -> tuple[Int[Array, ""], Float[Array, ""]]:
    """The pool position whose addition to the set ``slots[:size]`` gives the highest AUC (ties:
    the larger within- minus between-group mean CKA, then the lowest position), and that AUC."""
    cka = candidate_cka(x, slots, size)
    auc = identifiability_scores(cka, ids, num_groups).auc
    auc = jnp.where(taken | jnp.isnan(auc), -jnp.inf, auc)
    # Ties (the AUC saturates at 1 once the training groups separate): the larger margin, the
    # least similar pair within a group less the most similar pair between groups.
    same = (ids[:, None] == ids[None, :]) & ~jnp.eye(ids.shape[0], dtype=bool)
    apart = ids[:, None] != ids[None, :]
    margin = jnp.where(same, cka, jnp.inf).min((1, 2)) - jnp.where(apart, cka, -jnp.inf).max((1, 2))
    top = auc >= auc.max() - AUC_TIE
    best = jnp.argmax(jnp.where(top, jnp.nan_to_num(margin, nan=-jnp.inf), -jnp.inf))
    return best.astype(jnp.int32), auc[best]


def _usable(ids: np.ndarray, what: str) -> None:
    sizes = np.bincount(ids)
    if (sizes > 0).sum() < 2 or sizes.max() < 2:
        raise ValueError(f"train_models: the {what} models need two groups and a group of at least two "
                         f"(group sizes there: {sizes[sizes > 0].tolist()})")


def _auc(features: np.ndarray, models: np.ndarray, stimuli, ids: np.ndarray, num_groups: int) -> jax.Array:
    """Identifiability AUC of ``cka_matrix`` over ``models`` and ``stimuli`` (NaN if undefined)."""
    x = features[np.flatnonzero(models)][:, np.asarray(stimuli)]
    similarity = np.asarray(cka_matrix(x))
    if not np.isfinite(similarity).all():
        return jnp.float32(np.nan)
    return identifiability_scores(similarity, ids[models], num_groups).auc


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def select_stimuli(
    features, groups, pool, k: int, *, method: str = "greedy", train_models=None, seed: int = 0,
    num_random: int = 20,
) -> StimulusSelection:
    """Choose ``k`` stimuli of ``pool`` that tell the groups (families) apart, and check the
    choice on models it never saw.

    ``method="greedy"``: forward selection, each step adding the pool stimulus that maximises the
    identifiability AUC (:func:`~jaxagree.identifiability_scores`) of the biased linear CKA matrix
    of the training models over the set. CKA over fewer than 3 stimuli is 1 for every pair, so
    two pool stimuli drawn at random (``seed``) start the set; once it holds ``k``, each of the
    two is exchanged for the best stimulus given the other ``k - 1`` (it may come back). AUCs
    within :data:`AUC_TIE` of the best are tied (the training AUC often saturates at 1): the tie
    goes to the larger margin, the least similar pair within a group less the most similar pair
    between groups, then to the lower pool position. Every
    candidate of a step is scored at once inside ``jit`` from the set's Gram rows (see
    :func:`candidate_cka`): ``O(M k P d + M^2 k P + P M^2 log M)`` per step for ``M`` training
    models, ``P`` pool stimuli, ``d`` dims, so ``O(k^2 P (M d + M^2))`` in all; one compilation
    (the set is padded to ``k`` slots). Greedy choice is myopic: a stimulus that separates the
    groups only together with another may be missed.

    Args:
      features: ``[models, stimuli, dim]`` (or a sequence of ``[stimuli, dim_m]``), finite.
      groups: ``[models]`` group (family) labels.
      pool: indices of the stimuli to choose from (e.g. the contrastive stimuli), at least ``k``.
      k: stimuli to choose, at least 3 (static).
      method: ``"greedy"`` (the only one).
      train_models: ``bool [models]`` the models to fit on; the rest are held out. Default: a
        seeded half of each group (a group of one goes to training). Both halves need two groups
        and a group of at least two.
      seed: the split, the two seed stimuli and the random draws.
      num_random: random draws of ``k`` pool stimuli for the held-out baseline.

    Returns:
      :class:`StimulusSelection`.
    """
    if method != "greedy":
        raise ValueError(f"method must be 'greedy', got {method!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    k, num_random = require_positive_int("k", k), require_positive_int("num_random", num_random)
    x = _stack(features, "features", "stimuli")[0]
    ids, names = encode_groups(groups, x.shape[0])
    pool = check_stimulus_indices(pool, x.shape[1], source="pool")
    if not 3 <= k <= len(pool):
        raise ValueError(f"k={k} must lie in [3, {len(pool)}] (the pool's size; CKA needs 3 stimuli)")
    rng = np.random.default_rng(seed)
    if train_models is None:
        train = np.zeros(len(ids), bool)
        for g in range(len(names)):
            members = rng.permutation(np.flatnonzero(ids == g))
            train[members[::2]] = True
    else:
        train = np.asarray(train_models)
        if train.dtype != bool or train.shape != ids.shape:
            raise ValueError(f"train_models must be bool [models] ({len(ids)} models), got {train.dtype} {train.shape}")
    _usable(ids[train], "training")
    _usable(ids[~train], "held-out")
    # Pool features of the training models, centred over the pool and scaled to unit max-abs.
    fit = x[np.flatnonzero(train)][:, pool]
    fit = fit - fit.mean(1, keepdims=True)
    fit = jnp.asarray(fit / np.maximum(np.abs(fit).max((1, 2), keepdims=True), 1e-30))
    fit_ids = jnp.asarray(ids[train])

    def best_addition(chosen: list) -> tuple[int, float]:
        slots = np.zeros(k, np.int32)
        slots[: len(chosen)] = chosen
        taken = np.zeros(len(pool), bool)
        taken[chosen] = True
        best, auc = _greedy_step(fit, jnp.asarray(slots), jnp.int32(len(chosen)), jnp.asarray(taken), fit_ids,
                                 len(names))
        return int(best), float(auc)

    seeds = [int(i) for i in rng.choice(len(pool), 2, replace=False)]
    chosen, curve = list(seeds), []
    while len(chosen) < k:
        best, auc = best_addition(chosen)
        chosen.append(best)
        curve.append(auc)
    for first in seeds:
        rest = [c for c in chosen if c != first]
        chosen = rest + [best_addition(rest)[0]]
    indices = pool[np.asarray(chosen)]
    draws = np.stack([np.sort(rng.choice(pool, k, replace=False)) for _ in range(num_random)])
    return StimulusSelection(
        indices=jnp.asarray(indices, jnp.int32),
        train_auc=_auc(x, train, indices, ids, len(names)),
        held_out_auc=_auc(x, ~train, indices, ids, len(names)),
        random_held_out_auc=jnp.stack([_auc(x, ~train, d, ids, len(names)) for d in draws]).astype(jnp.float32),
        random_indices=jnp.asarray(draws, jnp.int32),
        train_models=jnp.asarray(train),
        train_curve=jnp.asarray(curve, jnp.float32),
    )


__all__ = [
    "CandidateRanking",
    "Persistence",
    "StimulusSelection",
    "persistence",
    "rank_candidates",
    "select_stimuli",
]
