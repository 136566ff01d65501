"""The Gram path of ``cka_matrix``: each model's (U-)centred Gram streamed in row blocks (half of
it, by symmetry: see :class:`~jaxagree.cka.plan.Layout`), every pair's blocks multiplied and
summed, in tiles of models, the row blocks split over a mesh's devices.

The Gram is never held whole nor prepared features copied: one pass over each model's features
gives its centring (:func:`centring`), and every row block centres and scales its own rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
from jaxtyping import Array, Float, Int

from jaxagree.cka._centring import centre
from jaxagree.cka._checks import shapes
from jaxagree.cka.plan import GramBlocks, Layout, column_weights, gram_layout, matmul
from jaxagree.sharding import device_local


class Centring(NamedTuple):
    first: Float[Array, "models dim"]  # the first stimulus (the shift)
    mean: Float[Array, "models dim"]  # mean of the shifted features
    scale: Float[Array, " models"]  # max-abs of the centred features (1 if constant)
    u_shift: Float[Array, "models stimuli"]  # U-centring: r_i, subtracted from row i and column i


def centring(features: Float[Array, "models stimuli dim"], debiased: bool) -> Centring:
    """One pass over every model's features for what ``prepare`` would do, without keeping a
    prepared copy."""

    def one(x):
        centred, first, mean, scale = centre(x)
        if not debiased:
            return first, mean, scale, jnp.zeros(x.shape[0], jnp.float32)
        # U-centring of the Gram of centred features, in closed form: with the diagonal zeroed,
        # row i sums to -|x_i|^2, so the row (and column) offsets need only the norms.
        n = x.shape[0]
        row = -jnp.sum((centred / scale) ** 2, axis=1) / (n - 2)
        return first, mean, scale, row - row.sum() / (2 * (n - 1))

    return Centring(*jax.lax.map(one, features))


def gram_step(
    x: Float[Array, "stimuli dim"],
    centring: tuple,
    start: Int[Array, ""],
    layout: Layout,
    debiased: bool,
    precision: str,
) -> Float[Array, " cells"]:
    """One model's weighted Gram cells of the row block starting at stimulus ``start``."""
    first, mean, scale, u_shift = centring
    n = x.shape[0]
    padded = layout.rows * layout.blocks
    row_index = start + jnp.arange(layout.rows)
    col_index = (start + jnp.arange(layout.span)) % padded
    row_valid, col_valid = row_index < n, col_index < n

    def prepared(index, valid):
        picked = jnp.take(x, jnp.minimum(index, n - 1), axis=0).astype(jnp.float32)
        return jnp.where(valid[:, None], ((picked - first) - mean) / scale, 0.0)

    weights = jnp.asarray(column_weights(layout))
    rows = prepared(row_index, row_valid)
    cols = prepared(col_index, col_valid) * weights[:, None]
    gram = matmul(rows, cols.T, precision)
    if debiased:
        r_rows = jnp.where(row_valid, jnp.take(u_shift, jnp.minimum(row_index, n - 1)), 0.0)
        r_cols = jnp.where(col_valid, jnp.take(u_shift, jnp.minimum(col_index, n - 1)), 0.0)
        keep = row_valid[:, None] & col_valid[None, :] & (row_index[:, None] != col_index[None, :])
        gram = jnp.where(keep, gram - (r_rows[:, None] + r_cols[None, :]) * weights, 0.0)
    return gram.reshape(-1)


def gram_inner_local(
    rows: Float[Array, "models_i stimuli dim_i"],
    cols: Float[Array, "models_j stimuli dim_j"] | None,
    layout: Layout,
    debiased: bool,
    precision: str,
    first_block: Int[Array, ""],
    num_blocks: int,
    device_axes: tuple[str, ...] | None = None,
) -> Float[Array, "models_i models_j"]:
    """Sum over ``num_blocks`` row blocks from ``first_block`` of the weighted Gram-cell products
    of every model of ``rows`` with every model of ``cols`` (``rows`` itself when None)."""
    centring_rows = centring(rows, debiased)
    centring_cols = centring_rows if cols is None else centring(cols, debiased)

    def cells(features, centring, start):
        return jax.lax.map(lambda xc: gram_step(xc[0], xc[1], start, layout, debiased, precision),
                           (features, tuple(centring)))

    def step(total, block):
        start = block * layout.rows
        a = cells(rows, centring_rows, start)
        b = a if cols is None else cells(cols, centring_cols, start)
        return total + matmul(a, b.T, precision), None

    shape = (rows.shape[0], rows.shape[0] if cols is None else cols.shape[0])
    blocks = first_block + jnp.arange(num_blocks)
    total, _ = jax.lax.scan(step, device_local(jnp.zeros(shape, jnp.float32), device_axes), blocks)
    return total


@partial(jax.jit, static_argnames=("layout", "debiased", "precision", "mesh"))
def gram_inner(rows, cols, layout: Layout, debiased: bool, precision: str, mesh: Mesh | None):
    """Unnormalised (U-)centred Gram inner products of a tile of models, split over ``mesh``'s
    devices by row blocks (each device sums its blocks; one ``psum`` of the ``[M_i, M_j]`` tile)."""
    if mesh is None:
        return gram_inner_local(rows, cols, layout, debiased, precision, jnp.int32(0), layout.blocks)
    axes = tuple(mesh.axis_names)
    per_shard = layout.blocks // mesh.devices.size

    def body(*tiles):
        shard = jax.lax.axis_index(axes)
        local = gram_inner_local(*tiles, *([None] if cols is None else []), layout, debiased, precision,
                                  shard * per_shard, per_shard, axes)
        return jax.lax.psum(local, axes)

    tiles = (rows,) if cols is None else (rows, cols)
    return jax.shard_map(body, mesh=mesh, in_specs=(P(),) * len(tiles), out_specs=P())(*tiles)




def gram_path(
    models: Sequence,
    debiased: bool,
    block: int,
    stacked=None,
    *,
    mesh: Mesh | None = None,
    precision: str = "float32",
    blocks: GramBlocks = GramBlocks(),
) -> np.ndarray:
    """(U-)centred Gram inner products of every pair, in tiles of ``block`` models. ``stacked``:
    the models as one ``[models, stimuli, dim]`` array, when the caller has it. Models of a tile
    whose dims differ are zero-padded to the widest (zero columns leave a Gram unchanged).
    ``blocks``: the row-block sizes (see :mod:`jaxagree.cka.plan`)."""
    num_models, n = len(models), shapes(models)[0][0]
    layout = gram_layout(n, 1 if mesh is None else mesh.devices.size, blocks)

    def tile(start: int, stop: int) -> jax.Array:
        if stacked is not None:
            return jnp.asarray(stacked if stop - start == num_models else stacked[start:stop])
        width = max(m.shape[1] for m in models[start:stop])
        return jnp.stack([jnp.pad(jnp.asarray(m), ((0, 0), (0, width - m.shape[1]))) for m in models[start:stop]])

    inner = np.empty((num_models, num_models), np.float64)
    starts = range(0, num_models, block)
    for i in starts:
        rows = tile(i, min(i + block, num_models))
        for j in starts:
            if j < i:
                continue
            cols = None if j == i else tile(j, min(j + block, num_models))
            part = np.asarray(gram_inner(rows, cols, layout, debiased, precision, mesh))
            inner[i : i + part.shape[0], j : j + part.shape[1]] = part
            inner[j : j + part.shape[1], i : i + part.shape[0]] = part.T
    return inner




__all__ = ["Centring", "centring", "gram_inner", "gram_path", "gram_step"]
