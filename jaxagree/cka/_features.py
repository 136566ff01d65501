"""The feature path of ``cka_matrix``: ``<K_a, K_b> = |X_a^T X_b|_F^2`` of centred features, so the
cross-products of all models' features side by side give every pair without forming a Gram;
tiled over groups of models, the columns split over a mesh's devices."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
from jaxtyping import Array, Float

from jaxagree.cka._centring import HIGHEST, debiased_correction, membership, prepare, prepare_one
from jaxagree.cka._checks import shapes
from jaxagree.cka.plan import matmul


def feature_tile_local(
    rows: Float[Array, "stimuli dims_i"],
    cols: Float[Array, "stimuli dims_j"],
    member_rows: Float[Array, "dims_i models_i"],
    member_cols: Float[Array, "dims_j models_j"],
    precision: str,
) -> Float[Array, "models_i models_j"]:
    """``|X_a^T X_b|_F^2`` for every model a of ``rows`` and b of ``cols`` (features side by side;
    ``member`` one-hot maps each feature column to its model)."""
    cross = matmul(rows.T, cols, precision)
    summed = jnp.matmul(member_rows.T, cross * cross, precision=HIGHEST)
    return jnp.matmul(summed, member_cols, precision=HIGHEST)


@partial(jax.jit, static_argnames=("precision", "mesh"))
def feature_tile(rows, cols, member_rows, member_cols, precision: str, mesh: Mesh | None):
    """:func:`feature_tile_local`, with the columns of ``cols`` split over ``mesh``'s devices
    (each device's share of a model's columns adds its part of ``|X_a^T X_b|^2``; one ``psum``)."""
    if mesh is None:
        return feature_tile_local(rows, cols, member_rows, member_cols, precision)
    axes = tuple(mesh.axis_names)
    pad = (-cols.shape[1]) % mesh.devices.size  # zero columns owned by no model add nothing
    cols = jnp.pad(cols, ((0, 0), (0, pad)))
    member_cols = jnp.pad(member_cols, ((0, pad), (0, 0)))

    def body(rows, cols, member_rows, member_cols):
        return jax.lax.psum(feature_tile_local(rows, cols, member_rows, member_cols, precision), axes)

    return jax.shard_map(
        body, mesh=mesh, in_specs=(P(), P(None, axes), P(), P(axes, None)), out_specs=P()
    )(rows, cols, member_rows, member_cols)



@partial(jax.jit, static_argnames=("start", "stop"))
def side_by_side_stacked(
    stacked: Float[Array, "models stimuli dim"], start: int, stop: int
) -> Float[Array, "stimuli columns"]:
    """Models ``start:stop`` of a ``[models, stimuli, dim]`` array, each centred and scaled
    (:func:`~jaxagree.cka._centring.prepare`), side by side: one dispatch for the whole group."""
    prepared = jax.vmap(prepare)(stacked[start:stop])
    return jnp.transpose(prepared, (1, 0, 2)).reshape(stacked.shape[1], -1)


@jax.jit
def _row_norms(
    features: Float[Array, "stimuli columns"], member: Float[Array, "columns models"]
) -> Float[Array, "models stimuli"]:
    """Per model (``member``'s columns), each stimulus's squared norm."""
    return jnp.matmul(features * features, member, precision=HIGHEST).T


def feature_path(
    models: Sequence,
    debiased: bool,
    block: int,
    stacked=None,
    *,
    mesh: Mesh | None = None,
    precision: str = "float32",
) -> np.ndarray:
    """CKA from ``<K_a, K_b> = |X_a^T X_b|_F^2`` of centred features, never forming a Gram.

    ``stacked``: the models as one ``[models, stimuli, dim]`` array, when the caller has it (each
    group of models is then prepared and laid side by side in one call, not one call per model).
    The debiased estimator follows from the same cross-products and the per-stimulus squared
    norms (:func:`~jaxagree.cka._centring.debiased_correction`).
    """
    n = shapes(models)[0][0]
    dims = [shape[1] for shape in shapes(models)]
    stacked = None if stacked is None else jnp.asarray(stacked)  # on the device once, not per group
    prepared = None if stacked is not None else [prepare_one(jnp.asarray(m)) for m in models]
    # Consecutive models whose summed dims fit one block.
    groups, current, width = [], [], 0
    for m, dim in enumerate(dims):
        if current and width + dim > block:
            groups.append(current)
            current, width = [], 0
        current.append(m)
        width += dim
    groups.append(current)

    def side_by_side(group):
        member = jnp.asarray(membership([dims[m] for m in group]))
        if prepared is None:
            return side_by_side_stacked(stacked, group[0], group[-1] + 1), member
        return jnp.concatenate([prepared[m] for m in group], axis=1), member

    num_models = len(models)
    inner = np.empty((num_models, num_models), np.float64)
    norms = np.empty((num_models, n), np.float64) if debiased else None
    for gi, rows in enumerate(groups):
        row_features, row_member = side_by_side(rows)
        if debiased:
            norms[rows] = np.asarray(_row_norms(row_features, row_member), np.float64)
        for cols in groups[gi:]:
            col_features, col_member = (row_features, row_member) if cols is rows else side_by_side(cols)
            tile = np.asarray(
                feature_tile(row_features, col_features, row_member, col_member, precision, mesh), np.float64
            )
            inner[np.ix_(rows, cols)] = tile
            inner[np.ix_(cols, rows)] = tile.T
    if debiased:
        totals = norms.sum(axis=1)
        inner = debiased_correction(inner, totals, totals, norms @ norms.T, n)
    return inner


__all__ = ["feature_path", "feature_tile"]
