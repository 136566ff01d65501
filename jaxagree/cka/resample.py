"""Kernels of the stimulus bootstrap of all-pairs CKA: resamples as integer stimulus weights,
and each replicate's (U-)centred Gram inner products from Grams formed once over the set.

A replicate draws ``n`` stimuli of a set of ``n`` with replacement; ``w_i`` counts the draws of
stimulus ``i`` (``sum w = n``). With ``P`` the ``[n, n]`` selection matrix of the draws, the
resample's Gram is ``P K P^T`` and ``P^T H P = D - w w^T / n`` (``D = diag w``), so

* biased: ``<H K~ H, H L~ H> = sum_ij w_i w_j K_ij L_ij - (2/n) sum_i w_i (Kw)_i (Lw)_i
  + (w^T K w)(w^T L w) / n^2``;
* debiased (Song et al. 2012, times ``n(n-3)``, which is ``<K~_u, L~_u>``): with the resample's
  diagonal zeroed, repeated draws of one stimulus keep ``K_ii`` between them, so
  ``tr(K~ L~) = sum_{i != j} w_i w_j K_ij L_ij + sum_i w_i (w_i - 1) K_ii L_ii`` and
  ``c_i = (Kw)_i - K_ii`` gives ``1^T K~ 1 = w.c`` and ``1^T K~ L~ 1 = sum_i w_i c_i c'_i``.

Only the first sum is costly: one ``[pairs, models]`` product per replicate over the unordered
pairs of drawn stimuli (about 40% of all pairs: a resample draws ~63% of the stimuli). Everything
else is ``[n, models]`` vectors, and ``Kw`` for every replicate one matmul with the Grams.

Also the bootstrap's memory plan (:func:`bootstrap_bytes`, :func:`bootstrap_plan`). Like
:mod:`jaxagree.cka.plan`, this module is the seam tests and benchmarks use, not the user API:
users call :func:`jaxagree.cka_bootstrap`.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from jaxagree.cka._centring import prepare
from jaxagree.cka.plan import matmul


@partial(jax.jit, static_argnames=("num_stimuli", "num_bootstrap"))
def bootstrap_indices(key: Array, num_stimuli: int, num_bootstrap: int) -> Int[Array, "replicates stimuli"]:
    """``[num_bootstrap, num_stimuli]`` positions in ``[0, num_stimuli)``: each row one resample
    with replacement. A function of ``key`` and the sizes only, so one key gives the same
    replicates over every stimulus set of the same size (paired comparisons)."""
    return jax.random.randint(key, (num_bootstrap, num_stimuli), 0, num_stimuli, dtype=jnp.int32)


@partial(jax.jit, static_argnames="num_stimuli")
def bootstrap_weights(indices: Int[Array, "replicates draws"], num_stimuli: int) -> Int[Array, "replicates stimuli"]:
    """How often each replicate drew each stimulus: ``int32 [replicates, num_stimuli]``, each row
    summing to the number of draws."""
    rows = jnp.arange(indices.shape[0])[:, None]
    return jnp.zeros((indices.shape[0], num_stimuli), jnp.int32).at[rows, indices].add(1)


class SetTerms(NamedTuple):
    """What every replicate needs of a tile of models' Grams over the set (``n`` stimuli)."""

    pairs: Float[Array, "pairs models"]  # K_ij of each unordered pair once: circulant_pairs
    diag: Float[Array, "set models"]  # K_ii
    rows: Float[Array, "replicates set models"]  # (K w)_i for each replicate's weights


def circulant_pairs(gram: Float[Array, "n n"]) -> Float[Array, " pairs"]:
    """``C[i, t] = K[i, (i + 1 + t) mod n]`` for ``t < n // 2``, flattened: every unordered pair
    of distinct stimuli at least once, in half the Gram's memory. A skew by reshape (row ``i``
    of ``[K K]`` read from column ``i + 1``): no index arrays."""
    n, half = gram.shape[0], gram.shape[0] // 2
    doubled = jnp.concatenate([gram, gram], axis=1).reshape(-1)
    skewed = jnp.pad(doubled, (0, n)).reshape(n, 2 * n + 1)
    return skewed[:, 1 : 1 + half].reshape(-1)


