"""All-pairs linear CKA over stimuli streamed in batches, as pure functions of a mergeable state
(:class:`~jaxagree.cka._moments.CKAState`; CLU metrics' update/merge/compute, optax's init/update
pair made by one constructor, :func:`cka_stream`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple, no_type_check

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from jaxagree._checks import is_traced
from jaxagree.cka import plan
from jaxagree.cka._centring import HIGHEST, membership, normalise, u_centre
from jaxagree.cka._checks import ModelSlices, check_features, shapes
from jaxagree.cka._moments import (
    CKAState,
    add,
    batch_state,
    centred_sums,
    empty_state,
    exact_inner,
    inner_products,
    move,
    state_shapes,
)

ESTIMATORS = ("exact", "exact-debiased", "minibatch")


class CKAStream(NamedTuple):
    """A streamed all-pairs CKA: its static configuration and four pure functions of
    :class:`CKAState` (made by :func:`cka_stream`; every function jits, and ``update`` runs inside
    ``shard_map``).

    Attributes:
      dims: each model's feature dimension.
      estimator: ``"exact"``, ``"exact-debiased"`` or ``"minibatch"``.
      reference: ``[sum(dims)]``, the stimulus the exact estimators' sums are taken about.
      init: ``() -> CKAState``, no stimuli.
      update: ``(state, batch) -> CKAState`` with one more batch (``[models, batch, dim]``, or a
        sequence or mapping of ``[batch, dim_m]`` arrays).
      merge: ``(a, b) -> CKAState`` of both states' stimuli: ``a + b``, field by field.
      compute: ``(state) -> [models, models]`` CKA; NaN rows and columns for models with no
        variance (and everywhere, under ``jit``, when too few stimuli were streamed).
    """

    dims: tuple[int, ...]
    estimator: str
    reference: Float[Array, " dims"]
    init: Callable[[], CKAState]
    update: Callable[[CKAState, Any], CKAState]
    merge: Callable[[CKAState, CKAState], CKAState]
    compute: Callable[[CKAState], Float[Array, "models models"]]


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def cka_stream(reference, *, estimator: str = "minibatch") -> CKAStream:
    """All-pairs linear CKA of stimuli streamed in batches (too many for ``n x n`` Grams).

    ``state = stream.init()``, ``state = stream.update(state, batch)`` per batch, states of other
    devices or processes added with ``stream.merge`` (``jax.lax.psum`` inside ``shard_map``; across
    processes :func:`jaxagree.distributed.process_sum`, an all-reduce, as ``cka --distributed``
    does; or ``multihost_utils.process_allgather(state)`` summed over its first axis), and
    ``stream.compute(state)`` at the end. Estimators:

    * ``"exact"`` / ``"exact-debiased"``: the biased or debiased CKA of all stimuli at once, as
      ``cka_matrix(all_features, debiased=...)``, from feature-space sums (``~4 D^2`` bytes,
      ``D`` = summed dims: modest dims). Batches may have any size, even 1 stimulus.
    * ``"minibatch"``: Nguyen, Raghu & Kornblith (2021), the unbiased HSIC of each batch averaged
      over batches, then normalised: ``M^2`` state whatever the dims, each batch at least 4
      stimuli. It estimates the population CKA, not the CKA of these stimuli (terms of order
      ``1 / batch`` apart from ``"exact-debiased"``).

    Args:
      reference: a batch in ``update``'s form, e.g. the first one: its dims fix the models and
        dims, and its first stimulus is the point the exact estimators' sums are taken about (so
        large feature means cost no float32 accuracy). States that are merged must come from
        streams made with the same reference stimulus, e.g. stimulus 0 of the whole set on every
        device and process.
      estimator: ``"exact"``, ``"exact-debiased"`` or ``"minibatch"`` (default).

    Returns:
      :class:`CKAStream`. Its state is float32 (float64 with ``jax_enable_x64``); the precision
      plan is in :mod:`jaxagree.cka._moments`.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    models, _ = check_features(reference, debiased=False, min_models=2, min_stimuli=1)
    return stream_from(models, estimator)


def stream_from(models: Sequence, estimator: str) -> CKAStream:
    """:func:`cka_stream` of checked models."""
    dims = tuple(int(shape[1]) for shape in shapes(models))
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64)  # float32 unless jax_enable_x64
    if isinstance(models, ModelSlices):
        first = jnp.asarray(models.stacked[:, 0], dtype).reshape(-1)  # no per-model copy
    else:
        first = jnp.concatenate([jnp.asarray(m[0], dtype) for m in models])
    return CKAStream(
        dims, estimator, first,
        init=partial(empty_state, dims, estimator, dtype),
        update=partial(_update, dims, estimator, first),
        merge=partial(_merge, dims, estimator),
        compute=partial(_compute, dims, estimator),
    )


def check_batch(batch, num_models: int, dims: Sequence[int] | None, estimator: str, made_for: str,
                dims_of: str) -> Sequence:
    """Validate a batch for ``estimator`` (values too, outside ``jit``); return its models."""
    exact = estimator != "minibatch"
    models, _ = check_features(batch, debiased=not exact, min_models=2, min_stimuli=1 if exact else None)
    if len(models) != num_models:
        raise ValueError(f"batch has {len(models)} models but the {made_for} was made for {num_models}")
    batch_dims = [int(shape[1]) for shape in shapes(models)]
    if dims is not None and batch_dims != list(dims):
        raise ValueError(f"batch dims {batch_dims} differ from the {dims_of}'s {list(dims)}")
    return models


