"""Identifiability: how well a model-by-model similarity matrix separates groups of models
(families), and whether each model's most similar other model is one of its own.

Any square similarity works (CKA, error consistency, agreement; higher = more similar). Only the
strict upper triangle is read: ``S[i, j]`` with ``i < j`` stands for both orders (asymmetry up to
:data:`SYMMETRY_RTOL` is accepted as rounding) and the diagonal is ignored. Values are float32.
A matrix costs O(models**2 log models) (ranks by sorting, no pair-by-pair loop); the permutation
test O(num_permutations * models**2), in one jitted call.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple, no_type_check

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, Integer

from jaxagree._checks import is_traced, require_positive_int
from jaxagree._typing import AnyArray

# |S[i, j] - S[j, i]| up to this times max(1, |S[i, j]|, |S[j, i]|) is rounding, not asymmetry.
SYMMETRY_RTOL = 1e-5
# Permutation AUCs this close to the observed one count as reaching it, so that float32 rounding
# of the rank sums never makes p smaller (scipy.stats.permutation_test does so in float64).
P_VALUE_ATOL = 1e-5
# Silhouette's distance 1 - S must not be negative; a CKA a rounding above 1 is clipped to 0.
SILHOUETTE_MAX_SIMILARITY = 1.0 + 1e-5


class IdentifiabilityScores(NamedTuple):
    """Scores of a similarity matrix against groups, each ``float32 [*replicates]``.

    Attributes:
      auc: ROC AUC of within-group against between-group pairs ``i < j`` ranked by similarity,
        ties counting one half (Mann-Whitney ``U / (n_within n_between)``). Chance: 0.5.
      knn_accuracy: leave-one-out 1-nearest-neighbour accuracy: the share of models whose most
        similar other model (ties: the lower index) is of their group. A model alone in its group
        cannot be right and is left out (not counted as a miss).
      silhouette: mean silhouette (Rousseeuw 1987) with distance ``1 - S``; 0 for a model alone in
        its group, as in scikit-learn. NaN when some off-diagonal ``S`` exceeds 1 (+1e-5): the
        distance would be negative. Chance: about 0.
      auprc: average precision of within-group pairs ranked by similarity, ties as one threshold
        (scikit-learn's ``average_precision_score`` on the pairs; ReSi, Klabunde et al. 2024,
        reports it per group). Chance: about the share of within-group pairs.
      conformity: the share of triples (anchor ``i``, ``j`` of its group, ``k`` of another) with
        ``S[i, j] > S[i, k]``; a tie counts against, as ReSi's violation rate counts it. In the
        spirit of ReSi's conformity rate (its code pools pairs per group instead of sharing the
        anchor; pooled over all pairs with ties as one half, that is ``auc``). Chance: 0.5 less ties.
    """

    auc: Float[Array, "*replicates"]
    knn_accuracy: Float[Array, "*replicates"]
    silhouette: Float[Array, "*replicates"]
    auprc: Float[Array, "*replicates"]
    conformity: Float[Array, "*replicates"]


class Identifiability(NamedTuple):
    """:class:`IdentifiabilityScores` of one matrix and the AUC's permutation p-value (0-d arrays).

    Attributes:
      auc, knn_accuracy, silhouette: as in :class:`IdentifiabilityScores`.
      p_value: ``(1 + #{permuted AUC >= observed}) / (1 + num_permutations)``, the group labels
        shuffled over the models (models exchangeable under no structure, as in a Mantel test);
        permuted AUCs within :data:`P_VALUE_ATOL` of the observed one count as reaching it.
      auprc, conformity: as in :class:`IdentifiabilityScores`.
    """

    auc: Float[Array, ""]
    knn_accuracy: Float[Array, ""]
    silhouette: Float[Array, ""]
    p_value: Float[Array, ""]
    auprc: Float[Array, ""]
    conformity: Float[Array, ""]


class ModelIdentification(NamedTuple):
    """Each model as a target: is its most similar other model one of its own? (``[*replicates]``
    leading axes as given.) Per-model values are 1.0 (yes), 0.0 (no), or NaN where no other model
    shares the target's label: it cannot be identified, and the rates leave it out.

    Attributes:
      nearest: ``int32 [..., models]``, each model's most similar other model (ties: lower index).
      same_group: ``float32 [..., models]``, whether ``nearest`` is of the target's group.
      group_rate: ``float32 [...]``, mean of ``same_group`` over the models it is defined for
        (equal to ``knn_accuracy``).
      margin: ``float32 [..., models]``, similarity to the most similar model of the target's group
        minus that to the most similar model of another group: positive means identified, 0 is a
        tie settled by index; NaN where ``same_group`` is. A score difference in the spirit of Han,
        Poggio & Cheung's (2023) identifiability index, not normalised: its scale is the similarity's.
      same_architecture, architecture_rate: the same for ``architectures``; None without them, and
        the rate is NaN when no model shares its architecture with another.
    """

    nearest: Int[Array, "*replicates models"]
    same_group: Float[Array, "*replicates models"]
    group_rate: Float[Array, "*replicates"]
    margin: Float[Array, "*replicates models"]
    same_architecture: Float[Array, "*replicates models"] | None
    architecture_rate: Float[Array, "*replicates"] | None


def _sum(x: Float[Array, " n"]) -> Float[Array, ""]:
    """Sum in two levels: float32 rank sums of a million pairs stay accurate to about 1e-7."""
    return jnp.pad(x, (0, (-x.size) % 512)).reshape(-1, 512).sum(-1).sum()


def _ranks(values: Float[Array, " pairs"]) -> tuple[Float[Array, " pairs"], Integer[Array, " pairs"]]:
    """(twice each value's average rank minus ``pairs + 1``, a whole number; how many are smaller)."""
    ordered = jnp.sort(values)
    below = jnp.searchsorted(ordered, values, side="left")
    through = jnp.searchsorted(ordered, values, side="right")
    return (below + through - values.size).astype(jnp.float32), below


def _auc(
    centred: Float[Array, " pairs"], within: Bool[Array, " pairs"], n_within: Float[Array, ""]
) -> Float[Array, ""]:
    # Mann-Whitney on average ranks: AUC - 1/2 = sum over within pairs of (rank - (pairs + 1) / 2)
    # / (n_within n_between), which keeps float32 sums small.
    return 0.5 + _sum(jnp.where(within, centred, 0.0)) / (2.0 * n_within * (centred.size - n_within))


def _auprc(
    values: Float[Array, " pairs"], below: Integer[Array, " pairs"], within: Bool[Array, " pairs"],
    n_within: Float[Array, ""],
) -> Float[Array, ""]:
    # The mean over within pairs of the precision at their own score: (within pairs scoring >= it)
    # / (pairs scoring >= it); tied pairs share one threshold, as in scikit-learn.
    within_ordered = jnp.sort(jnp.where(within, values, -jnp.inf))
    within_below = jnp.searchsorted(within_ordered, values, side="left") - (values.size - n_within)
    return _sum(jnp.where(within, (n_within - within_below) / (values.size - below), 0.0)) / n_within


def _conformity(s: Float[Array, "models models"], sibling: Bool[Array, "models models"],
                other: Bool[Array, "models models"]) -> Float[Array, ""]:
    # Per anchor row: how many other-group partners are strictly less similar than each sibling.
    other_ordered = jnp.sort(jnp.where(other, s, jnp.inf), axis=-1)
    beaten = jax.vmap(partial(jnp.searchsorted, side="left"))(other_ordered, s)
    won = jnp.where(sibling, beaten, 0).sum(-1).astype(jnp.float32).sum()
    return won / (sibling.sum(-1) * other.sum(-1)).astype(jnp.float32).sum()


def _nearest(s: Float[Array, "models models"]) -> Int[Array, " models"]:
    # argmax keeps the first maximum: a tie goes to the lower index.
    return jnp.argmax(jnp.where(jnp.eye(s.shape[0], dtype=bool), -jnp.inf, s), axis=-1).astype(jnp.int32)


def _silhouette(s: Float[Array, "models models"], ids: Int[Array, " models"], num_groups: int) -> Float[Array, ""]:
    eye = jnp.eye(s.shape[0], dtype=bool)
    onehot = jax.nn.one_hot(ids, num_groups, dtype=jnp.float32)
    sizes = onehot.sum(0)
    distance = jnp.where(eye, 0.0, jnp.maximum(1.0 - s, 0.0))
    totals = jnp.matmul(distance, onehot, precision=jax.lax.Precision.HIGHEST)  # [models, groups]
    own_size = sizes[ids]
    a = jnp.take_along_axis(totals, ids[:, None], 1)[:, 0] / jnp.maximum(own_size - 1.0, 1.0)
    means = jnp.where(sizes > 0, totals / jnp.maximum(sizes, 1.0), jnp.inf)  # an unused id is no group
    b = jnp.where(jnp.arange(num_groups) == ids[:, None], jnp.inf, means).min(-1)
    width = jnp.maximum(a, b)
    sample = jnp.where((own_size > 1) & (width > 0), (b - a) / jnp.where(width > 0, width, 1.0), 0.0)
    return jnp.where(jnp.where(eye, True, s <= SILHOUETTE_MAX_SIMILARITY).all(), sample.mean(), jnp.nan)


def _symmetric(similarity: Float[Array, "models models"]) -> Float[Array, "models models"]:
    upper = jnp.triu(similarity, 1)
    return upper + upper.T


@partial(jax.jit, static_argnames="num_groups")
def _scores(
    similarity: Float[Array, "models models"], ids: Int[Array, " models"], num_groups: int
) -> IdentifiabilityScores:
    eye = jnp.eye(similarity.shape[0], dtype=bool)
    finite = jnp.isfinite(jnp.where(eye, 0.0, similarity)).all()
    s = _symmetric(jnp.where(finite, similarity, 0.0))
    rows, cols = np.triu_indices(s.shape[0], 1)
    values, within = s[rows, cols], ids[rows] == ids[cols]
    n_within = within.sum().astype(jnp.float32)
    centred, below = _ranks(values)
    same = ids[:, None] == ids[None, :]
    has_sibling = (same & ~eye).any(-1)
    knn = (has_sibling & (ids[_nearest(s)] == ids)).sum() / has_sibling.sum()
    scores = (_auc(centred, within, n_within), knn, _silhouette(s, ids, num_groups),
              _auprc(values, below, within, n_within), _conformity(s, same & ~eye, ~same))
    return IdentifiabilityScores(*(jnp.where(finite, x.astype(jnp.float32), jnp.nan) for x in scores))


@partial(jax.jit, static_argnames="num_permutations")
def _permutation_p_value(
    similarity: Float[Array, "models models"], ids: Int[Array, " models"], key: Array, num_permutations: int
) -> Float[Array, ""]:
    m = similarity.shape[0]
    rows, cols = np.triu_indices(m, 1)
    # Shuffling labels moves no similarity: the ranks are computed once, and each permutation only
    # changes which pairs are within-group (their number stays: the group sizes do).
    centred, _ = _ranks(similarity[rows, cols])
    n_within = (ids[rows] == ids[cols]).sum().astype(jnp.float32)
    auc = lambda labels: _auc(centred, labels[rows] == labels[cols], n_within)
    orders = jax.vmap(lambda k: jax.random.permutation(k, m))(jax.random.split(key, num_permutations))
    # [permutations, pairs] masks a batch at a time: about 2**22 pair slots in memory.
    batch = max(1, min(num_permutations, 2**22 // len(rows)))
    null = jax.lax.map(lambda order: auc(ids[order]), orders, batch_size=batch)
    reached = (null >= auc(ids) - P_VALUE_ATOL).sum()
    return ((1.0 + reached) / (1.0 + num_permutations)).astype(jnp.float32)


@jax.jit
def _identify(
    similarity: Float[Array, "models models"], ids: Int[Array, " models"]
) -> tuple[Int[Array, " models"], Float[Array, " models"], Float[Array, " models"]]:
    """(nearest, same label or NaN, margin or NaN) of each target."""
    s = _symmetric(similarity)
    nearest = _nearest(s)
    eye = jnp.eye(s.shape[0], dtype=bool)
    same = ids[:, None] == ids[None, :]
    has_sibling = (same & ~eye).any(-1)
    hit = jnp.where(has_sibling, (ids[nearest] == ids).astype(jnp.float32), jnp.nan)
    margin = jnp.where(same & ~eye, s, -jnp.inf).max(-1) - jnp.where(same, -jnp.inf, s).max(-1)
    return nearest, hit, jnp.where(has_sibling, margin, jnp.nan)


def _check_similarity(similarity, *, batched: bool) -> jax.Array:
    """float32 ``[*replicates, models, models]``: square, real, at least 3 models; where not traced
    also symmetric, and finite off the diagonal unless ``batched`` (such replicates score NaN)."""
    x = similarity if hasattr(similarity, "dtype") else np.asarray(similarity)
    if x.ndim not in ((2, 3) if batched else (2,)) or x.shape[-1] != x.shape[-2]:
        axes = "replicates, models, models" if batched else "models, models"
        raise ValueError(f"similarity must be a square matrix [{axes}], got shape {tuple(x.shape)}")
    if x.dtype == bool or not (jnp.issubdtype(x.dtype, jnp.integer) or jnp.issubdtype(x.dtype, jnp.floating)):
        raise ValueError(f"similarity must be a real-valued array, got dtype {x.dtype}")
    if x.shape[-1] < 3:
        raise ValueError(f"similarity has {x.shape[-1]} model(s); identifiability needs at least 3 "
                         "(two in one group, one in another)")
    if is_traced(x):
        return x.astype(jnp.float32)
    host = np.asarray(x, np.float32)
    where = lambda i: (f"replicate {i[0]}, " if host.ndim == 3 else "") + f"model {i[-2]}, model {i[-1]}"
    first = lambda flags: tuple(int(i) for i in np.argwhere(flags)[0])
    bad = ~np.isfinite(host) & ~np.eye(host.shape[-1], dtype=bool)
    if bad.any() and not batched:
        raise ValueError(f"similarity[{where(first(bad))}] is {host[first(bad)]}; every off-diagonal similarity "
                         "must be finite (a model with constant features has a NaN CKA: leave it out)")
    swapped = np.swapaxes(host, -1, -2)
    with np.errstate(invalid="ignore"):
        apart = np.abs(host - swapped) > SYMMETRY_RTOL * np.maximum(1.0, np.maximum(np.abs(host), np.abs(swapped)))
    if apart.any():
        i = first(apart)
        raise ValueError(f"similarity is not symmetric: similarity[{where(i)}] = {host[i]} but "
                         f"[{where(i[:-2] + i[:-3:-1])}] = {swapped[i]} (relative tolerance {SYMMETRY_RTOL})")
    return jnp.asarray(host)


def _check_groups(ids: np.ndarray, names, *, name: str) -> None:
    """Raise unless there are two groups and some group has two models."""
    sizes = np.bincount(ids, minlength=len(names))
    used = np.flatnonzero(sizes)
    if len(used) < 2:
        raise ValueError(f"{name}: all {len(ids)} models are in one group ({names[used[0]]!r}); identifiability "
                         "needs at least two groups (pairs between groups)")
    if sizes.max() < 2:
        raise ValueError(f"{name}: every model is alone in its group; identifiability needs a group of at "
                         "least two models (a pair within a group)")


def encode_groups(groups, num_models: int, *, name: str = "groups") -> tuple[np.ndarray, tuple]:
    """``(ids, names)``: each model's group as ``int32 [models]`` indices into the sorted distinct
    labels ``names``. ``groups``: one int or string label per model."""
    labels = np.asarray(groups)
    if labels.ndim != 1 or len(labels) != num_models:
        raise ValueError(f"{name} must have one label per model ({num_models} models), got shape {labels.shape}")
    if labels.dtype.kind not in "biuUSO":
        raise ValueError(f"{name} must be integer or string labels, got dtype {labels.dtype}")
    names, ids = np.unique(labels.astype(str) if labels.dtype.kind == "O" else labels, return_inverse=True)
    return ids.astype(np.int32), tuple(names.tolist())


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def identifiability_scores(
    similarities: Float[AnyArray, "*replicates models models"], group_ids: Int[AnyArray, " models"], num_groups: int
) -> IdentifiabilityScores:
    """:class:`IdentifiabilityScores` of one matrix or a stack (bootstrap replicates) in one call.

    Args:
      similarities: ``[models, models]`` or ``[replicates, models, models]``, symmetric (see the
        module docstring). A replicate with a non-finite off-diagonal value scores NaN.
      group_ids: ``int [models]`` in ``[0, num_groups)``, the same for every replicate
        (:func:`encode_groups` makes them from labels).
      num_groups: how many group ids there are (static: it fixes a shape).

    Returns:
      :class:`IdentifiabilityScores`, each field ``float32 [replicates]`` (or 0-d for one matrix).
    """
    num_groups = require_positive_int("num_groups", num_groups)
    x = _check_similarity(similarities, batched=True)
    ids = group_ids if hasattr(group_ids, "dtype") else np.asarray(group_ids)
    if ids.shape != x.shape[-1:] or not jnp.issubdtype(ids.dtype, jnp.integer):
        raise ValueError(f"group_ids must be integers [models] ({x.shape[-1]} models), got {ids.dtype} {ids.shape}")
    if not is_traced(ids):
        ids = np.asarray(ids)
        if ids.min() < 0 or ids.max() >= num_groups:
            raise ValueError(f"group_ids must lie in [0, num_groups={num_groups}), got {ids.min()}..{ids.max()}")
        _check_groups(ids, range(num_groups), name="group_ids")
    stack = x.reshape(-1, *x.shape[-2:])
    scores = jax.vmap(_scores, in_axes=(0, None, None))(stack, jnp.asarray(ids, jnp.int32), num_groups)
    return IdentifiabilityScores(*(field.reshape(x.shape[:-2]) for field in scores))


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def identifiability(
    similarity: Float[AnyArray, "models models"], groups, *, num_permutations: int = 1000, seed: int = 0
) -> Identifiability:
    """How well ``similarity`` separates the models' groups (families), with a permutation test.

    Args:
      similarity: ``[models, models]``, symmetric, finite off the diagonal (see the module docstring).
      groups: ``[models]`` int or string labels; at least two groups, and a group of two or more.
      num_permutations: shuffles of the labels for the AUC's p-value (static), all in one jitted call.
      seed: for ``jax.random``; the same seed gives the same p-value.

    Returns:
      :class:`Identifiability` (0-d float32 arrays).
    """
    s = _check_similarity(similarity, batched=False)
    ids, names = encode_groups(groups, s.shape[0])
    _check_groups(ids, names, name="groups")
    num_permutations = require_positive_int("num_permutations", num_permutations)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    scores = _scores(s, jnp.asarray(ids), len(names))
    p_value = _permutation_p_value(s, jnp.asarray(ids), jax.random.key(seed), num_permutations)
    return Identifiability(*scores[:3], p_value, *scores[3:])


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def identify_models(
    similarity: Float[AnyArray, "*replicates models models"], groups, *, architectures=None
) -> ModelIdentification:
    """Model recovery, as Han, Poggio & Cheung (2023) and Avitan & Golan (2025) ask it: with each
    model as the target, is its most similar other model of its group, and of its architecture?

    Args:
      similarity: ``[models, models]`` or ``[replicates, models, models]`` (bootstrap replicates:
        one with a non-finite off-diagonal value gives NaN, and ``nearest`` -1).
      groups: ``[models]`` labels (families), as for :func:`identifiability`.
      architectures: optional ``[models]`` labels, e.g. one architecture trained with several seeds.

    Returns:
      :class:`ModelIdentification`.
    """
    x = _check_similarity(similarity, batched=True)
    ids, names = encode_groups(groups, x.shape[-1])
    _check_groups(ids, names, name="groups")
    stack = x.reshape(-1, *x.shape[-2:])
    finite = jnp.isfinite(jnp.where(jnp.eye(x.shape[-1], dtype=bool), 0.0, stack)).all((-1, -2))[:, None]
    nearest, same_group, margin = jax.vmap(_identify, in_axes=(0, None))(stack, jnp.asarray(ids))
    nearest, same_group, margin = (jnp.where(finite, v, fill) for v, fill in
                                   ((nearest, -1), (same_group, jnp.nan), (margin, jnp.nan)))
    same_architecture = None
    if architectures is not None:
        arch, _ = encode_groups(architectures, x.shape[-1], name="architectures")
        shared = (arch[:, None] == arch[None, :]).sum(-1) > 1
        hit = (jnp.asarray(arch)[nearest] == arch).astype(jnp.float32)
        same_architecture = jnp.where(shared & finite, hit, jnp.nan)
    batch = x.shape[:-2]
    rate = lambda v: None if v is None else jnp.nanmean(v, -1).reshape(batch)
    shape = lambda v: None if v is None else v.reshape(*batch, -1)
    return ModelIdentification(shape(nearest), shape(same_group), rate(same_group), shape(margin),
                               shape(same_architecture), rate(same_architecture))


__all__ = [
    "Identifiability",
    "IdentifiabilityScores",
    "ModelIdentification",
    "encode_groups",
    "identifiability",
    "identifiability_scores",
    "identify_models",
]
