"""Linear CKA (Kornblith et al. 2019): one pair, or every pair of many models at once.

Two estimators, both from centred Gram matrices ``K = X_c X_c^T`` of the features:

* biased (``debiased=False``): Kornblith et al.'s CKA, ``<K_c, L_c> / (|K_c| |L_c|)`` with
  ``K_c = H K H``;
* debiased (``debiased=True``): the same ratio of the unbiased HSIC estimator of Song et al.
  (2012), written with U-centred Grams (zero diagonal, Szekely & Rizzo 2014). It is near 0 for
  independent representations where the biased estimator is not, and needs at least 4 stimuli.

Two ways to every pair, the cheaper chosen from the shapes and the memory bound:

* the Gram path forms each model's unit-norm (U-)centred Gram once and takes the products of the
  stacked Grams (``~2 M n^2 d + 2 M^2 n^2`` FLOPs, ``4 n^2`` bytes per model held);
* the feature path never forms a Gram: ``<K_a, K_b> = |X_a^T X_b|_F^2``, so the cross-products of
  all centred features side by side give every pair (``~n D^2`` FLOPs for ``D`` summed dims); the
  debiased estimator follows from the same products and per-stimulus norms.

Both are tiled over blocks of models so that no intermediate exceeds ``max_bytes``; the result
does not depend on the tiling. Features are centred (after a shift by the first stimulus) and
scaled to unit max-abs before any product, which keeps float32 accurate when activations have
large means or extreme scales.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from functools import partial
from typing import NamedTuple, no_type_check

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
from jaxtyping import Array, Float, Int

from jaxagree._checks import is_traced
from jaxagree._typing import AnyArray
from jaxagree.sharding import device_local

_HIGHEST = jax.lax.Precision.HIGHEST


class _Centred(NamedTuple):
    centred: Float[Array, "stimuli dim"]  # the features minus their mean
    first: Float[Array, " dim"]  # the first stimulus, the shift taken before averaging
    mean: Float[Array, " dim"]  # mean of the shifted features: mean of x = first + mean
    scale: Float[Array, ""]  # max-abs of ``centred``, 1 if the features are constant


def _centre(x: Float[Array, "stimuli dim"]) -> _Centred:
    # Shifting by the first stimulus before averaging keeps float32 exact for constant features
    # and accurate when the mean is large against the spread.
    x = x.astype(jnp.float32)
    shifted = x - x[0]
    mean = shifted.mean(axis=0)
    centred = shifted - mean
    # CKA is scale invariant: unit max-abs features keep products clear of float32 under- and
    # overflow (features of 1e-20 or 1e20 are not constant and must not look so).
    scale = jnp.abs(centred).max()
    return _Centred(centred, x[0], mean, jnp.where(scale > 0, scale, 1.0))


def _prepare(x: Float[Array, "stimuli dim"]) -> Float[Array, "stimuli dim"]:
    """Centred features scaled to unit max-abs (all zero if constant)."""
    centred = _centre(x)
    return centred.centred / centred.scale


_prepare_one = jax.jit(_prepare)


def _unit_gram(x: Float[Array, "stimuli dim"], debiased: bool) -> Float[Array, "stimuli stimuli"]:
    """The centred (or U-centred) Gram of ``x`` scaled to unit Frobenius norm (zero if constant)."""
    xc = _prepare(x)
    gram = jnp.matmul(xc, xc.T, precision=_HIGHEST)
    if debiased:
        gram = _u_centre(gram)
    norm = jnp.sqrt(jnp.sum(gram * gram))
    return jnp.where(norm > 0, gram / jnp.where(norm > 0, norm, 1.0), 0.0)


@partial(jax.jit, static_argnames="debiased")
def _pair(x: Float[Array, "stimuli dx"], y: Float[Array, "stimuli dy"], debiased: bool) -> Float[Array, ""]:
    gram_x, gram_y = _unit_gram(x, debiased), _unit_gram(y, debiased)
    constant = (jnp.sum(gram_x * gram_x) == 0) | (jnp.sum(gram_y * gram_y) == 0)
    return jnp.where(constant, jnp.nan, jnp.sum(gram_x * gram_y))


class _Layout(NamedTuple):
    """How the Gram path covers each ``n x n`` Gram with ``blocks`` row blocks of ``rows`` stimuli.

    Row block ``I`` takes the next ``blocks // 2 + 1`` column blocks cyclically (``I, I+1, ...``):
    with symmetric Grams every unordered pair of blocks is met once (off-diagonal pairs weighted
    2, the opposite block of an even count met from both sides with weight 1), so about half of
    each Gram and of the products is computed. Every row block has the same shape, so the row
    blocks are a ``scan`` and split evenly over devices (``blocks`` is a multiple of the shards).
    """

    rows: int  # stimuli per row block
    blocks: int  # row blocks (padded stimuli: rows * blocks >= n)
    span: int  # columns per row block: (blocks // 2 + 1) * rows

    @property
    def step_cells(self) -> int:
        return self.rows * self.span

    @property
    def cells(self) -> int:
        """Gram cells computed per model (about ``n^2 / 2``)."""
        return self.blocks * self.step_cells


_STEP_CELLS = 2**18  # Gram cells per model per scan step: long enough for efficient products
_MIN_ROWS = 32  # fewer rows per block make the Gram matmuls inefficient
_MIN_BLOCKS = 5  # fewer blocks save less of each Gram: 1 block computes all of it, 3 blocks 2/3, 5 blocks 3/5


def _layout(num_stimuli: int, shards: int = 1) -> _Layout:
    rows = max(_MIN_ROWS, min(2 * _STEP_CELLS // num_stimuli, num_stimuli // _MIN_BLOCKS))
    blocks = -(-num_stimuli // rows)
    if shards == 1 and blocks % 2 == 0:
        blocks += 1  # an odd count covers the triangle without a block met twice
    blocks = -(-blocks // shards) * shards
    rows = -(-num_stimuli // blocks)
    return _Layout(rows, blocks, (blocks // 2 + 1) * rows)


def _column_weights(layout: _Layout) -> np.ndarray:
    """sqrt of each column's weight in a row block (see :class:`_Layout`)."""
    offset = np.arange(layout.span) // layout.rows
    once = (offset == 0) | ((layout.blocks % 2 == 0) & (offset == layout.blocks // 2))
    return np.where(once, 1.0, math.sqrt(2.0)).astype(np.float32)


class _Centring(NamedTuple):
    first: Float[Array, "models dim"]  # the first stimulus (the shift)
    mean: Float[Array, "models dim"]  # mean of the shifted features
    scale: Float[Array, " models"]  # max-abs of the centred features (1 if constant)
    u_shift: Float[Array, "models stimuli"]  # U-centring: r_i, subtracted from row i and column i


def _centring(features: Float[Array, "models stimuli dim"], debiased: bool) -> _Centring:
    """One pass over every model's features for what :func:`_prepare` would do, without
    keeping a prepared copy."""

    def one(x):
        centred, first, mean, scale = _centre(x)
        if not debiased:
            return first, mean, scale, jnp.zeros(x.shape[0], jnp.float32)
        # U-centring of the Gram of centred features, in closed form: with the diagonal zeroed,
        # row i sums to -|x_i|^2, so the row (and column) offsets need only the norms.
        n = x.shape[0]
        row = -jnp.sum((centred / scale) ** 2, axis=1) / (n - 2)
        return first, mean, scale, row - row.sum() / (2 * (n - 1))

    return _Centring(*jax.lax.map(one, features))


def _gram_step(
    x: Float[Array, "stimuli dim"],
    centring: tuple,
    start: Int[Array, ""],
    layout: _Layout,
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

    weights = jnp.asarray(_column_weights(layout))
    rows = prepared(row_index, row_valid)
    cols = prepared(col_index, col_valid) * weights[:, None]
    gram = _matmul(rows, cols.T, precision)
    if debiased:
        r_rows = jnp.where(row_valid, jnp.take(u_shift, jnp.minimum(row_index, n - 1)), 0.0)
        r_cols = jnp.where(col_valid, jnp.take(u_shift, jnp.minimum(col_index, n - 1)), 0.0)
        keep = row_valid[:, None] & col_valid[None, :] & (row_index[:, None] != col_index[None, :])
        gram = jnp.where(keep, gram - (r_rows[:, None] + r_cols[None, :]) * weights, 0.0)
    return gram.reshape(-1)


def _gram_inner_local(
    rows: Float[Array, "models_i stimuli dim_i"],
    cols: Float[Array, "models_j stimuli dim_j"] | None,
    layout: _Layout,
    debiased: bool,
    precision: str,
    first_block: Int[Array, ""],
    num_blocks: int,
    device_axes: tuple[str, ...] | None = None,
) -> Float[Array, "models_i models_j"]:
    """Sum over ``num_blocks`` row blocks from ``first_block`` of the weighted Gram-cell products
    of every model of ``rows`` with every model of ``cols`` (``rows`` itself when None)."""
    centring_rows = _centring(rows, debiased)
    centring_cols = centring_rows if cols is None else _centring(cols, debiased)

    def cells(features, centring, start):
        return jax.lax.map(lambda xc: _gram_step(xc[0], xc[1], start, layout, debiased, precision),
                           (features, tuple(centring)))

    def step(total, block):
        start = block * layout.rows
        a = cells(rows, centring_rows, start)
        b = a if cols is None else cells(cols, centring_cols, start)
        return total + _matmul(a, b.T, precision), None

    shape = (rows.shape[0], rows.shape[0] if cols is None else cols.shape[0])
    blocks = first_block + jnp.arange(num_blocks)
    total, _ = jax.lax.scan(step, device_local(jnp.zeros(shape, jnp.float32), device_axes), blocks)
    return total


@partial(jax.jit, static_argnames=("layout", "debiased", "precision", "mesh"))
def _gram_inner(rows, cols, layout: _Layout, debiased: bool, precision: str, mesh: Mesh | None):
    """Unnormalised (U-)centred Gram inner products of a tile of models, split over ``mesh``'s
    devices by row blocks (each device sums its blocks; one ``psum`` of the ``[M_i, M_j]`` tile)."""
    if mesh is None:
        return _gram_inner_local(rows, cols, layout, debiased, precision, jnp.int32(0), layout.blocks)
    axes = tuple(mesh.axis_names)
    per_shard = layout.blocks // mesh.devices.size

    def body(*tiles):
        shard = jax.lax.axis_index(axes)
        local = _gram_inner_local(*tiles, *([None] if cols is None else []), layout, debiased, precision,
                                  shard * per_shard, per_shard, axes)
        return jax.lax.psum(local, axes)

    tiles = (rows,) if cols is None else (rows, cols)
    return jax.shard_map(body, mesh=mesh, in_specs=(P(),) * len(tiles), out_specs=P())(*tiles)


def _feature_tile_local(
    rows: Float[Array, "stimuli dims_i"],
    cols: Float[Array, "stimuli dims_j"],
    member_rows: Float[Array, "dims_i models_i"],
    member_cols: Float[Array, "dims_j models_j"],
    precision: str,
) -> Float[Array, "models_i models_j"]:
    """``|X_a^T X_b|_F^2`` for every model a of ``rows`` and b of ``cols`` (features side by side;
    ``member`` one-hot maps each feature column to its model)."""
    cross = _matmul(rows.T, cols, precision)
    summed = jnp.matmul(member_rows.T, cross * cross, precision=_HIGHEST)
    return jnp.matmul(summed, member_cols, precision=_HIGHEST)


@partial(jax.jit, static_argnames=("precision", "mesh"))
def _feature_tile(rows, cols, member_rows, member_cols, precision: str, mesh: Mesh | None):
    """:func:`_feature_tile_local`, with the columns of ``cols`` split over ``mesh``'s devices
    (each device's share of a model's columns adds its part of ``|X_a^T X_b|^2``; one ``psum``)."""
    if mesh is None:
        return _feature_tile_local(rows, cols, member_rows, member_cols, precision)
    axes = tuple(mesh.axis_names)
    pad = (-cols.shape[1]) % mesh.devices.size  # zero columns owned by no model add nothing
    cols = jnp.pad(cols, ((0, 0), (0, pad)))
    member_cols = jnp.pad(member_cols, ((0, pad), (0, 0)))

    def body(rows, cols, member_rows, member_cols):
        return jax.lax.psum(_feature_tile_local(rows, cols, member_rows, member_cols, precision), axes)

    return jax.shard_map(
        body, mesh=mesh, in_specs=(P(), P(None, axes), P(), P(axes, None)), out_specs=P()
    )(rows, cols, member_rows, member_cols)


_PRECISIONS = ("float32", "tensorfloat32", "bfloat16")


def _matmul(a: Float[Array, "m k"], b: Float[Array, "k n"], precision: str) -> Float[Array, "m n"]:
    """``a @ b`` with float32 accumulation: float32 products, TF32 where the device has it
    (``Precision.HIGH``: TF32 on NVIDIA GPUs, 3 bfloat16 passes on TPU, float32 on CPU), or
    bfloat16 operands."""
    if precision == "bfloat16":
        return jnp.matmul(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16), preferred_element_type=jnp.float32)
    level = jax.lax.Precision.HIGH if precision == "tensorfloat32" else _HIGHEST
    return jnp.matmul(a, b, precision=level)


def _default_max_bytes() -> int:
    """A quarter of the first device's memory (of the host's RAM on a CPU)."""
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"]) // 4
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4


class _ModelSlices(Sequence):
    """The models of a ``[models, stimuli, dim]`` array, sliced only when one is used (slicing a
    device array copies it)."""

    def __init__(self, stacked):
        self.stacked = stacked
        self.shape = (stacked.shape[1], stacked.shape[2])

    def __len__(self) -> int:
        return self.stacked.shape[0]

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.stacked[i] for i in range(len(self))[index]]
        return self.stacked[range(len(self))[index]]  # range raises IndexError; jax would clamp

    def __iter__(self):
        return (self.stacked[i] for i in range(len(self)))


def _shapes(models) -> list[tuple[int, int]]:
    if isinstance(models, _ModelSlices):
        return [models.shape] * len(models)
    return [tuple(m.shape) for m in models]


def _check_features(
    features, *, debiased: bool, min_models: int, min_stimuli: int | None = None
) -> tuple[Sequence, list[str]]:
    """Validate; return (per-model [stimuli, dim] arrays, how to name each model in messages)."""
    if isinstance(features, Mapping):
        labels = [f"model {name!r}" for name in features]
        models = [f if hasattr(f, "ndim") else np.asarray(f) for f in features.values()]
    elif hasattr(features, "ndim"):
        if features.ndim != 3:
            raise ValueError(
                f"features must have shape [models, stimuli, dim] or be a sequence of [stimuli, dim] "
                f"arrays, got shape {tuple(features.shape)}"
            )
        models = _ModelSlices(features)
        labels = [f"model {m}" for m in range(len(models))]
    elif isinstance(features, Sequence) and not isinstance(features, (str, bytes)):
        models = [f if hasattr(f, "ndim") else np.asarray(f) for f in features]
        labels = [f"model {m}" for m in range(len(models))]
    else:
        raise ValueError(
            f"features must be an array, a sequence or a mapping of arrays, got {type(features).__name__}"
        )
    if len(models) < min_models:
        raise ValueError(f"features has {len(models)} model(s); CKA needs at least {min_models}")
    if not isinstance(models, _ModelSlices):
        for x, label in zip(models, labels):
            if x.ndim != 2:
                raise ValueError(f"{label} features must have shape [stimuli, dim], got shape {tuple(x.shape)}")
    check_same_stimuli([shape[0] for shape in _shapes(models)], labels)
    if isinstance(models, _ModelSlices):
        # One check of the whole array; only when it fails, one model at a time to name it.
        _check_one(features[0], labels[0], debiased=debiased, min_stimuli=min_stimuli, values=False)
        if _all_valid(features):
            return models, labels
    for x, label in zip(models, labels):
        _check_one(x, label, debiased=debiased, min_stimuli=min_stimuli)
    return models, labels


def _all_valid(x) -> bool:
    """Whether every value is finite (and in float32's range); True for integers."""
    if not jnp.issubdtype(x.dtype, jnp.floating) or is_traced(x):
        return True
    if isinstance(x, np.ndarray):
        return bool(np.isfinite(x).all() and (x.dtype.itemsize <= 4 or np.abs(x).max() <= np.finfo(np.float32).max))
    return bool(jnp.isfinite(x).all())


def check_same_stimuli(counts: Sequence[int], labels: Sequence[str]) -> None:
    """Raise naming the first model whose stimulus count differs from the first model's."""
    for count, label in zip(counts[1:], labels[1:]):
        if count != counts[0]:
            raise ValueError(
                f"{label} has {count} stimuli but {labels[0]} has {counts[0]}; CKA compares "
                "representations of the same stimuli"
            )


def _check_one(x, name: str, *, debiased: bool, min_stimuli: int | None = None, values: bool = True) -> None:
    """Dtype, sizes, and (with ``values``) finite float32 values, naming the first bad one."""
    if not jnp.issubdtype(x.dtype, jnp.floating) and not jnp.issubdtype(x.dtype, jnp.integer):
        raise ValueError(f"{name} features must be numeric, got dtype {x.dtype}")
    least = (4 if debiased else 2) if min_stimuli is None else min_stimuli
    if x.shape[0] < least:
        raise ValueError(
            f"{name} has {x.shape[0]} stimuli; {'debiased' if debiased else 'biased'} CKA needs at least {least}"
        )
    if x.shape[1] < 1:
        raise ValueError(f"{name} features have no dimensions (shape {tuple(x.shape)})")
    if not values or _all_valid(x):
        return
    host = np.asarray(x)
    # float64 beyond float32's range would become Inf on the device.
    bad = ~np.isfinite(host) | (np.abs(host) > np.finfo(np.float32).max)
    where = np.argwhere(bad)[0]
    raise ValueError(
        f"{name} features contain {host[where[0], where[1]]} at stimulus {where[0]}, dimension {where[1]}"
        " (features must be finite float32 values)"
    )


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
    (x, y), _ = _check_features([x, y], debiased=debiased, min_models=2)
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
    if matmul_precision not in _PRECISIONS:
        raise ValueError(f"matmul_precision must be one of {_PRECISIONS}, got {matmul_precision!r}")
    if mesh is not None and not isinstance(mesh, Mesh):
        raise ValueError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    models, labels = _check_features(features, debiased=debiased, min_models=2)
    num_stimuli = _shapes(models)[0][0]
    dims = [int(shape[1]) for shape in _shapes(models)]
    max_bytes = _default_max_bytes() if max_bytes is None else int(max_bytes)
    shards = 1 if mesh is None else mesh.devices.size
    path = _choose_path(dims, num_stimuli, max_bytes, method, debiased, shards)
    if path.name == "gram":
        stacked = features if hasattr(features, "ndim") else None  # no second copy of a 3-d input
        inner = _gram_path(models, debiased, path.block, stacked, mesh=mesh, precision=matmul_precision)
    else:
        inner = _feature_path(models, debiased, path.block, mesh=mesh, precision=matmul_precision)
    result = _normalise(inner)
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


def _normalise(inner: np.ndarray) -> np.ndarray:
    """CKA from HSIC-like inner products: ``inner_ab / sqrt(inner_aa inner_bb)``, symmetrised
    (diagonal blocks are products whose two halves may round apart), NaN in the row and column
    of a model with no variance."""
    scale = np.sqrt(np.clip(np.diag(inner), 0.0, None))
    outer = np.outer(scale, scale)
    with np.errstate(invalid="ignore", divide="ignore"):
        result = inner / outer
    return np.where(outer > 0, (result + result.T) / 2, np.nan)


def _membership(dims: Sequence[int]) -> np.ndarray:
    """One-hot ``[sum(dims), models]``: which model owns each column of features side by side."""
    owner = np.repeat(np.arange(len(dims)), dims)
    return (owner[:, None] == np.arange(len(dims))[None, :]).astype(np.float32)


class _Path(NamedTuple):
    name: str  # "gram" or "features"
    block: int  # models per block (gram) or feature columns per block (features)
    flops: float


_FEATURE_DEBIASED_MIN_STIMULI = 64


def _gram_model_bytes(num_stimuli: int, dim: int, shards: int = 1) -> int:
    """Bytes the Gram path holds per model of a tile: its features (a copy when sliced, stacked
    or padded), its centring, and one scan step's Gram cells."""
    return 4 * (num_stimuli * dim + num_stimuli + 2 * dim + _layout(num_stimuli, shards).step_cells)


def _choose_path(
    dims: list[int], num_stimuli: int, max_bytes: int, method: str, debiased: bool = False, shards: int = 1
) -> _Path:
    """The cheaper of the Gram and feature-space paths that fits ``max_bytes``.

    Gram path: ``2 C d`` per model for the Gram cells (``C ~ n^2 / 2``: half of each Gram, see
    :class:`_Layout`), recomputed once per tile a model is in when the models do not fit one
    tile, plus ``2 M^2 C`` for the products. Feature path: ``n D^2`` for the cross-products of all
    features side by side (``D`` = sum of dims), any block size.
    """
    n, num_models, total = num_stimuli, len(dims), sum(dims)
    options = []
    per_model = _gram_model_bytes(n, max(dims), shards)
    gram_block = num_models if num_models * per_model <= max_bytes else max_bytes // (2 * per_model)
    if gram_block >= 1 and method in ("auto", "gram"):
        blocks = -(-num_models // gram_block)
        cells = _layout(n, shards).cells
        flops = 2 * cells * max(dims) * num_models * blocks + 2 * num_models**2 * cells
        options.append(_Path("gram", gram_block, flops))
    # A tile holds two blocks of D features ([n, D] each) and two [D, D] cross-products:
    # 4 bytes * (2 n D + 2 D^2) <= max_bytes.
    feature_block = int((-n + math.sqrt(n * n + max_bytes / 2)) / 2)
    # The debiased estimator from cross-products subtracts terms of similar size; below
    # _FEATURE_DEBIASED_MIN_STIMULI stimuli that costs float32 digits (and Grams are tiny anyway).
    accurate = not debiased or n >= _FEATURE_DEBIASED_MIN_STIMULI or method == "features"
    if feature_block >= max(dims) and method in ("auto", "features") and accurate:
        options.append(_Path("features", feature_block, float(n) * total * total))
    if not options:
        raise ValueError(
            f"max_bytes={max_bytes} cannot hold the features and Gram row blocks of one model "
            f"({per_model} bytes at {n} stimuli x {max(dims)} dims)"
            + ("" if method == "gram" else f" nor the cross-products of the widest model ({max(dims)} dims)")
            + "; raise max_bytes or use fewer stimuli"
        )
    return min(options, key=lambda option: option.flops)


def _gram_path(
    models: Sequence, debiased: bool, block: int, stacked=None, *, mesh: Mesh | None = None, precision: str = "float32"
) -> np.ndarray:
    """(U-)centred Gram inner products of every pair, in tiles of ``block`` models. ``stacked``:
    the models as one ``[models, stimuli, dim]`` array, when the caller has it. Models of a tile
    whose dims differ are zero-padded to the widest (zero columns leave a Gram unchanged)."""
    num_models, n = len(models), _shapes(models)[0][0]
    layout = _layout(n, 1 if mesh is None else mesh.devices.size)

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
            part = np.asarray(_gram_inner(rows, cols, layout, debiased, precision, mesh))
            inner[i : i + part.shape[0], j : j + part.shape[1]] = part
            inner[j : j + part.shape[1], i : i + part.shape[0]] = part.T
    return inner


def _feature_path(
    models: Sequence, debiased: bool, block: int, *, mesh: Mesh | None = None, precision: str = "float32"
) -> np.ndarray:
    """CKA from ``<K_a, K_b> = |X_a^T X_b|_F^2`` of centred features, never forming a Gram.

    The debiased estimator follows from the same cross-products: with centred ``X`` and
    ``a_i = |x_i|^2``, ``<K_u, L_u> = |X^T Y|^2 + (sum a)(sum b) / ((n-1)(n-2)) - n/(n-2) sum a_i b_i``.
    """
    n = models[0].shape[0]
    prepared = [_prepare_one(jnp.asarray(m)) for m in models]
    # Consecutive models whose summed dims fit one block.
    groups, current, width = [], [], 0
    for m, x in enumerate(prepared):
        if current and width + x.shape[1] > block:
            groups.append(current)
            current, width = [], 0
        current.append(m)
        width += x.shape[1]
    groups.append(current)

    def side_by_side(group):
        features = jnp.concatenate([prepared[m] for m in group], axis=1)
        return features, jnp.asarray(_membership([prepared[m].shape[1] for m in group]))

    num_models = len(models)
    inner = np.empty((num_models, num_models), np.float64)
    for gi, rows in enumerate(groups):
        row_features, row_member = side_by_side(rows)
        for cols in groups[gi:]:
            col_features, col_member = (row_features, row_member) if cols is rows else side_by_side(cols)
            tile = np.asarray(
                _feature_tile(row_features, col_features, row_member, col_member, precision, mesh), np.float64
            )
            inner[np.ix_(rows, cols)] = tile
            inner[np.ix_(cols, rows)] = tile.T
    if debiased:
        norms = np.stack([np.asarray(jnp.sum(x * x, axis=1), np.float64) for x in prepared])  # [models, n]
        totals = norms.sum(axis=1)
        inner += np.outer(totals, totals) / ((n - 1) * (n - 2)) - n / (n - 2) * (norms @ norms.T)
    return inner


_ESTIMATORS = ("exact", "exact-debiased", "minibatch")


class CKAAccumulator:
    """All-pairs linear CKA over a stimulus set streamed in batches (too many stimuli for
    ``n x n`` Grams). ``update`` with each batch, ``merge`` accumulators from other devices or
    processes, ``compute`` at the end.

    Three estimators:

    * ``"exact"`` and ``"exact-debiased"``: the biased (Kornblith et al. 2019) or debiased
      (unbiased HSIC) CKA of all stimuli at once, exactly (up to float32): the same numbers as
      ``cka_matrix(all_features, debiased=...)``. They accumulate feature-space statistics of all
      models side by side, each batch centred on its own mean and merged with Chan et al.'s
      pairwise update, so large feature means cost no accuracy: the ``[D, D]`` cross-products
      (``D`` = summed dims), plus for the debiased estimator the per-stimulus squared norms'
      products ``[M, M]`` and ``[M, D]``. Memory ``~4 D^2`` bytes: these suit modest dims (a few
      thousand summed). Batches may have any size (even 1 stimulus).
    * ``"minibatch"``: Nguyen, Raghu & Kornblith (2021): the unbiased HSIC of each batch (U-centred
      Grams of the batch), averaged over batches, then normalised. Memory ``M^2`` whatever the
      dims; every batch needs at least 4 stimuli and the same size gives the estimate its usual
      meaning. It estimates the population CKA, not the CKA of these stimuli: with batches of
      ``b`` stimuli it differs from ``"exact-debiased"`` by terms that shrink like ``1/b`` (0.02
      at most with 500-stimulus batches in our tests), and it is the choice when dims are large.
    """

    def __init__(self, num_models: int, *, estimator: str = "minibatch"):
        if estimator not in _ESTIMATORS:
            raise ValueError(f"estimator must be one of {_ESTIMATORS}, got {estimator!r}")
        if num_models < 2:
            raise ValueError(f"num_models={num_models}; CKA needs at least 2")
        self.num_models = num_models
        self.estimator = estimator
        self.dims: list[int] | None = None
        self._member_cache = None
        self.num_stimuli = 0
        self.num_batches = 0
        self._mean = None  # exact: float64 [D] mean of the stimuli so far (kept on the host)
        self._sums = None  # exact: _CentredSums about _mean; minibatch: sum of batch HSIC [M, M]

    def update(self, batch) -> CKAAccumulator:
        """Add one batch: ``[models, batch, dim]`` or a sequence of ``[batch, dim_m]`` arrays."""
        exact = self.estimator != "minibatch"
        models, _ = _check_features(batch, debiased=not exact, min_models=2, min_stimuli=1 if exact else None)
        if len(models) != self.num_models:
            raise ValueError(f"batch has {len(models)} models but the accumulator was made for {self.num_models}")
        dims = [int(m.shape[1]) for m in models]
        if self.dims is None:
            self.dims = dims
        elif dims != self.dims:
            raise ValueError(f"batch dims {dims} differ from the first batch's {self.dims}")
        size = int(models[0].shape[0])
        if exact:
            features = jnp.concatenate([jnp.asarray(m, jnp.float32) for m in models], axis=1)
            first = np.concatenate([np.asarray(m[0], np.float64) for m in models])
            shift, sums = _centred_sums(features, self._member(), self.estimator == "exact-debiased")
            self._merge_exact(first + np.asarray(shift, np.float64), sums, size)
        else:
            part = _batch_hsic(jnp.stack([_u_gram(jnp.asarray(m, jnp.float32)) for m in models]))
            self._sums = part if self._sums is None else self._sums + part
        self.num_stimuli += size
        self.num_batches += 1
        return self

    def _member(self) -> jax.Array:
        if self._member_cache is None:  # built once, not sent to the device with every batch
            self._member_cache = jnp.asarray(_membership(self.dims))
        return self._member_cache

    def _merge_exact(self, mean: np.ndarray, sums: _CentredSums, count: int) -> None:
        """Pool stimuli whose sums are centred on ``mean`` into ours (Chan et al. 1979): both move
        to the pooled mean, then add."""
        if self._sums is None:
            self._mean, self._sums = mean, sums
            return
        total = self.num_stimuli + count
        pooled = self._mean + (mean - self._mean) * (count / total)
        member = self._member()
        ours = _move_centre(self._sums, jnp.asarray(self._mean - pooled, jnp.float32), self.num_stimuli, member)
        theirs = _move_centre(sums, jnp.asarray(mean - pooled, jnp.float32), count, member)
        self._mean, self._sums = pooled, jax.tree.map(jnp.add, ours, theirs)

    def merge(self, other: CKAAccumulator) -> CKAAccumulator:
        """Add another accumulator's batches (same models, dims and estimator)."""
        if (other.num_models, other.estimator) != (self.num_models, self.estimator):
            raise ValueError("merge needs accumulators with the same number of models and estimator")
        if other._sums is None:
            return self
        if self.dims is not None and other.dims != self.dims:
            raise ValueError(f"dims {other.dims} differ from {self.dims}")
        self.dims = other.dims
        if self.estimator == "minibatch":
            self._sums = other._sums if self._sums is None else self._sums + other._sums
        else:
            self._merge_exact(other._mean, other._sums, other.num_stimuli)
        self.num_stimuli += other.num_stimuli
        self.num_batches += other.num_batches
        return self

    def compute(self) -> Float[Array, "models models"]:
        """``float32 [models, models]``; NaN rows and columns for models with no variance."""
        if self._sums is None:
            raise ValueError("no batches were added")
        if self.estimator == "minibatch":
            return jnp.asarray(_normalise(np.asarray(self._sums, np.float64) / self.num_batches))
        n = self.num_stimuli
        least = 4 if self.estimator == "exact-debiased" else 2
        if n < least:
            raise ValueError(f"{n} stimuli; {self.estimator} CKA needs at least {least}")
        member = _membership(self.dims).astype(np.float64)
        covariance = np.asarray(self._sums.cross, np.float64)  # X_c^T X_c of all features
        inner = member.T @ (covariance * covariance) @ member
        if self.estimator == "exact-debiased":
            # As in the feature path of cka_matrix, from the per-stimulus squared norms a_i.
            norm_sums = member.T @ np.diag(covariance)
            norm_products = np.asarray(self._sums.norm_products, np.float64)
            inner += np.outer(norm_sums, norm_sums) / ((n - 1) * (n - 2)) - n / (n - 2) * norm_products
        return jnp.asarray(_normalise(inner))


class _CentredSums(NamedTuple):
    """Sums over stimuli of features ``y`` centred on the stimuli's mean (all models side by side;
    ``q_i`` = each model's ``|y_i|^2``). The last two are zero-size for the biased estimator."""

    cross: Float[Array, "dims dims"]  # sum y y^T
    norm_products: Float[Array, "models models"]  # sum q q^T
    norm_weighted: Float[Array, "models dims"]  # sum q y^T


@partial(jax.jit, static_argnames="debiased")
def _centred_sums(
    features: Float[Array, "batch dims"], member: Float[Array, "dims models"], debiased: bool
) -> tuple[Float[Array, " dims"], _CentredSums]:
    """The batch's mean relative to its first stimulus, and its sums centred on its mean."""
    centred, _, shift, _ = _centre(features)
    cross = jnp.matmul(centred.T, centred, precision=_HIGHEST)
    if not debiased:
        empty = jnp.zeros((0, 0), jnp.float32)
        return shift, _CentredSums(cross, empty, empty)
    norms = jnp.matmul(centred * centred, member, precision=_HIGHEST)  # [batch, models]
    return shift, _CentredSums(
        cross,
        jnp.matmul(norms.T, norms, precision=_HIGHEST),
        jnp.matmul(norms.T, centred, precision=_HIGHEST),
    )


@jax.jit
def _move_centre(
    sums: _CentredSums, offset: Float[Array, " dims"], count: Int[Array, ""] | int, member: Float[Array, "dims models"]
) -> _CentredSums:
    """The sums of the same ``count`` stimuli centred ``offset`` lower: ``y' = y + offset``.

    With ``sum y = 0``: ``sum y'y'^T = C + n e e^T``; with ``u_i = y_i . e`` per model and
    ``c = |e|^2`` per model, ``q' = q + 2u + c`` gives the norm sums below.
    """
    cross, norm_products, norm_weighted = sums
    moved_cross = cross + count * jnp.outer(offset, offset)
    if norm_products.size == 0:
        return _CentredSums(moved_cross, norm_products, norm_weighted)
    spread = member * offset[:, None]  # [dims, models]: each model's offset in its own columns
    norm_sums = jnp.matmul(jnp.diag(cross), member, precision=_HIGHEST)  # sum q per model
    shift_sq = jnp.matmul(offset * offset, member, precision=_HIGHEST)  # c per model
    cross_spread = jnp.matmul(cross, spread, precision=_HIGHEST)  # [dims, models]: sum_i y_i u_i
    weighted_spread = jnp.matmul(norm_weighted, spread, precision=_HIGHEST)  # [models, models]: sum q u
    moved_products = (
        norm_products
        + 2 * (weighted_spread + weighted_spread.T)
        + 4 * jnp.matmul(spread.T, cross_spread, precision=_HIGHEST)
        + jnp.outer(norm_sums, shift_sq) + jnp.outer(shift_sq, norm_sums)
        + count * jnp.outer(shift_sq, shift_sq)
    )
    moved_weighted = (
        norm_weighted
        + jnp.outer(norm_sums, offset)
        + 2 * cross_spread.T
        + count * jnp.outer(shift_sq, offset)
    )
    return _CentredSums(moved_cross, moved_products, moved_weighted)


@jax.jit
def _u_gram(x: Float[Array, "batch dim"]) -> Float[Array, "batch batch"]:
    """U-centred Gram of one batch (not normalised)."""
    xc = _centre(x).centred
    return _u_centre(jnp.matmul(xc, xc.T, precision=_HIGHEST))


def _u_centre(gram: Float[Array, "n n"]) -> Float[Array, "n n"]:
    """U-centring (Szekely & Rizzo 2014): zero diagonal, rows and columns summing to zero."""
    n = gram.shape[0]
    off = 1.0 - jnp.eye(n, dtype=gram.dtype)
    gram = gram * off
    row = gram.sum(axis=1) / (n - 2)
    row = row - row.sum() / (2 * (n - 1))
    return (gram - row[:, None] - row[None, :]) * off


@jax.jit
def _batch_hsic(grams: Float[Array, "models batch batch"]) -> Float[Array, "models models"]:
    """Unbiased HSIC of every pair within one batch: ``<K_u, L_u> / (n (n - 3))``."""
    n = grams.shape[1]
    flat = grams.reshape(grams.shape[0], -1)
    return jnp.matmul(flat, flat.T, precision=_HIGHEST) / (n * (n - 3))


__all__ = ["CKAAccumulator", "cka_matrix", "linear_cka"]