def check_state(state, dims: tuple[int, ...], estimator: str) -> None:
    if not isinstance(state, CKAState):
        raise ValueError(f"expected a CKAState, got {type(state).__name__}")
    for name, expected, value in zip(CKAState._fields, state_shapes(dims, estimator), state):
        if tuple(np.shape(value)) != expected:
            raise ValueError(
                f"state.{name} has shape {tuple(np.shape(value))}; this stream's ({estimator}, dims "
                f"{list(dims)}) has {expected}: a state of another stream?"
            )


def apply_update(stream: CKAStream, state: CKAState, models: Sequence) -> CKAState:
    """``stream.update`` of a checked batch."""
    return _apply(state, _arrays(models), stream.reference, dims=stream.dims, estimator=stream.estimator)


def rebase(stream: CKAStream, state: CKAState, reference: Float[Array, " dims"]) -> CKAState:
    """A state whose sums were taken about ``reference``, moved to ``stream.reference``."""
    if stream.estimator == "minibatch":
        return state
    member = jnp.asarray(membership(stream.dims), stream.reference.dtype)
    return _move(state, reference - stream.reference, member)


_move = jax.jit(move)


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def _update(dims, estimator, reference, state: CKAState, batch) -> CKAState:
    models = check_batch(batch, len(dims), dims, estimator, "stream", "stream")
    check_state(state, dims, estimator)
    return _apply(state, _arrays(models), reference, dims=dims, estimator=estimator)


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def _merge(dims, estimator, a: CKAState, b: CKAState) -> CKAState:
    check_state(a, dims, estimator)
    check_state(b, dims, estimator)
    return add(a, b)


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def _compute(dims, estimator, state: CKAState) -> Float[Array, "models models"]:
    check_state(state, dims, estimator)
    if not is_traced(state.count):
        count, batches = int(state.count), int(state.batches)
        least = 4 if estimator == "exact-debiased" else 2
        if batches == 0:
            raise ValueError("no batches were added")
        if estimator != "minibatch" and count < least:
            raise ValueError(f"{count} stimuli; {estimator} CKA needs at least {least}")
    return _finish(state, dims=dims, estimator=estimator)


def _arrays(models: Sequence):
    """What ``_apply`` takes: a 3-d input as it is (no per-model copies), else a tuple of arrays."""
    return models.stacked if isinstance(models, ModelSlices) else tuple(models)


def _side_by_side(arrays, dtype) -> Float[Array, "batch dims"]:
    if isinstance(arrays, tuple):
        return jnp.concatenate([jnp.asarray(m).astype(dtype) for m in arrays], axis=1)
    return jnp.swapaxes(arrays, 0, 1).reshape(arrays.shape[1], -1).astype(dtype)


def _batch_hsic(arrays, dims: tuple[int, ...], dtype) -> Float[Array, "models models"]:
    """Unbiased HSIC of every pair within one batch: ``<K_u, L_u> / (n (n - 3))``."""
    n = arrays[0].shape[0] if isinstance(arrays, tuple) else arrays.shape[1]
    if plan.minibatch_route(n, dims) == "features":
        features = _side_by_side(arrays, dtype)
        shifted = features - features[0]  # as centre(): large means cost no accuracy
        member = jnp.asarray(membership(dims), dtype)
        cross, norm_products, _ = centred_sums(shifted - shifted.mean(axis=0), member, debiased=True)
        inner = inner_products(cross, norm_products, member, n, debiased=True)
    else:
        grams = jnp.stack([_u_gram(jnp.asarray(arrays[m]).astype(dtype)) for m in range(len(dims))])
        flat = grams.reshape(len(dims), -1)
        inner = jnp.matmul(flat, flat.T, precision=HIGHEST)
    return inner / (n * (n - 3))


def _u_gram(x: Float[Array, "batch dim"]) -> Float[Array, "batch batch"]:
    """U-centred Gram of one batch, in the features' units and dtype."""
    shifted = x - x[0]
    centred = shifted - shifted.mean(axis=0)
    return u_centre(jnp.matmul(centred, centred.T, precision=HIGHEST))


@partial(jax.jit, static_argnames=("dims", "estimator"))
def _apply(state: CKAState, arrays, reference: Float[Array, " dims"], *, dims: tuple[int, ...],
           estimator: str) -> CKAState:
    if estimator == "minibatch":
        hsic = _batch_hsic(arrays, dims, reference.dtype)
        size = arrays[0].shape[0] if isinstance(arrays, tuple) else arrays.shape[1]
        return state._replace(count=state.count + size, batches=state.batches + 1, hsic=state.hsic + hsic)
    member = jnp.asarray(membership(dims), reference.dtype)
    return add(state, batch_state(_side_by_side(arrays, reference.dtype), reference, member, estimator))


@partial(jax.jit, static_argnames=("dims", "estimator"))
def _finish(state: CKAState, *, dims: tuple[int, ...], estimator: str) -> Float[Array, "models models"]:
    if estimator == "minibatch":
        inner = state.hsic / state.batches.astype(state.hsic.dtype)
    else:
        member = jnp.asarray(membership(dims), state.total.dtype)
        inner = exact_inner(state, member, estimator == "exact-debiased")
    return normalise(inner, xp=jnp)


__all__ = ["ESTIMATORS", "CKAStream", "apply_update", "check_batch", "cka_stream", "rebase", "stream_from"]
