"""Centring shared by every CKA path, and the step from Gram inner products to CKA.

``centre`` shifts by the first stimulus before averaging; ``u_centre`` is Szekely & Rizzo's
U-centring; ``debiased_correction`` turns inner products of centred Grams, written from
cross-products, into those of U-centred Grams (the feature path and the streaming state share it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from jaxagree._typing import AnyArray

HIGHEST = jax.lax.Precision.HIGHEST


class Centred(NamedTuple):
    centred: Float[Array, "stimuli dim"]  # the features minus their mean
    first: Float[Array, " dim"]  # the first stimulus, the shift taken before averaging
    mean: Float[Array, " dim"]  # mean of the shifted features: mean of x = first + mean
    scale: Float[Array, ""]  # max-abs of ``centred``, 1 if the features are constant


def centre(x: Float[Array, "stimuli dim"]) -> Centred:
    # Shifting by the first stimulus before averaging keeps float32 exact for constant features
    # and accurate when the mean is large against the spread.
    x = x.astype(jnp.float32)
    shifted = x - x[0]
    mean = shifted.mean(axis=0)
    centred = shifted - mean
    # CKA is scale invariant: unit max-abs features keep products clear of float32 under- and
    # overflow (features of 1e-20 or 1e20 are not constant and must not look so).
    scale = jnp.abs(centred).max()
    return Centred(centred, x[0], mean, jnp.where(scale > 0, scale, 1.0))


def prepare(x: Float[Array, "stimuli dim"]) -> Float[Array, "stimuli dim"]:
    """Centred features scaled to unit max-abs (all zero if constant)."""
    centred = centre(x)
    return centred.centred / centred.scale


prepare_one = jax.jit(prepare)


def u_centre(gram: Float[Array, "n n"]) -> Float[Array, "n n"]:
    """U-centring (Szekely & Rizzo 2014): zero diagonal, rows and columns summing to zero."""
    n = gram.shape[0]
    off = 1.0 - jnp.eye(n, dtype=gram.dtype)
    gram = gram * off
    row = gram.sum(axis=1) / (n - 2)
    row = row - row.sum() / (2 * (n - 1))
    return (gram - row[:, None] - row[None, :]) * off


def unit_gram(x: Float[Array, "stimuli dim"], debiased: bool) -> Float[Array, "stimuli stimuli"]:
    """The centred (or U-centred) Gram of ``x`` scaled to unit Frobenius norm (zero if constant)."""
    xc = prepare(x)
    gram = jnp.matmul(xc, xc.T, precision=HIGHEST)
    if debiased:
        gram = u_centre(gram)
    norm = jnp.sqrt(jnp.sum(gram * gram))
    return jnp.where(norm > 0, gram / jnp.where(norm > 0, norm, 1.0), 0.0)


def membership(dims: Sequence[int]) -> np.ndarray:
    """One-hot ``[sum(dims), models]``: which model owns each column of features side by side."""
    owner = np.repeat(np.arange(len(dims)), dims)
    return (owner[:, None] == np.arange(len(dims))[None, :]).astype(np.float32)


def debiased_correction(
    inner: Float[AnyArray, "models_i models_j"],
    norm_sums_i: Float[AnyArray, " models_i"],
    norm_sums_j: Float[AnyArray, " models_j"],
    norm_products: Float[AnyArray, "models_i models_j"],
    num_stimuli: int | float | Array,
) -> Float[AnyArray, "models_i models_j"]:
    """``<K_u, L_u>`` of U-centred Grams from ``inner = <K, L>`` of centred ones (``|X^T Y|_F^2``).

    With centred features and per-stimulus squared norms ``a_i = |x_i|^2``, ``b_i = |y_i|^2``:
    ``<K_u, L_u> = <K, L> + (sum a)(sum b) / ((n-1)(n-2)) - n/(n-2) sum a_i b_i``. ``norm_products``
    holds ``sum a_i b_i``. NumPy or JAX arrays alike (float64 on the host, or inside ``jit``).
    """
    n = num_stimuli
    outer = norm_sums_i[:, None] * norm_sums_j[None, :]
    return inner + (outer / ((n - 1) * (n - 2)) - n / (n - 2) * norm_products)


def normalise(inner: Float[AnyArray, "models models"], xp=np) -> Float[AnyArray, "models models"]:
    """CKA from HSIC-like inner products: ``inner_ab / sqrt(inner_aa inner_bb)``, symmetrised
    (diagonal blocks are products whose two halves may round apart), NaN in the row and column
    of a model with no variance. ``xp``: ``numpy`` (float64 on the host) or ``jax.numpy``."""
    scale = xp.sqrt(xp.clip(xp.diagonal(inner), 0.0, None))
    outer = scale[:, None] * scale[None, :]
    result = inner / xp.where(outer > 0, outer, 1.0)
    return xp.where(outer > 0, (result + result.T) / 2, xp.nan)

