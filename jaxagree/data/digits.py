"""Cluttered digit canvases: scikit-learn's bundled handwritten digits (1,797 images of 8x8,
shipped with the package, no download) placed on a larger RGB canvas at random positions and
scales, among fragments of other digits and pixel noise.

Why this data: it trains a zoo of small models offline in minutes, and it asks for what tells
model families apart. A digit may fill most of the canvas or a third of it, so a model needs a
receptive field as large as the digit and its global shape; the fragments are local strokes
that look like parts of digits, so purely local evidence misleads.

Train and pool are disjoint at the source: the 1,797 digits are split by a fixed seed
(:data:`SPLIT_SEED`) *before* composing, and a canvas of one split draws its digit and its
fragments from that split only; so no stimulus of the pool shows a digit (or a part of one)
that any training canvas showed.

Pure generator: this module imports only jax, numpy and the standard library at import time,
and scikit-learn when the digits are first read. ``synthetic:digits?split=...`` SOURCE strings
are read by :mod:`jaxagree.data.sources`, which calls :func:`digit_canvases`; never the other
way round.
"""

from __future__ import annotations

import functools
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, UInt8

SPLITS = ("train", "pool")
# Fixed, not a parameter: a split seed given per call could make a pool that overlaps a training set.
SPLIT_SEED = 0
POOL_FRACTION = 0.25
CATEGORIES = tuple(str(d) for d in range(10))
# Canvases are composed in chunks of this many, whatever the set's size: bounded memory and one
# compiled shape (the compile, 4-6 s, costs more than composing 4,000 canvases, ~0.4 s; a chunk
# size per set size compiled again for each).
_CHUNK = 256


class DigitCanvases(NamedTuple):
    """Attributes:
    images: ``uint8 [stimuli, size, size, 3]``.
    labels: ``int32 [stimuli]``: the digit shown (0-9).
    digits: ``int32 [stimuli]``: its index among scikit-learn's 1,797 digits.
    fragments: ``int32 [stimuli, clutter]``: the digits the clutter fragments were cut from.
    scales: ``float32 [stimuli]``: the digit's side, as a fraction of the canvas side.
    """

    images: np.ndarray
    labels: np.ndarray
    digits: np.ndarray
    fragments: np.ndarray
    scales: np.ndarray


@functools.cache
def source_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: ``float32 [1797, 8, 8]`` in [0, 1] and their ``int32 [1797]`` labels."""
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    bunch = load_digits()
    return (bunch.images / 16.0).astype(np.float32), bunch.target.astype(np.int32)


def digit_split(split: str) -> np.ndarray:
    """``int64 [digits]``: the sorted indices of the source digits of ``split`` (``"train"``:
    75%, ``"pool"``: 25%), the same on every run."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    total = len(source_digits()[1])
    order = np.random.default_rng(SPLIT_SEED).permutation(total)
    cut = round(total * POOL_FRACTION)
    return np.sort(order[cut:] if split == "train" else order[:cut])


