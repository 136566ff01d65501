"""The streaming state of all-pairs CKA (:class:`CKAState`): sums over stimuli that add across
batches, devices and processes, and the closed forms that move those sums between origins.

Precision plan. The state is float32 (float64 when ``jax_enable_x64`` is on). The exact
estimators sum raw moments of ``z = x - r``, the features minus a fixed reference stimulus ``r``:
every ``z`` is of the order of the features' spread, however large their mean, so no sum
cancels against the mean. Each batch is centred on its own mean before its products and its sums
are then moved to ``r`` in closed form (:func:`move`), and :func:`exact_inner` moves the pooled
sums to the overall mean once, at the end; both moves are by a distance of the order of the
spread. Batches are added without compensation: rounding then grows like ``sqrt(batches)`` ulps
of the sums, and CKA of 10**6 stimuli with means of 1e3 against a spread of 1, streamed in 100 or
1,000 batches, stays within 1e-6 of a float64 reference (``tests/test_cka_stream.py`` asserts
1e-4). Counts are int32 (up to 2**31 - 1 stimuli).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from jaxagree.cka._centring import HIGHEST, debiased_correction


class CKAState(NamedTuple):
    """Sums over the stimuli streamed so far. Adding two states pools their stimuli: merging is
    a sum, ``jax.lax.psum`` across devices and a plain sum across processes (all states of one
    stream: see :func:`jaxagree.cka_stream`). Fields an estimator does not use have size 0.

    Attributes:
      count: ``int32 []``, stimuli.
      batches: ``int32 []``, batches (the minibatch estimator averages over them).
      total: ``[dims]``, ``sum z`` with ``z = x - r`` (features of all models side by side minus
        the stream's reference stimulus ``r``; exact estimators).
      cross: ``[dims, dims]``, ``sum z z^T`` (exact estimators).
      norm_products: ``[models, models]``, ``sum a a^T`` with ``a`` each model's ``|z|^2``
        (exact-debiased).
      norm_weighted: ``[models, dims]``, ``sum a z^T`` (exact-debiased).
      hsic: ``[models, models]``, sum of every batch's unbiased HSIC (minibatch).
    """

    count: Int[Array, ""]
    batches: Int[Array, ""]
    total: Float[Array, " dims"]
    cross: Float[Array, "dims dims"]
    norm_products: Float[Array, "models models"]
    norm_weighted: Float[Array, "models dims"]
    hsic: Float[Array, "models models"]


def state_shapes(dims: tuple[int, ...], estimator: str) -> CKAState:
    """Each field's shape for ``estimator`` over models of ``dims``."""
    num_models, total = len(dims), sum(dims)
    exact, debiased = estimator != "minibatch", estimator == "exact-debiased"
    tracked = num_models if debiased else 0
    return CKAState(
        (), (), (total if exact else 0,), (total if exact else 0,) * 2, (tracked, tracked),
        (tracked, total if debiased else 0), (0 if exact else num_models,) * 2,
    )


def empty_state(dims: tuple[int, ...], estimator: str, dtype) -> CKAState:
    shapes = state_shapes(dims, estimator)
    return CKAState(jnp.int32(0), jnp.int32(0), *(jnp.zeros(shape, dtype) for shape in shapes[2:]))


def _dot(a, b):
    return jnp.matmul(a, b, precision=HIGHEST)


def centred_sums(
    centred: Float[Array, "batch dims"], member: Float[Array, "dims models"], debiased: bool
) -> tuple[Float[Array, "dims dims"], Float[Array, "tracked tracked"], Float[Array, "tracked dims_or_0"]]:
    """``sum y y^T``, and for the debiased estimator ``sum q q^T`` and ``sum q y^T`` (``q`` each
    model's ``|y|^2``) of features ``y`` centred on their mean."""
    cross = _dot(centred.T, centred)
    if not debiased:
        return cross, jnp.zeros((0, 0), cross.dtype), jnp.zeros((0, 0), cross.dtype)
    norms = _dot(centred * centred, member)  # [batch, models]
    return cross, _dot(norms.T, norms), _dot(norms.T, centred)


def move(state: CKAState, offset: Float[Array, " dims"], member: Float[Array, "dims models"]) -> CKAState:
    """The sums of the same stimuli with every ``z`` replaced by ``z + offset``.

    ``sum z'z'^T = C + e s^T + s e^T + n e e^T`` (``s = sum z``). With ``u_i = z_i . e`` and
    ``c = |e|^2`` per model, each model's ``a' = a + 2u + c`` gives the norm sums below.
    """
    n = state.count.astype(offset.dtype)
    total, cross = state.total, state.cross
    moved = state._replace(
        total=total + n * offset,
        cross=cross + jnp.outer(offset, total) + jnp.outer(total, offset) + n * jnp.outer(offset, offset),
    )
    if state.norm_products.size == 0:
        return moved
    spread = member * offset[:, None]  # [dims, models]: each model's offset in its own columns
    norm_sums = _dot(jnp.diag(cross), member)  # sum a per model
    spread_sums = _dot(total, spread)  # sum u per model
    shift_sq = _dot(offset * offset, member)  # c per model
    cross_spread = _dot(cross, spread)  # [dims, models]: sum_i z_i u_i
    weighted_spread = _dot(state.norm_weighted, spread)  # [models, models]: sum a u
    linear = norm_sums + 2 * spread_sums  # sum (a + 2u) per model
    products = (
        state.norm_products
        + 2 * (weighted_spread + weighted_spread.T)
        + 4 * _dot(spread.T, cross_spread)
        + jnp.outer(linear, shift_sq) + jnp.outer(shift_sq, linear)
        + n * jnp.outer(shift_sq, shift_sq)
    )
    weighted = (
        state.norm_weighted
        + jnp.outer(linear, offset)
        + 2 * cross_spread.T
        + jnp.outer(shift_sq, total)
        + n * jnp.outer(shift_sq, offset)
    )
    return moved._replace(norm_products=products, norm_weighted=weighted)


def batch_state(
    features: Float[Array, "batch dims"], reference: Float[Array, " dims"], member: Float[Array, "dims models"],
    estimator: str,
) -> CKAState:
    """One batch's :class:`CKAState` (exact estimators), its sums taken about ``reference``."""
    shifted = features.astype(reference.dtype) - reference
    mean = shifted.mean(axis=0)
    # Products of the batch centred on its own mean, then moved to the reference in closed form:
    # no product of two O(mean) terms is ever summed.
    cross, norm_products, norm_weighted = centred_sums(shifted - mean, member, estimator == "exact-debiased")
    empty = jnp.zeros((0, 0), reference.dtype)
    centred = CKAState(jnp.int32(features.shape[0]), jnp.int32(1), jnp.zeros_like(mean), cross, norm_products,
                       norm_weighted, empty)
    return move(centred, mean, member)


def inner_products(
    cross: Float[Array, "dims dims"],
    norm_products: Float[Array, "tracked tracked"],
    member: Float[Array, "dims models"],
    num_stimuli: Array | int,
    debiased: bool,
) -> Float[Array, "models models"]:
    """``<K_a, K_b>`` of centred (or U-centred) Grams from the centred sums: ``|X_a^T X_b|_F^2``,
    plus the debiased correction from the norm sums."""
    inner = _dot(member.T, _dot(cross * cross, member))
    if not debiased:
        return inner
    norm_sums = _dot(jnp.diag(cross), member)
    return debiased_correction(inner, norm_sums, norm_sums, norm_products, num_stimuli)


def exact_inner(state: CKAState, member: Float[Array, "dims models"], debiased: bool) -> Float[Array, "models models"]:
    """Gram inner products of all streamed stimuli: the sums recentred once, on their mean."""
    n = state.count.astype(state.total.dtype)
    centred = move(state, -state.total / n, member)
    return inner_products(centred.cross, centred.norm_products, member, n, debiased)


@jax.jit
def add(a: CKAState, b: CKAState) -> CKAState:
    return jax.tree.map(jnp.add, a, b)


__all__ = ["CKAState", "add", "batch_state", "centred_sums", "empty_state", "exact_inner", "inner_products", "move",
           "state_shapes"]
