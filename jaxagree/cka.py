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
from jaxtyping import Array, Float

from jaxagree._checks import is_traced
from jaxagree._typing import AnyArray

_HIGHEST = jax.lax.Precision.HIGHEST


def _centre(x: Float[Array, "stimuli dim"]) -> Float[Array, "stimuli dim"]:
    # Shifting by the first stimulus before averaging keeps float32 exact for constant features
    # and accurate when the mean is large against the spread.
    shifted = x - x[:1]
    return shifted - shifted.mean(axis=0, keepdims=True)


def _prepare(x: Float[Array, "stimuli dim"]) -> Float[Array, "stimuli dim"]:
    """Centred features scaled to unit max-abs (all zero if constant)."""
    xc = _centre(x.astype(jnp.float32))
    # CKA is scale invariant: unit max-abs features keep products clear of float32 under- and
    # overflow (features of 1e-20 or 1e20 are not constant and must not look so).
    scale = jnp.abs(xc).max()
    return xc / jnp.where(scale > 0, scale, 1.0)


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
def _unit_grams(
    features: Float[Array, "models stimuli dim"], debiased: bool
) -> Float[Array, "models cells"]:
    # One model at a time (lax.map): XLA:CPU runs a loop of matmuls about 1.5x faster than the
    # batched matmul that vmap makes (measured at 20 x 2000 x 768).
    grams = jax.lax.map(partial(_unit_gram, debiased=debiased), features)
    return grams.reshape(features.shape[0], -1)


@partial(jax.jit, static_argnames="debiased")
def _pair(x: Float[Array, "stimuli dx"], y: Float[Array, "stimuli dy"], debiased: bool) -> Float[Array, ""]:
    gram_x, gram_y = _unit_gram(x, debiased), _unit_gram(y, debiased)
    constant = (jnp.sum(gram_x * gram_x) == 0) | (jnp.sum(gram_y * gram_y) == 0)
    return jnp.where(constant, jnp.nan, jnp.sum(gram_x * gram_y))


_PRODUCT_CHUNK = 2**16


