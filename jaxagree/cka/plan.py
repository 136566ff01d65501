"""How ``cka_matrix`` plans its work: the Gram path's row-block layout, the memory each path holds,
the path choice, and the matmul precisions.

This module is the planning seam for tests and benchmarks, not the user API (that is
``jaxagree.cka_matrix``): they read the same decisions ``cka_matrix`` takes, and
:func:`use_gram_blocks` lets tests give small inputs the several row blocks that real sizes get.
Nothing here changes a result, only how it is computed.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

# The debiased estimator from cross-products subtracts terms of similar size; below this many
# stimuli that costs float32 digits (and Grams are tiny anyway), so "auto" keeps to the Grams.
FEATURE_DEBIASED_MIN_STIMULI = 64

PRECISIONS = ("float32", "tensorfloat32", "bfloat16")

# Row blocks of the Gram path have at least this many stimuli when the stimuli allow (see gram_layout).
EFFICIENT_ROWS = 256


class GramBlocks(NamedTuple):
    """Sizes of the Gram path's row blocks (the defaults are what ``cka_matrix`` uses)."""

    step_cells: int = 2**18  # Gram cells per model per scan step: long enough for efficient products
    min_rows: int = 32  # fewer rows per block make the Gram matmuls inefficient
    min_blocks: int = 5  # fewer blocks save less of each Gram: 1 block computes all, 3 blocks 2/3, 5 blocks 3/5


_GRAM_BLOCKS = contextvars.ContextVar("jaxagree_gram_blocks", default=GramBlocks())


def current_gram_blocks() -> GramBlocks:
    """The row-block sizes ``cka_matrix`` plans with: the defaults, or those of the innermost
    :func:`use_gram_blocks`."""
    return _GRAM_BLOCKS.get()


@contextlib.contextmanager
def use_gram_blocks(blocks: GramBlocks) -> Iterator[GramBlocks]:
    """Within the block, ``cka_matrix`` plans its Gram path with ``blocks`` (tests use a few
    stimuli per row block, so that small inputs exercise odd and even block counts and padding)."""
    token = _GRAM_BLOCKS.set(GramBlocks(*blocks))
    try:
        yield blocks
    finally:
        _GRAM_BLOCKS.reset(token)


class Layout(NamedTuple):
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


