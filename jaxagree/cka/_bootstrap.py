"""Bootstrap over stimuli of the all-pairs CKA matrix: every replicate is ``cka_matrix`` of a
resample, computed from Grams formed once over the stimulus set (kernels in :mod:`jaxagree.cka.resample`)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import NamedTuple, no_type_check

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from jaxagree._checks import check_stimulus_indices, require_positive_int
from jaxagree._typing import AnyArray
from jaxagree.cka import plan
from jaxagree.cka._centring import normalise
from jaxagree.cka._checks import check_features, shapes
from jaxagree.cka._matrix import cka_matrix
from jaxagree.cka.resample import (
    bootstrap_indices,
    bootstrap_plan,
    bootstrap_weights,
    resample_inner,
    set_terms,
    support_bound,
)

DEFAULT_NUM_BOOTSTRAP = 200
# A model's resample inner product below this share of its cells' size bound kept too few
# float32 digits (see resample_inner: its error is ~eps * sqrt(bound / inner), 1.2e-4 here at
# worst); a model constant on the resample lands near eps^2. Such replicates are gathered.
RELATIVE_FLOOR = 1e-6


class CKABootstrap(NamedTuple):
    """A stimulus bootstrap of the all-pairs CKA matrix.

    Attributes:
      replicates: ``float32 [replicates, models, models]``; replicate ``r`` is
        ``cka_matrix`` of the stimuli ``stimuli[indices[r]]`` (repeats kept).
      estimate: ``float32 [models, models]``, ``cka_matrix`` of the whole set.
      indices: ``int32 [replicates, set]`` positions within the set that each replicate drew.
      stimuli: ``int32 [set]``, the set's stimulus indices (all stimuli when none were given).
      gathered: ``int32 [k]``, the replicates computed by ``cka_matrix`` of the gathered resample
        (where the shortcut kept too few float32 digits for some model; usually none).
    """

    replicates: Float[Array, "replicates models models"]
    estimate: Float[Array, "models models"]
    indices: Int[Array, "replicates set"]
    stimuli: Int[Array, " set"]
    gathered: Int[Array, " k"]


def check_replicate_indices(indices, set_size: int) -> np.ndarray:
    """``int32 [replicates, set_size]`` positions within the set, each in ``[0, set_size)``."""
    host = np.asarray(indices)
    if host.ndim != 2 or host.shape[0] < 1 or host.shape[1] != set_size or not np.issubdtype(host.dtype, np.integer):
        raise ValueError(
            f"indices must be an integer array [replicates, {set_size}] (each row one resample of the set's "
            f"{set_size} stimuli), got {host.dtype} with shape {host.shape}"
        )
    outside = np.argwhere((host < 0) | (host >= set_size))
    if len(outside):
        r, t = outside[0]
        raise ValueError(f"indices[{r}, {t}] = {host[r, t]} is outside [0, {set_size}) (positions within the set)")
    return host.astype(np.int32)


def replicate_indices(num_bootstrap, seed, indices, set_size: int) -> jax.Array:
    if indices is not None:
        if num_bootstrap is not None or seed is not None:
            raise ValueError("give indices, or num_bootstrap and seed, not both")
        return jnp.asarray(check_replicate_indices(indices, set_size))
    num_bootstrap = DEFAULT_NUM_BOOTSTRAP if num_bootstrap is None else num_bootstrap
    num_bootstrap = require_positive_int("num_bootstrap", num_bootstrap)
    seed = 0 if seed is None else seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return bootstrap_indices(jax.random.key(int(seed)), set_size, num_bootstrap)


def resampled_inner(models: Sequence, stacked, subset, weights: jax.Array, debiased: bool,
                    max_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """Every replicate's (U-)centred Gram inner products ``[replicates, models, models]`` and
    each model's cell-size bound ``[replicates, models]``, tile by tile and chunk by chunk."""
    num_models, (num_stimuli, num_bootstrap) = len(models), (weights.shape[1], weights.shape[0])
    support = support_bound(weights)
    width = max(shape[1] for shape in shapes(models))
    block, chunk = bootstrap_plan(num_models, num_stimuli, width, num_bootstrap, support, max_bytes)

    def tile(start: int, stop: int) -> jax.Array:
        # Host arrays are gathered and padded on the host: one transfer, no per-shape kernels.
        if stacked is not None:
            part = stacked if stop - start == num_models else stacked[start:stop]
            return jnp.asarray(part if subset is None else part[:, subset])
        picked = [m if subset is None else m[subset] for m in models[start:stop]]
        xp = np if all(isinstance(m, np.ndarray) for m in picked) else jnp
        widest = max(m.shape[1] for m in picked)  # zero columns leave a Gram unchanged
        return jnp.asarray(xp.stack([xp.pad(m, ((0, 0), (0, widest - m.shape[1]))) for m in picked]))

    # Equal chunks; the last padded with copies of the first replicate, dropped afterwards.
    padded = -(-num_bootstrap // chunk) * chunk
    if padded > num_bootstrap:
        weights = jnp.concatenate([weights, jnp.broadcast_to(weights[:1], (padded - num_bootstrap, num_stimuli))])
    # NaN until filled: a cell no tile wrote would show, not hold stale memory.
    inner = np.full((padded, num_models, num_models), np.nan)
    bound = np.full((padded, num_models), np.nan)
    starts = range(0, num_models, block)
    tiles = {i: tile(i, min(i + block, num_models)) for i in starts} if len(starts) == 1 else None
    for c in range(0, padded, chunk):
        part_weights = weights[c : c + chunk]
        for i in starts:
            rows = set_terms(tiles[i] if tiles else tile(i, min(i + block, num_models)), part_weights)
            for j in starts:
                if j < i:
                    continue
                cols = None if j == i else set_terms(tile(j, min(j + block, num_models)), part_weights)
                part, part_bound = (np.asarray(a, np.float64) for a in
                                    resample_inner(rows, cols, part_weights, support, debiased))
                inner[c : c + chunk, i : i + part.shape[1], j : j + part.shape[2]] = part
                inner[c : c + chunk, j : j + part.shape[2], i : i + part.shape[1]] = part.transpose(0, 2, 1)
                if j == i:
                    bound[c : c + chunk, i : i + part.shape[1]] = part_bound
    return inner[:num_bootstrap], bound[:num_bootstrap]


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def cka_bootstrap(
    features: Float[AnyArray, "models stimuli dim"]
    | Sequence[Float[AnyArray, "stimuli _"]]
    | Mapping[str, Float[AnyArray, "stimuli _"]],
    *,
    num_bootstrap: int | None = None,
    seed: int | None = None,
    indices: Int[AnyArray, "replicates set"] | None = None,
    debiased: bool = False,
    stimuli: Int[AnyArray, " set"] | None = None,
    max_bytes: int | None = None,
) -> CKABootstrap:
    """Bootstrap over stimuli of the all-pairs linear CKA matrix.

    Each replicate draws the set's ``n`` stimuli with replacement, the same draws for every model
    (the models are compared on the same sample), and is exactly
    ``cka_matrix([f[stimuli][idx] for f in features], debiased=debiased)`` for its draws ``idx``
    (a stimulus drawn twice counts twice), up to float32 rounding (about 1e-6).

    How: each model's Gram over the set is formed once, of features centred over the set; a
    replicate is its integer stimulus weights ``w`` (draw counts). Its cells are re-centred over
    the resample (``K_ij - o_i - o_j + g``, with ``o`` from ``Kw``: weighted means for the biased
    estimator; for the debiased one, the U-centring of the resample's Gram, whose zeroed diagonal
    spares pairs of repeated draws) and one ``[pairs, models]`` product per replicate over the
    drawn stimuli's unordered pairs gives every pair of models: ``M^2 u^2`` FLOPs for ``u ~ 0.63 n``
    drawn, about ``0.4 M^2 n^2``, where ``cka_matrix`` of a resample forms every Gram again
    (``~M n^2 d + M^2 n^2``). A replicate where some
    model kept too few float32 digits that way (constant, or nearly, on the resample) is
    computed by ``cka_matrix`` of its gathered resample instead.

    Args:
      features: as :func:`cka_matrix` takes them: ``[models, stimuli, dim]``, a sequence of
        ``[stimuli, dim_m]`` arrays, or a mapping from model name to such arrays.
      num_bootstrap: replicates to draw (default 200).
      seed: the draws are ``bootstrap_indices(jax.random.key(seed), n, num_bootstrap)``
        (default 0): the same seed draws the same positions within any set of ``n`` stimuli.
      indices: ``[replicates, n]`` positions within the set, instead of ``num_bootstrap`` and
        ``seed`` (e.g. from :func:`bootstrap_indices`, for paired comparisons).
      debiased: the unbiased HSIC estimator (needs at least 4 stimuli in the set).
      stimuli: indices of the stimulus set to resample within (default: all stimuli).
      max_bytes: bound on what is held at once (default: as :func:`cka_matrix`): per model of a
        tile its features over the set, half its Gram, ``Kw`` for a chunk of replicates and one
        replicate's gathered cells. Models are processed in tiles that fit; the result does not
        depend on it.

    Returns:
      :class:`CKABootstrap` (``replicates``, ``estimate``, ``indices``, ``stimuli``,
      ``gathered``). A model constant on a resample gets NaN in its row and column of that
      replicate (with a warning).
    """
    models, labels = check_features(features, debiased=debiased, min_models=2)
    subset, draws = _set_draws(models, stimuli, num_bootstrap, seed, indices, debiased)
    max_bytes = plan.default_max_bytes() if max_bytes is None else int(max_bytes)
    stacked = features if hasattr(features, "ndim") else None
    replicates, gathered = bootstrap_replicates(models, labels, stacked, subset, draws, debiased, max_bytes)
    set_size = draws.shape[1]
    whole = features if stacked is not None and subset is None else \
        [m if subset is None else m[subset] for m in models]
    estimate = cka_matrix(whole, debiased=debiased, max_bytes=max_bytes)
    set_indices = np.arange(set_size) if subset is None else subset
    return CKABootstrap(jnp.asarray(replicates, jnp.float32), estimate, draws, jnp.asarray(set_indices, jnp.int32),
                        jnp.asarray(gathered, jnp.int32))


def _set_draws(models: Sequence, stimuli, num_bootstrap, seed, indices, debiased: bool):
    """(the set's stimulus indices or None for all, draws ``[replicates, set]``), checked."""
    subset = None if stimuli is None else check_stimulus_indices(stimuli, shapes(models)[0][0])
    set_size = shapes(models)[0][0] if subset is None else len(subset)
    least = 4 if debiased else 2
    if set_size < least:
        estimator = "debiased" if debiased else "biased"
        raise ValueError(f"stimuli: {set_size} stimuli; {estimator} CKA needs at least {least}")
    return subset, replicate_indices(num_bootstrap, seed, indices, set_size)


def bootstrap_replicates(models: Sequence, labels: Sequence[str], stacked, subset, draws: jax.Array,
                         debiased: bool, max_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """(replicates ``[replicates, models, models]``, gathered ``[k]``) of :func:`cka_bootstrap`,
    without its estimate over the whole set."""
    set_size = draws.shape[1]
    weights = bootstrap_weights(draws, set_size)
    inner, bound = resampled_inner(models, stacked, subset, weights, debiased, max_bytes)
    replicates = np.stack([normalise(matrix) for matrix in inner])
    diagonal = np.diagonal(inner, axis1=1, axis2=2)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="cka_matrix:", category=RuntimeWarning)
        gathered = np.flatnonzero((diagonal < RELATIVE_FLOOR * bound).any(axis=1))
        for r in gathered:
            picked = np.asarray(draws[r]) if subset is None else subset[np.asarray(draws[r])]
            replicates[r] = np.asarray(cka_matrix([m[picked] for m in models], debiased=debiased,
                                                  max_bytes=max_bytes))
    constant = np.isnan(np.diagonal(replicates, axis1=1, axis2=2))
    replicates[:, np.arange(len(models)), np.arange(len(models))] = np.where(constant, np.nan, 1.0)
    if constant.any():
        counts = constant.sum(axis=0)
        names = ", ".join(f"{labels[m]} ({counts[m]})" for m in np.flatnonzero(counts)[:10])
        warnings.warn(f"cka_bootstrap: constant over the resampled stimuli in some of {len(inner)} replicates "
                      f"(count): {names}; NaN row and column there", RuntimeWarning, stacklevel=3)
    return replicates, gathered


def cka_bootstrap_replicates(features, stimulus_sets: Sequence, *, num_bootstrap: int | None = None,
                             seed: int | None = None, debiased: bool = False,
                             max_bytes: int | None = None) -> list[np.ndarray]:
    """:func:`cka_bootstrap`'s ``replicates`` (float32) within each of ``stimulus_sets``, the
    features checked once for all of them and without the whole set's estimate (a second
    all-pairs CKA, compiled for each set's size): as :func:`~jaxagree.stimuli_needed` needs them."""
    models, labels = check_features(features, debiased=debiased, min_models=2)
    max_bytes = plan.default_max_bytes() if max_bytes is None else int(max_bytes)
    stacked = features if hasattr(features, "ndim") else None
    results = []
    for stimuli in stimulus_sets:
        subset, draws = _set_draws(models, stimuli, num_bootstrap, seed, None, debiased)
        replicates, _ = bootstrap_replicates(models, labels, stacked, subset, draws, debiased, max_bytes)
        results.append(replicates.astype(np.float32))
    return results


__all__ = ["CKABootstrap", "bootstrap_replicates", "cka_bootstrap", "cka_bootstrap_replicates",
           "check_replicate_indices"]
