"""Linear CKA (Kornblith et al. 2019): one pair, or every pair of many models at once.

Two estimators, both from centred Gram matrices ``K = X_c X_c^T`` of the features:

* biased (``debiased=False``): Kornblith et al.'s CKA, ``<K_c, L_c> / (|K_c| |L_c|)`` with
  ``K_c = H K H``;
* debiased (``debiased=True``): the same ratio of the unbiased HSIC estimator of Song et al.
  (2012), written with U-centred Grams (zero diagonal, Szekely & Rizzo 2014). It is near 0 for
  independent representations where the biased estimator is not, and needs at least 4 stimuli.

Two ways to every pair, the cheaper chosen from the shapes and the memory bound
(:mod:`jaxagree.cka.plan`):

* the Gram path streams each model's (U-)centred Gram in row blocks, half of it by symmetry, and
  adds the products of every pair's blocks (``~M n^2 d + M^2 n^2`` FLOPs; one row block's cells
  held per model, never a whole Gram);
* the feature path never forms a Gram: ``<K_a, K_b> = |X_a^T X_b|_F^2``, so the cross-products of
  all centred features side by side give every pair (``~n D^2`` FLOPs for ``D`` summed dims); the
  debiased estimator follows from the same products and per-stimulus norms.

Both are tiled over blocks of models so that no intermediate exceeds ``max_bytes``; the result
does not depend on the tiling. Features are centred (after a shift by the first stimulus) and
scaled to unit max-abs before any product, which keeps float32 accurate when activations have
large means or extreme scales.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from functools import partial
from typing import no_type_check

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jaxtyping import Array, Float

from jaxagree._checks import is_traced
from jaxagree._typing import AnyArray
from jaxagree.cka import plan
from jaxagree.cka._centring import normalise, unit_gram
from jaxagree.cka._checks import check_features, shapes
from jaxagree.cka._features import feature_path
from jaxagree.cka._gram import gram_path


@partial(jax.jit, static_argnames="debiased")
def _pair(x: Float[Array, "stimuli dx"], y: Float[Array, "stimuli dy"], debiased: bool) -> Float[Array, ""]:
    gram_x, gram_y = unit_gram(x, debiased), unit_gram(y, debiased)
    constant = (jnp.sum(gram_x * gram_x) == 0) | (jnp.sum(gram_y * gram_y) == 0)
    return jnp.where(constant, jnp.nan, jnp.sum(gram_x * gram_y))


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def linear_cka(
    x: Float[AnyArray, "stimuli dx"], y: Float[AnyArray, "stimuli dy"], *, debiased: bool = False
) -> Float[Array, ""]:
    """Linear CKA of two representations of the same stimuli.

    Args:
      x: ``[stimuli, dx]`` features of one model.
      y: ``[stimuli, dy]`` features of another (dims may differ).
      debiased: use the unbiased HSIC estimator (needs at least 4 stimuli).

    Returns:
      ``float32`` scalar in ``[0, 1]`` (debiased CKA may be slightly negative); NaN, with a
      warning, if either representation is constant over the stimuli.
    """
    (x, y), _ = check_features([x, y], debiased=debiased, min_models=2)
    value = _pair(jnp.asarray(x), jnp.asarray(y), debiased)
    if not is_traced(value) and bool(jnp.isnan(value)):
        warnings.warn("linear_cka: a representation is constant over the stimuli; CKA is undefined (NaN)",
                      RuntimeWarning, stacklevel=2)
    return value


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def cka_matrix(
    features: Float[AnyArray, "models stimuli dim"]
    | Sequence[Float[AnyArray, "stimuli _"]]
    | Mapping[str, Float[AnyArray, "stimuli _"]],
    *,
    debiased: bool = False,
    max_bytes: int | None = None,
    method: str = "auto",
    mesh: Mesh | None = None,
    matmul_precision: str = "float32",
) -> Float[Array, "models models"]:
    """Linear CKA of every pair of models at once.

    Two ways to the same numbers, the cheaper chosen from the shapes (``method="auto"``):
    ``"gram"`` streams each model's (U-)centred Gram in row blocks, half of it by symmetry, and
    adds the products of every pair's blocks (``~M n^2 d + M^2 n^2`` FLOPs; the Grams are never
    held whole); ``"features"`` takes the cross-products of all centred features side by side
    (``~n D^2`` with ``D`` the summed dims), which wins when dims are small against stimuli.

    Args:
      features: ``[models, stimuli, dim]``, or a sequence of ``[stimuli, dim_m]`` arrays whose
        dims may differ (all over the same stimuli, in the same order), or a mapping from model
        name to such arrays (messages then name the models).
      debiased: use the unbiased HSIC estimator (needs at least 4 stimuli).
      max_bytes: bound on the blocks of Grams or cross-products held at once (default: a quarter
        of the device's memory). Models are processed in blocks that fit; the result does not
        depend on it.
      method: ``"auto"``, ``"gram"`` or ``"features"``.
      mesh: optional device mesh (e.g. :func:`jaxagree.stimulus_mesh`); the work is split over
        all of its devices (the Gram path by row blocks of the Grams, the feature path by feature
        columns) and the result equals one device's up to float32 rounding. ``max_bytes`` then
        bounds each device.
      matmul_precision: ``"float32"`` (default), or for speed on accelerators
        ``"tensorfloat32"`` (TF32 on NVIDIA GPUs; float32 where the device has no TF32) or
        ``"bfloat16"`` (bfloat16 operands); products always accumulate in float32. Expect
        differences from float32 of about 1e-3 (TF32) and 1e-2 (bfloat16) in CKA.

    Returns:
      ``float32 [models, models]``, symmetric with unit diagonal. A model whose features are
      constant over the stimuli gets NaN in its row and column, and a warning names it.
    """
    if method not in ("auto", "gram", "features"):
        raise ValueError(f"method must be 'auto', 'gram' or 'features', got {method!r}")
    if matmul_precision not in plan.PRECISIONS:
        raise ValueError(f"matmul_precision must be one of {plan.PRECISIONS}, got {matmul_precision!r}")
    if mesh is not None and not isinstance(mesh, Mesh):
        raise ValueError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    models, labels = check_features(features, debiased=debiased, min_models=2)
    num_stimuli = shapes(models)[0][0]
    dims = [int(shape[1]) for shape in shapes(models)]
    max_bytes = plan.default_max_bytes() if max_bytes is None else int(max_bytes)
    shards = 1 if mesh is None else mesh.devices.size
    blocks = plan.current_gram_blocks()
    path = plan.choose_path(dims, num_stimuli, max_bytes, method, debiased, shards, blocks)
    stacked = features if hasattr(features, "ndim") else None  # no second copy of a 3-d input
    if path.name == "gram":
        inner = gram_path(models, debiased, path.block, stacked, mesh=mesh, precision=matmul_precision, blocks=blocks)
    else:
        inner = feature_path(models, debiased, path.block, stacked, mesh=mesh, precision=matmul_precision)
    result = normalise(inner)
    constant = np.isnan(np.diag(result))
    if constant.any():
        names = ", ".join(labels[m] for m in np.flatnonzero(constant)[:10])
        warnings.warn(
            f"cka_matrix: {names}: features constant over the stimuli; CKA is undefined there "
            "(NaN row and column)",
            RuntimeWarning,
            stacklevel=2,
        )
    np.fill_diagonal(result, np.where(constant, np.nan, 1.0))
    return jnp.asarray(result)


__all__ = ["cka_matrix", "linear_cka"]