def digit_canvases(
    key: jax.Array,
    num_stimuli: int,
    *,
    split: str = "train",
    image_size: int = 32,
    min_scale: float = 0.5,
    max_scale: float = 0.9,
    clutter: int = 1,
    noise: float = 0.05,
) -> DigitCanvases:
    """``num_stimuli`` canvases of the digits of ``split`` (see the module docstring).

    Args:
      key: a ``jax.random`` key; the same key (and arguments) gives the same canvases.
      num_stimuli: number of canvases.
      split: ``"train"`` or ``"pool"``: which source digits (disjoint) to draw from.
      image_size: side of the canvas, in pixels (at least 16).
      min_scale, max_scale: the digit's side as a fraction of the canvas side, drawn uniformly
        between them (``0 < min_scale <= max_scale <= 1``).
      clutter: fragments of other digits of the split per canvas (0 to 8): a random window
        of 3-5 x 3-5 of their 8x8 pixels, at the digit's scale range, anywhere on the canvas.
      noise: the standard deviation of Gaussian pixel noise, in 0-1 intensity units ([0, 0.5]).
    """
    if num_stimuli < 1:
        raise ValueError(f"num_stimuli must be positive, got {num_stimuli}")
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels, got {image_size}")
    if not 0 < min_scale <= max_scale <= 1:
        raise ValueError(f"need 0 < min_scale <= max_scale <= 1, got min_scale={min_scale}, max_scale={max_scale}")
    if not 0 <= clutter <= 8:
        raise ValueError(f"clutter must be from 0 to 8 fragments, got {clutter}")
    if not 0 <= noise <= 0.5:
        raise ValueError(f"noise must be in [0, 0.5], got {noise}")
    images, labels = source_digits()
    members = digit_split(split)
    keys = jax.random.split(key, num_stimuli)
    chunk = _CHUNK  # the last chunk padded: every call reuses one compiled function
    padded = -(-num_stimuli // chunk) * chunk
    keys = jnp.concatenate([keys, jnp.broadcast_to(keys[:1], (padded - num_stimuli,) + keys.shape[1:])])
    parts = [compose_digits(keys[start : start + chunk], jnp.asarray(images[members]), image_size=image_size,
                            min_scale=float(min_scale), max_scale=float(max_scale), clutter=clutter,
                            noise=float(noise))
             for start in range(0, padded, chunk)]
    canvases, chosen, fragments, scales = (np.concatenate([np.asarray(p[i]) for p in parts])[:num_stimuli]
                                           for i in range(4))
    digits = members[chosen].astype(np.int32)
    return DigitCanvases(canvases, labels[digits], digits, members[fragments].astype(np.int32),
                         scales.astype(np.float32))


@partial(jax.jit, static_argnames=("image_size", "clutter"))
def compose_digits(
    keys: jax.Array,
    digits: Float[Array, "pool 8 8"],
    *,
    image_size: int,
    min_scale: float | jax.Array,  # traced under jit: one compiled function for every value
    max_scale: float | jax.Array,
    clutter: int,
    noise: float | jax.Array,
) -> tuple[UInt8[Array, "stimuli size size 3"], Int[Array, " stimuli"], Int[Array, "stimuli clutter"],
           Float[Array, " stimuli"]]:
    """One canvas per key from ``digits`` (intensities in [0, 1]): the canvases, the index into
    ``digits`` of each one's digit and of its fragments, and each digit's scale."""

    def one(key):
        pick, place, frag, colour, grain = jax.random.split(key, 5)
        index = jax.random.randint(pick, (), 0, digits.shape[0])
        ink = _placed(place, digits[index], image_size, min_scale, max_scale)
        # Fragments come from other digits of the same pool, so that the split stays disjoint.
        others = jax.random.randint(frag, (clutter,), 0, digits.shape[0])
        frag_keys = jax.random.split(jax.random.fold_in(frag, 1), clutter)
        for f in range(clutter):
            window_key, place_key = jax.random.split(frag_keys[f])
            piece = digits[others[f]] * _window(window_key)
            ink = jnp.maximum(ink, _placed(place_key, piece, image_size, min_scale, max_scale))
        # One ink and one background colour per canvas (fragments share the ink): colour tells nothing.
        fg_key, bg_key = jax.random.split(colour)
        foreground = jax.random.uniform(fg_key, (3,), minval=0.55, maxval=1.0)
        background = jax.random.uniform(bg_key, (3,), minval=0.0, maxval=0.3)
        image = background + (foreground - background) * jnp.clip(ink, 0.0, 1.0)[..., None]
        image = image + noise * jax.random.normal(grain, image.shape)
        return (jnp.round(jnp.clip(image, 0.0, 1.0) * 255).astype(jnp.uint8), index, others,
                _scale(place, min_scale, max_scale))

    return jax.vmap(one)(keys)


def _scale(key: jax.Array, min_scale: jax.Array, max_scale: jax.Array) -> jax.Array:
    return jax.random.uniform(jax.random.fold_in(key, 0), (), minval=min_scale, maxval=max_scale)


def _placed(key: jax.Array, digit: jax.Array, image_size: int, min_scale: jax.Array, max_scale: jax.Array) -> jax.Array:
    """``digit`` (8x8) resized to a random side and placed at a random spot inside the canvas."""
    side = _scale(key, min_scale, max_scale) * image_size
    corner = jax.random.uniform(jax.random.fold_in(key, 1), (2,)) * (image_size - side)
    factor = side / digit.shape[0]
    return jax.image.scale_and_translate(digit, (image_size, image_size), (0, 1), jnp.stack([factor, factor]),
                                         corner, method="linear", antialias=True)


def _window(key: jax.Array) -> jax.Array:
    """An 8x8 mask keeping a random 3-5 x 3-5 window: a stroke or two of a digit, not a digit."""
    size_key, corner_key = jax.random.split(key)
    height, width = jax.random.randint(size_key, (2,), 3, 6)
    top = jax.random.randint(corner_key, (), 0, 9 - height)
    left = jax.random.randint(jax.random.fold_in(corner_key, 1), (), 0, 9 - width)
    rows, cols = jnp.arange(8)[:, None], jnp.arange(8)[None, :]
    return ((rows >= top) & (rows < top + height) & (cols >= left) & (cols < left + width)).astype(jnp.float32)


__all__ = ["CATEGORIES", "POOL_FRACTION", "SPLITS", "SPLIT_SEED", "DigitCanvases", "compose_digits", "digit_canvases",
           "digit_split", "source_digits"]