def pair_position(a: Int[Array, " *cells"], b: Int[Array, " *cells"], n: int) -> Int[Array, " *cells"]:
    """Where :func:`circulant_pairs` keeps the pair ``{a, b}`` (``a != b``)."""
    lo, hi = jnp.minimum(a, b), jnp.maximum(a, b)
    gap, half = hi - lo, n // 2
    # A gap beyond half the circle is met going round from the larger index.
    return jnp.where(gap <= half, lo * half + gap - 1, hi * half + (n - gap) - 1)


@jax.jit
def set_terms(features: Float[Array, "models set dim"], weights: Int[Array, "replicates set"]) -> SetTerms:
    """Each model's Gram over the set, of features centred over the set and scaled to unit
    max-abs (so the resample's centring corrects only a small shift), one model at a time."""
    w = weights.astype(jnp.float32).T

    def one(x):
        xc = prepare(x)
        gram = matmul(xc, xc.T, "float32")
        return circulant_pairs(gram), jnp.diagonal(gram), matmul(gram, w, "float32")

    pairs, diag, rows = jax.lax.map(one, features)
    return SetTerms(pairs.T, diag.T, rows.transpose(2, 1, 0))


def replicate_inner(
    terms_i: tuple, terms_j: tuple, w: Int[Array, " set"], support: int, debiased: bool
) -> tuple[Float[Array, "models_i models_j"], Float[Array, " models_i"]]:
    """One replicate's (U-)centred Gram inner products of the resample ``w``, and for each model
    of ``terms_i`` a bound on its Gram's size (see :func:`resample_inner`). ``support``: a
    static odd bound on how many stimuli it drew."""
    (pairs_i, diag_i, rows_i), (pairs_j, diag_j, rows_j) = terms_i, terms_j
    n = w.shape[0]
    wf = w.astype(jnp.float32)
    drawn = jnp.nonzero(w, size=support, fill_value=0)[0]
    count = jnp.where(jnp.arange(support) < jnp.count_nonzero(w), w[drawn], 0).astype(jnp.float32)
    # Each unordered pair of drawn stimuli once: position p with p + 1 + t (mod support), t <
    # support // 2 (support is odd, so no pair is met twice). Padding has count 0.
    p = jnp.arange(support)[:, None]
    q = (p + 1 + jnp.arange(support // 2)[None, :]) % support
    position = pair_position(jnp.broadcast_to(drawn[p], q.shape), drawn[q], n).reshape(-1)
    scale = jnp.sqrt(2.0 * count[p] * count[q]).reshape(-1, 1)

    def centred(pairs, diag, rows):
        # Centring over the resample, cell by cell (K_ij - o_i - o_j + g): the products then
        # sum terms of the answer's own size, with no large terms cancelling afterwards.
        if debiased:  # U-centring of the resample's Gram (diagonal zeroed; see the module doc)
            rows = rows - diag
            offset, shift = rows / (n - 2), (wf @ rows) / ((n - 1) * (n - 2))
        else:
            offset, shift = rows / n, (wf @ rows) / n**2
        cells = jnp.take(pairs, position, axis=0, mode="clip")
        cells = cells - (offset[drawn[p]] + offset[drawn[q]]).reshape(cells.shape) + shift
        return cells * scale, diag - 2.0 * offset + shift

    left, left_diag = centred(pairs_i, diag_i, rows_i)
    same = rows_j is rows_i
    right, right_diag = (left, left_diag) if same else centred(pairs_j, diag_j, rows_j)
    repeats = wf * (wf - 1.0) if debiased else wf * wf  # ordered pairs of draws of one stimulus
    inner = matmul(left.T, right, "float32") + matmul((left_diag * repeats[:, None]).T, right_diag, "float32")
    # sum_ij w_i w_j K_ij^2 <= (w.diag)^2: a bound on the cells' size, for the caller to judge
    # how many float32 digits a model's inner products kept (cheap, unlike the sum).
    return inner, (wf @ diag_i) ** 2


@partial(jax.jit, static_argnames=("support", "debiased"))
def resample_inner(
    terms_i: SetTerms,
    terms_j: SetTerms | None,
    weights: Int[Array, "replicates set"],
    support: int,
    debiased: bool,
) -> tuple[Float[Array, "replicates models_i models_j"], Float[Array, "replicates models_i"]]:
    """:func:`replicate_inner` of every replicate (a ``scan``: one replicate's gathered pairs
    held at a time), for the models of ``terms_i`` against those of ``terms_j`` (``terms_i``
    itself when None).

    Returns ``(inner, bound)``: ``bound [replicates, models_i] = (sum_i w_i K_ii)^2`` bounds
    ``sum_ij w_i w_j K_ij^2``, the size of the cells before centring. Cells are centred to about
    float32's ``eps`` of that size, so a model's ``inner_aa`` is good to about
    ``eps * sqrt(bound / inner_aa)`` relative, and a model constant on the resample leaves
    ``inner_aa ~ eps^2 * bound`` rather than 0.
    """

    def step(carry, xs):
        w, rows_i, rows_j = xs
        fixed_j = terms_i if terms_j is None else terms_j
        left = (terms_i.pairs, terms_i.diag, rows_i)
        right = left if terms_j is None else (fixed_j.pairs, fixed_j.diag, rows_j)
        return carry, replicate_inner(left, right, w, support, debiased)

    rows_j = terms_i.rows if terms_j is None else terms_j.rows
    return jax.lax.scan(step, None, (weights, terms_i.rows, rows_j))[1]


def support_bound(weights: Int[Array, "replicates set"], granule: int = 16) -> int:
    """An odd static bound on the stimuli any replicate drew, rounded up (fewer compilations
    across calls)."""
    most = int(jnp.max(jnp.count_nonzero(weights, axis=1)))
    return min(-(-most // granule) * granule, weights.shape[1] // 2 * 2) + 1


class BootstrapPlan(NamedTuple):
    block: int  # models per tile
    chunk: int  # replicates per call


def bootstrap_bytes(num_models: int, num_stimuli: int, dim: int, chunk: int, support: int) -> int:
    """Bytes held for ``num_models`` models at once: per model its features over the set, its
    Gram's diagonal, and the larger of what laying out and what resampling hold (laying out: its
    Gram's pairs and its ``Kw`` for a chunk of replicates, each twice while transposed;
    resampling: those once and one replicate's gathered, centred cells); plus one model's Gram
    while it is laid out."""
    n, pairs, cells = num_stimuli, num_stimuli * (num_stimuli // 2), support * (support // 2)
    per_model = n * dim + n + max(2 * pairs + 2 * chunk * n, pairs + chunk * n + cells)
    return 4 * (num_models * per_model + 5 * n * n + 2 * n * dim)


def bootstrap_plan(num_models: int, num_stimuli: int, dim: int, num_bootstrap: int, support: int,
                   max_bytes: int) -> BootstrapPlan:
    """All models in one tile if they fit ``max_bytes``, else two tiles of ``block`` models at a
    time; replicates in equal chunks of at most ``max(256, n // 2)`` (``Kw`` then costs no more
    than the pairs)."""
    calls = -(-num_bootstrap // max(256, num_stimuli // 2))
    chunk = -(-num_bootstrap // calls)
    shape = (num_stimuli, dim, chunk, support)
    if bootstrap_bytes(num_models, *shape) <= max_bytes:
        return BootstrapPlan(num_models, chunk)
    fixed, per_model = bootstrap_bytes(0, *shape), bootstrap_bytes(1, *shape) - bootstrap_bytes(0, *shape)
    block = (max_bytes - fixed) // (2 * per_model)
    if block < 1:
        raise ValueError(
            f"max_bytes={max_bytes} cannot hold the Gram pairs of two models ({fixed + 2 * per_model} bytes at "
            f"{num_stimuli} stimuli x {dim} dims); raise max_bytes or use fewer stimuli"
        )
    return BootstrapPlan(int(block), chunk)


__all__ = [
    "BootstrapPlan",
    "bootstrap_bytes",
    "bootstrap_plan",
    "SetTerms",
    "bootstrap_indices",
    "bootstrap_weights",
    "circulant_pairs",
    "pair_position",
    "replicate_inner",
    "resample_inner",
    "set_terms",
    "support_bound",
]