def _chunk(cells: int) -> int:
    """The largest ``n * r`` <= _PRODUCT_CHUNK with ``r`` dividing ``n`` (``cells = n * n``), so
    the Grams split into whole chunks without a padded copy."""
    n = math.isqrt(cells)
    r = max([r for r in range(1, max(1, _PRODUCT_CHUNK // n) + 1) if n % r == 0], default=1)
    return n * r


@jax.jit
def _gram_products(a: Float[Array, "rows cells"], b: Float[Array, "cols cells"]) -> Float[Array, "rows cols"]:
    """``a @ b.T`` over chunks of the (long) cell axis: XLA:CPU runs one product with a
    contraction of millions about 3x slower than a loop of short ones, and summing per-chunk
    partial products is also more accurate in float32."""
    chunk = _chunk(a.shape[1])
    chunks = a.shape[1] // chunk
    a = a.reshape(a.shape[0], chunks, chunk)
    b = b.reshape(b.shape[0], chunks, chunk)

    def step(total, i):
        return total + jnp.matmul(a[:, i], b[:, i].T, precision=_HIGHEST), None

    total, _ = jax.lax.scan(step, jnp.zeros((a.shape[0], b.shape[0]), jnp.float32), jnp.arange(chunks))
    return total


@jax.jit
def _feature_tile(
    rows: Float[Array, "stimuli dims_i"],
    cols: Float[Array, "stimuli dims_j"],
    member_rows: Float[Array, "dims_i models_i"],
    member_cols: Float[Array, "dims_j models_j"],
) -> Float[Array, "models_i models_j"]:
    """``|X_a^T X_b|_F^2`` for every model a of ``rows`` and b of ``cols`` (features side by side;
    ``member`` one-hot maps each feature column to its model)."""
    cross = jnp.matmul(rows.T, cols, precision=_HIGHEST)
    summed = jnp.matmul(member_rows.T, cross * cross, precision=_HIGHEST)
    return jnp.matmul(summed, member_cols, precision=_HIGHEST)


def _default_max_bytes() -> int:
    """A quarter of the first device's memory (of the host's RAM on a CPU)."""
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"]) // 4
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4


def _check_features(features, *, debiased: bool, min_models: int) -> tuple[list, list[str]]:
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
        models = [features[m] for m in range(features.shape[0])]
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
    for x, label in zip(models, labels):
        if x.ndim != 2:
            raise ValueError(f"{label} features must have shape [stimuli, dim], got shape {tuple(x.shape)}")
    check_same_stimuli([x.shape[0] for x in models], labels)
    for x, label in zip(models, labels):
        _check_one(x, label, debiased=debiased)
    return models, labels


def check_same_stimuli(counts: Sequence[int], labels: Sequence[str]) -> None:
    """Raise naming the first model whose stimulus count differs from the first model's."""
    for count, label in zip(counts[1:], labels[1:]):
        if count != counts[0]:
            raise ValueError(
                f"{label} has {count} stimuli but {labels[0]} has {counts[0]}; CKA compares "
                "representations of the same stimuli"
            )


def _check_one(x, name: str, *, debiased: bool) -> None:
    if not jnp.issubdtype(x.dtype, jnp.floating) and not jnp.issubdtype(x.dtype, jnp.integer):
        raise ValueError(f"{name} features must be numeric, got dtype {x.dtype}")
    least = 4 if debiased else 2
    if x.shape[0] < least:
        raise ValueError(
            f"{name} has {x.shape[0]} stimuli; {'debiased' if debiased else 'biased'} CKA needs at least {least}"
        )
    if x.shape[1] < 1:
        raise ValueError(f"{name} features have no dimensions (shape {tuple(x.shape)})")
    if not is_traced(x) and jnp.issubdtype(x.dtype, jnp.floating):
        if isinstance(x, np.ndarray):
            # float64 beyond float32's range would become Inf on the device.
            bad = ~np.isfinite(x) | (np.abs(x) > np.finfo(np.float32).max)
        elif bool(jnp.isfinite(x).all()):
            return
        else:
            bad = ~np.isfinite(np.asarray(x))
        if bad.any():
            where = np.argwhere(bad)[0]
            raise ValueError(
                f"{name} features contain {x[where[0], where[1]]} at stimulus {where[0]}, dimension {where[1]}"
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
) -> Float[Array, "models models"]:
    """Linear CKA of every pair of models at once.

    Two ways to the same numbers, the cheaper chosen from the shapes (``method="auto"``):
    ``"gram"`` forms each model's unit-norm (U-)centred Gram once and takes one product of the
    stacked Grams (``~M n^2 d + M^2 n^2`` FLOPs, ``n^2`` memory per model); ``"features"`` takes
    the cross-products of all centred features side by side (``~n D^2`` with ``D`` the summed
    dims), which wins when dims are small against stimuli or Grams do not fit ``max_bytes``.

    Args:
      features: ``[models, stimuli, dim]``, or a sequence of ``[stimuli, dim_m]`` arrays whose
        dims may differ (all over the same stimuli, in the same order), or a mapping from model
        name to such arrays (messages then name the models).
      debiased: use the unbiased HSIC estimator (needs at least 4 stimuli).
      max_bytes: bound on the blocks of Grams or cross-products held at once (default: a quarter
        of the device's memory). Models are processed in blocks that fit; the result does not
        depend on it.
      method: ``"auto"``, ``"gram"`` or ``"features"``.

    Returns:
      ``float32 [models, models]``, symmetric with unit diagonal. A model whose features are
      constant over the stimuli gets NaN in its row and column, and a warning names it.
    """
    if method not in ("auto", "gram", "features"):
        raise ValueError(f"method must be 'auto', 'gram' or 'features', got {method!r}")
    models, labels = _check_features(features, debiased=debiased, min_models=2)
    num_stimuli = models[0].shape[0]
    dims = [int(m.shape[1]) for m in models]
    max_bytes = _default_max_bytes() if max_bytes is None else int(max_bytes)
    path = _choose_path(dims, num_stimuli, max_bytes, method, debiased)
    if path.name == "gram":
        stacked = features if hasattr(features, "ndim") else None  # no second copy of a 3-d input
        result = _normalise(_gram_path(models, debiased, path.block, stacked))
    else:
        result = _normalise(_feature_path(models, debiased, path.block))
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


def _choose_path(dims: list[int], num_stimuli: int, max_bytes: int, method: str, debiased: bool = False) -> _Path:
    """The cheaper of the Gram and feature-space paths that fits ``max_bytes``.

    Gram path: ``2 M n^2 d`` for the Grams (more when blocks of Grams must be recomputed because
    they do not all fit) plus ``2 M^2 n^2`` for their products. Feature path: ``n D^2`` for the
    cross-products of all features side by side (``D`` = sum of dims), any block size.
    """
    n, num_models, total = num_stimuli, len(dims), sum(dims)
    options = []
    gram_block = min(num_models, max_bytes // (2 * gram_bytes(n)))
    if gram_block >= 1 and method in ("auto", "gram"):
        blocks = -(-num_models // gram_block)
        recompute = 1 + (blocks - 1) / 2  # column blocks are rebuilt for each row block above them
        flops = 2 * n * n * total * recompute + 2 * num_models**2 * n * n
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
            f"max_bytes={max_bytes} cannot hold two {n} x {n} Gram matrices ({2 * gram_bytes(n)} bytes)"
            + ("" if method == "gram" else f" nor the cross-products of the widest model ({max(dims)} dims)")
            + "; raise max_bytes or use fewer stimuli"
        )
    return min(options, key=lambda option: option.flops)


def _gram_path(models: list, debiased: bool, block: int, stacked=None) -> np.ndarray:
    """Products of unit-norm (U-)centred Grams, in blocks of ``block`` models. ``stacked``: the
    models as one ``[models, stimuli, dim]`` array, when the caller has it."""
    num_models = len(models)
    if stacked is None and len({tuple(m.shape) for m in models}) == 1:
        stacked = jnp.stack([jnp.asarray(m) for m in models])
    elif stacked is not None:
        stacked = jnp.asarray(stacked)

    def grams(start: int, stop: int) -> jax.Array:
        if stacked is not None:
            return _unit_grams(stacked if stop - start == num_models else stacked[start:stop], debiased)
        return jnp.concatenate([_unit_grams(jnp.asarray(m)[None], debiased) for m in models[start:stop]])

    result = np.empty((num_models, num_models), np.float64)
    starts = range(0, num_models, block)
    for i in starts:
        rows = grams(i, min(i + block, num_models))
        for j in starts:
            if j < i:
                continue
            cols = rows if j == i else grams(j, min(j + block, num_models))
            tile = np.asarray(_gram_products(rows, cols))
            result[i : i + tile.shape[0], j : j + tile.shape[1]] = tile
            result[j : j + tile.shape[1], i : i + tile.shape[0]] = tile.T
    return result


def _feature_path(models: list, debiased: bool, block: int) -> np.ndarray:
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
            tile = np.asarray(_feature_tile(row_features, col_features, row_member, col_member), np.float64)
            inner[np.ix_(rows, cols)] = tile
            inner[np.ix_(cols, rows)] = tile.T
    if debiased:
        norms = np.stack([np.asarray(jnp.sum(x * x, axis=1), np.float64) for x in prepared])  # [models, n]
        totals = norms.sum(axis=1)
        inner += np.outer(totals, totals) / ((n - 1) * (n - 2)) - n / (n - 2) * (norms @ norms.T)
    return inner


def gram_bytes(num_stimuli: int) -> int:
    """Bytes of one float32 Gram matrix (for choosing ``max_bytes``)."""
    return num_stimuli * num_stimuli * 4




class CKAAccumulator:
    """All-pairs linear CKA over a stimulus set streamed in batches (too many stimuli for
    ``n x n`` Grams). ``update`` with each batch, ``merge`` accumulators from other devices or
    processes, ``compute`` at the end.

    Two estimators:

    * ``"exact"``: the biased CKA of all stimuli at once, exactly (up to float32), from
      feature-space sums ``sum_i z_i z_i^T`` and ``sum_i z_i`` of all models' features side by
      side. Memory ``4 D^2`` bytes for ``D`` summed dims, so it suits modest dims.
    * ``"minibatch"``: Nguyen, Raghu & Kornblith (2021): the unbiased HSIC of each batch (U-centred
      Grams of the batch), averaged over batches, then normalised. Memory ``M^2``; every batch
      needs at least 4 stimuli and the same size gives the estimate its usual meaning. It is an
      unbiased estimate of the population CKA, not the CKA of these stimuli: for large batches
      it approaches debiased ``cka_matrix`` on all stimuli.

    Features are used as given (no rescaling), so keep them float32-friendly.
    """

    def __init__(self, num_models: int, *, estimator: str = "minibatch"):
        if estimator not in ("exact", "minibatch"):
            raise ValueError(f"estimator must be 'exact' or 'minibatch', got {estimator!r}")
        if num_models < 2:
            raise ValueError(f"num_models={num_models}; CKA needs at least 2")
        self.num_models = num_models
        self.estimator = estimator
        self.dims: list[int] | None = None
        self.num_stimuli = 0
        self.num_batches = 0
        self._sums = None  # exact: (sum z z^T [D, D], sum z [D]); minibatch: sum of HSIC [M, M]

    def update(self, batch) -> CKAAccumulator:
        """Add one batch: ``[models, batch, dim]`` or a sequence of ``[batch, dim_m]`` arrays."""
        models, _ = _check_features(batch, debiased=self.estimator == "minibatch", min_models=2)
        if len(models) != self.num_models:
            raise ValueError(f"batch has {len(models)} models but the accumulator was made for {self.num_models}")
        dims = [int(m.shape[1]) for m in models]
        if self.dims is None:
            self.dims = dims
        elif dims != self.dims:
            raise ValueError(f"batch dims {dims} differ from the first batch's {self.dims}")
        features = jnp.concatenate([jnp.asarray(m, jnp.float32) for m in models], axis=1)
        if self.estimator == "exact":
            part = _feature_sums(features)
        else:
            part = _batch_hsic(jnp.stack([_u_gram(jnp.asarray(m, jnp.float32)) for m in models]))
        self._add(part)
        self.num_stimuli += int(models[0].shape[0])
        self.num_batches += 1
        return self

    def _add(self, part) -> None:
        if self._sums is None:
            self._sums = part
        else:
            self._sums = jax.tree.map(jnp.add, self._sums, part)

    def merge(self, other: CKAAccumulator) -> CKAAccumulator:
        """Add another accumulator's batches (same models, dims and estimator)."""
        if (other.num_models, other.estimator) != (self.num_models, self.estimator):
            raise ValueError("merge needs accumulators with the same number of models and estimator")
        if other._sums is None:
            return self
        if self.dims is not None and other.dims != self.dims:
            raise ValueError(f"dims {other.dims} differ from {self.dims}")
        self.dims = other.dims
        self._add(other._sums)
        self.num_stimuli += other.num_stimuli
        self.num_batches += other.num_batches
        return self

    def compute(self) -> Float[Array, "models models"]:
        """``float32 [models, models]``; NaN rows and columns for models with no variance."""
        if self._sums is None:
            raise ValueError("no batches were added")
        if self.estimator == "exact":
            outer, total = (np.asarray(x, np.float64) for x in self._sums)
            n = self.num_stimuli
            if n < 2:
                raise ValueError(f"{n} stimuli; CKA needs at least 2")
            covariance = outer - np.outer(total, total) / n  # X_c^T X_c of all features
            member = _membership(self.dims).astype(np.float64)
            inner = member.T @ (covariance * covariance) @ member
        else:
            inner = np.asarray(self._sums, np.float64) / self.num_batches
        return jnp.asarray(_normalise(inner))


@jax.jit
def _feature_sums(features: Float[Array, "batch dims"]) -> tuple[Float[Array, "dims dims"], Float[Array, " dims"]]:
    return jnp.matmul(features.T, features, precision=_HIGHEST), features.sum(axis=0)


@jax.jit
def _u_gram(x: Float[Array, "batch dim"]) -> Float[Array, "batch batch"]:
    """U-centred Gram of one batch (not normalised)."""
    xc = _centre(x)
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


__all__ = ["CKAAccumulator", "cka_matrix", "gram_bytes", "linear_cka"]