def gram_layout(num_stimuli: int, shards: int = 1, blocks: GramBlocks = GramBlocks()) -> Layout:
    """The row blocks of ``num_stimuli`` stimuli split over ``shards`` devices."""
    rows = max(blocks.min_rows, min(2 * blocks.step_cells // num_stimuli, num_stimuli // blocks.min_blocks))
    if blocks.step_cells >= GramBlocks().step_cells:
        # Past ~2,000 stimuli the default step's cells alone would give thin row blocks (65 rows at
        # 8,000 stimuli), whose Gram matmuls ran at a quarter of the matmul rate; more cells per step
        # (counted by gram_model_bytes, so tiles still fit max_bytes) keep them efficient.
        rows = max(rows, min(EFFICIENT_ROWS, num_stimuli // blocks.min_blocks))
    count = -(-num_stimuli // rows)
    if shards == 1 and count % 2 == 0:
        count += 1  # an odd count covers the triangle without a block met twice
    count = -(-count // shards) * shards
    rows = -(-num_stimuli // count)
    return Layout(rows, count, (count // 2 + 1) * rows)


def column_weights(layout: Layout) -> np.ndarray:
    """sqrt of each column's weight in a row block (see :class:`Layout`)."""
    offset = np.arange(layout.span) // layout.rows
    once = (offset == 0) | ((layout.blocks % 2 == 0) & (offset == layout.blocks // 2))
    return np.where(once, 1.0, math.sqrt(2.0)).astype(np.float32)


def gram_model_bytes(num_stimuli: int, dim: int, shards: int = 1, blocks: GramBlocks = GramBlocks()) -> int:
    """Bytes the Gram path holds per model of a tile: its features (a copy when sliced, stacked
    or padded), its centring, and one scan step's Gram cells."""
    return 4 * (num_stimuli * dim + num_stimuli + 2 * dim + gram_layout(num_stimuli, shards, blocks).step_cells)


class Path(NamedTuple):
    name: str  # "gram" or "features"
    block: int  # models per block (gram) or feature columns per block (features)
    flops: float


def choose_path(
    dims: list[int],
    num_stimuli: int,
    max_bytes: int,
    method: str,
    debiased: bool = False,
    shards: int = 1,
    blocks: GramBlocks = GramBlocks(),
) -> Path:
    """The cheaper of the Gram and feature-space paths that fits ``max_bytes``.

    Gram path: ``2 C d`` per model for the Gram cells (``C ~ n^2 / 2``: half of each Gram, see
    :class:`Layout`), recomputed once per tile a model is in when the models do not fit one
    tile, plus ``2 M^2 C`` for the products. Feature path: ``n D^2`` for the cross-products of all
    features side by side (``D`` = sum of dims), any block size.
    """
    n, num_models, total = num_stimuli, len(dims), sum(dims)
    options = []
    per_model = gram_model_bytes(n, max(dims), shards, blocks)
    gram_block = num_models if num_models * per_model <= max_bytes else max_bytes // (2 * per_model)
    if gram_block >= 1 and method in ("auto", "gram"):
        tiles = -(-num_models // gram_block)
        cells = gram_layout(n, shards, blocks).cells
        flops = 2 * cells * max(dims) * num_models * tiles + 2 * num_models**2 * cells
        options.append(Path("gram", gram_block, flops))
    # A tile holds two blocks of D features ([n, D] each) and two [D, D] cross-products:
    # 4 bytes * (2 n D + 2 D^2) <= max_bytes.
    feature_block = int((-n + math.sqrt(n * n + max_bytes / 2)) / 2)
    accurate = not debiased or n >= FEATURE_DEBIASED_MIN_STIMULI or method == "features"
    if feature_block >= max(dims) and method in ("auto", "features") and accurate:
        options.append(Path("features", feature_block, float(n) * total * total))
    if not options:
        raise ValueError(
            f"max_bytes={max_bytes} cannot hold the features and Gram row blocks of one model "
            f"({per_model} bytes at {n} stimuli x {max(dims)} dims)"
            + ("" if method == "gram" else f" nor the cross-products of the widest model ({max(dims)} dims)")
            + "; raise max_bytes or use fewer stimuli"
        )
    return min(options, key=lambda option: option.flops)


def minibatch_route(batch_size: int, dims: Sequence[int]) -> str:
    """How the minibatch estimator takes a batch's unbiased HSIC: ``"features"`` (cross-products,
    ``~b D^2`` FLOPs and ``D^2`` floats) when cheaper than ``"gram"`` (each model's ``b x b`` Gram,
    ``~b^2 (D + M^2)``) and the batch is large enough for float32 (as :func:`choose_path`)."""
    total = sum(dims)
    cheaper = batch_size * total * total <= batch_size**2 * (total + len(dims) ** 2)
    return "features" if cheaper and batch_size >= FEATURE_DEBIASED_MIN_STIMULI else "gram"


def default_max_bytes() -> int:
    """A quarter of this process's first device's memory (of the host's RAM on a CPU). A local
    device: under ``jax.distributed`` the global first device belongs to process 0."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"]) // 4
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4


def matmul(a: Float[Array, "m k"], b: Float[Array, "k n"], precision: str) -> Float[Array, "m n"]:
    """``a @ b`` with float32 accumulation: float32 products, TF32 where the device has it
    (``Precision.HIGH``: TF32 on NVIDIA GPUs, 3 bfloat16 passes on TPU, float32 on CPU), or
    bfloat16 operands. Both paths run their products through it (benchmarks time it)."""
    if precision == "bfloat16":
        return jnp.matmul(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16), preferred_element_type=jnp.float32)
    level = jax.lax.Precision.HIGH if precision == "tensorfloat32" else jax.lax.Precision.HIGHEST
    return jnp.matmul(a, b, precision=level)


__all__ = [
    "FEATURE_DEBIASED_MIN_STIMULI",
    "PRECISIONS",
    "GramBlocks",
    "Layout",
    "Path",
    "choose_path",
    "column_weights",
    "current_gram_blocks",
    "default_max_bytes",
    "gram_layout",
    "gram_model_bytes",
    "matmul",
    "minibatch_route",
    "use_gram_blocks",
]
