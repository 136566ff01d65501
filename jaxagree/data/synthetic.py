"""Synthetic probes generated in JAX from a PRNG key (deterministic per key, ``vmap`` over
stimuli): arrays in, images and what was drawn out.

Pure generators: this module imports only jax, numpy and the standard library. A
``synthetic:NAME?params`` SOURCE string, and the image sets a cue-conflict probe is made from,
are read by :mod:`jaxagree.data.sources`, which calls these; never the other way round.

``local_global``: Navon figures: a large shape (the global form) drawn on a grid of cells, each
filled cell holding a small shape (the local element); global and local shapes are drawn
independently, so a model's choice tells which level it follows.

``cue_conflict``: texture-shape cue conflict from two given image sets: the low spatial
frequencies (global form) of one image and the high frequencies (texture) of another.

``squares``: the paper's probe for local (convolutional) against global (attention) processing:
identical squares on a uniform background, placed apart at random distances. ``num_squares``
squares sit in a row at a spacing drawn uniformly from ``separation`` (centre to centre, in
pixels), the row at a random angle and a random place that keeps every square inside the image.
Squares never overlap or touch: the smallest spacing must be at least
``(square_size + 2) * sqrt(2)``, which leaves a gap of a pixel at every angle after the squares
are placed on whole pixels.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Squares(NamedTuple):
    """Attributes:
    images: ``uint8 [stimuli, size, size, 3]``.
    separations: ``float32 [stimuli]``: centre-to-centre spacing of neighbouring squares, in
      pixels, as drawn (the drawn squares sit on whole pixels: within 1 pixel of it).
    corners: ``int32 [stimuli, squares, 2]``: each square's top-left pixel (row, column).
    """

    images: np.ndarray
    separations: np.ndarray
    corners: np.ndarray


def squares(
    key: jax.Array,
    num_stimuli: int,
    *,
    image_size: int = 224,
    square_size: int = 16,
    num_squares: int = 2,
    separation: tuple[float, float] | None = None,
    contrast: float = 0.5,
    background: float = 0.5,
) -> Squares:
    """Images of ``num_squares`` squares in a row at random spacings (see the module docstring).

    Args:
      key: a ``jax.random`` key; the same key gives the same images.
      num_stimuli: number of images.
      image_size: side of the square images, in pixels.
      square_size: side of each square, in pixels.
      num_squares: squares per image (at least 2).
      separation: ``(smallest, largest)`` centre-to-centre spacing; default from
        ``(square_size + 2) * sqrt(2)`` to the largest that fits any angle,
        ``(image_size - square_size) / (num_squares - 1)``.
      contrast: square intensity minus background, in [-1, 1] (0-1 intensity units).
      background: background intensity in [0, 1]; ``background + contrast`` must be too.
    """
    if num_stimuli < 1:
        raise ValueError(f"num_stimuli must be positive, got {num_stimuli}")
    if num_squares < 2:
        raise ValueError(f"num_squares must be at least 2 (the probe is their separation), got {num_squares}")
    if not 1 <= square_size < image_size:
        raise ValueError(f"square_size must be in [1, image_size={image_size}), got {square_size}")
    fits = (image_size - square_size) / (num_squares - 1)
    closest = (square_size + 2) * math.sqrt(2)
    low, high = separation if separation is not None else (closest, fits)
    if low < closest:
        raise ValueError(
            f"separation {low} is below (square_size + 2) * sqrt(2) = {closest:.2f}: squares could touch or overlap"
        )
    if not low <= high <= fits:
        raise ValueError(
            f"separation ({low}, {high}) must satisfy low <= high <= (image_size - square_size) / "
            f"(num_squares - 1) = {fits:.2f}, the largest spacing that fits at every angle"
        )
    _check_intensities(background, contrast)
    keys = jax.random.split(key, num_stimuli)
    images, spacing, corners = _render(keys, float(low), float(high), image_size=image_size,
                                       square_size=square_size, num_squares=num_squares,
                                       contrast=float(contrast), background=float(background))
    return Squares(np.asarray(images), np.asarray(spacing), np.asarray(corners))


def _check_intensities(background: float, contrast: float) -> None:
    if not (0 <= background <= 1 and 0 <= background + contrast <= 1 and contrast != 0):
        raise ValueError(f"background={background} and background + contrast={background + contrast} must be in "
                         "[0, 1], and contrast non-zero")


@partial(jax.jit, static_argnames=("image_size", "square_size", "num_squares"))
def _render(keys, low, high, *, image_size, square_size, num_squares, contrast, background):
    def one(key):
        spacing_key, angle_key, place_key = jax.random.split(key, 3)
        spacing = jax.random.uniform(spacing_key, (), minval=low, maxval=high)
        angle = jax.random.uniform(angle_key, (), minval=0.0, maxval=2 * jnp.pi)
        step = spacing * jnp.stack([jnp.sin(angle), jnp.cos(angle)])
        offsets = jnp.arange(num_squares)[:, None] * step[None, :]  # centres relative to the first
        half = square_size / 2
        # The first centre's range that keeps every centre within [half, size - half].
        lowest = half - offsets.min(axis=0)
        highest = image_size - half - offsets.max(axis=0)
        first = lowest + jax.random.uniform(place_key, (2,)) * (highest - lowest)
        corners = jnp.round(first[None, :] + offsets - half).astype(jnp.int32)
        rows = jnp.arange(image_size)[:, None]
        cols = jnp.arange(image_size)[None, :]
        inside = jnp.zeros((image_size, image_size), bool)
        for s in range(num_squares):
            inside |= ((rows >= corners[s, 0]) & (rows < corners[s, 0] + square_size)
                       & (cols >= corners[s, 1]) & (cols < corners[s, 1] + square_size))
        level = jnp.where(inside, background + contrast, background)
        image = jnp.round(level * 255).astype(jnp.uint8)
        return jnp.broadcast_to(image[:, :, None], (image_size, image_size, 3)), spacing, corners

    return jax.vmap(one)(keys)


SHAPES = ("square", "cross", "x", "ring")


def shape_mask(shape: str, n: int) -> np.ndarray:
    """An ``n x n`` boolean mask of one of :data:`SHAPES` (outline square, plus, diagonal cross,
    ring), with strokes about ``n / 5`` wide."""
    index = np.arange(n)
    rows, cols = index[:, None], index[None, :]
    stroke = max(1, round(n / 5))
    centre = (n - 1) / 2
    if shape == "square":
        return (rows < stroke) | (rows >= n - stroke) | (cols < stroke) | (cols >= n - stroke)
    if shape == "cross":
        return (np.abs(rows - centre) < stroke / 2 + 0.01) | (np.abs(cols - centre) < stroke / 2 + 0.01)
    if shape == "x":
        return (np.abs(rows - cols) < stroke / 2 + 0.5) | (np.abs(rows + cols - (n - 1)) < stroke / 2 + 0.5)
    radius = np.hypot(rows - centre, cols - centre)
    return (radius <= n / 2) & (radius >= n / 2 - stroke)


class LocalGlobal(NamedTuple):
    """Attributes:
    images: ``uint8 [stimuli, size, size, 3]``.
    global_shape: ``int32 [stimuli]`` index into :data:`SHAPES` of the large form.
    local_shape: ``int32 [stimuli]`` index into :data:`SHAPES` of the small elements.
    """

    images: np.ndarray
    global_shape: np.ndarray
    local_shape: np.ndarray


def local_global(
    key: jax.Array,
    num_stimuli: int,
    *,
    image_size: int = 224,
    grid: int = 7,
    contrast: float = -0.5,
    background: float = 1.0,
    congruent: bool = False,
) -> LocalGlobal:
    """Navon figures: a ``grid x grid`` global shape whose filled cells hold a local shape.

    Args:
      key: a ``jax.random`` key; the same key gives the same images.
      num_stimuli: number of images.
      image_size: side of the images; the figure is centred, ``grid * cell`` pixels wide with
        ``cell = image_size // (grid + 2)``.
      grid: cells per side of the global form (at least 5).
      contrast: element intensity minus background, in [-1, 1] (0-1 intensity units).
      background: background intensity in [0, 1].
      congruent: global and local shapes equal (else drawn independently, and different).
    """
    cell = image_size // (grid + 2)
    if grid < 5 or cell < 5:
        raise ValueError(f"need grid >= 5 and image_size // (grid + 2) >= 5 pixels per cell; "
                         f"got grid={grid}, cell={cell}")
    if num_stimuli < 1:
        raise ValueError(f"num_stimuli must be positive, got {num_stimuli}")
    _check_intensities(background, contrast)
    global_masks = jnp.asarray(np.stack([shape_mask(s, grid) for s in SHAPES]))
    # Each element leaves a 1-pixel gap to its neighbours, as in Navon's figures.
    local_masks = jnp.asarray(np.stack([np.pad(shape_mask(s, cell - 2), 1) for s in SHAPES]))
    keys = jax.random.split(key, num_stimuli)
    images, outer, inner = _render_local_global(keys, global_masks, local_masks, image_size=image_size,
                                                contrast=float(contrast), background=float(background),
                                                congruent=congruent)
    return LocalGlobal(np.asarray(images), np.asarray(outer), np.asarray(inner))


@partial(jax.jit, static_argnames=("image_size", "congruent"))
def _render_local_global(keys, global_masks, local_masks, *, image_size, contrast, background, congruent):
    shapes, grid = global_masks.shape[:2]
    cell = local_masks.shape[1]
    margin = (image_size - grid * cell) // 2

    def one(key):
        outer_key, inner_key = jax.random.split(key)
        outer = jax.random.randint(outer_key, (), 0, shapes)
        # Incongruent: the local shape is any of the others, uniformly.
        inner = outer if congruent else (outer + jax.random.randint(inner_key, (), 1, shapes)) % shapes
        figure = jnp.kron(global_masks[outer].astype(jnp.int32), local_masks[inner].astype(jnp.int32)) > 0
        canvas = jnp.zeros((image_size, image_size), bool)
        canvas = jax.lax.dynamic_update_slice(canvas, figure, (margin, margin))
        level = jnp.where(canvas, background + contrast, background)
        image = jnp.round(level * 255).astype(jnp.uint8)
        return jnp.broadcast_to(image[:, :, None], (image_size, image_size, 3)), outer, inner

    return jax.vmap(one)(keys)


class CueConflict(NamedTuple):
    """Attributes:
    images: ``uint8 [stimuli, size, size, 3]``.
    shape_index: ``int32 [stimuli]``: the image of ``shapes`` whose low frequencies each stimulus has.
    texture_index: ``int32 [stimuli]``: the image of ``textures`` whose high frequencies it has.
    """

    images: np.ndarray
    shape_index: np.ndarray
    texture_index: np.ndarray


def cue_conflict(
    key: jax.Array,
    shapes: np.ndarray,
    textures: np.ndarray,
    num_stimuli: int,
    *,
    cutoff: float = 8.0,
    image_size: int | None = None,
    shape_labels: np.ndarray | None = None,
    texture_labels: np.ndarray | None = None,
) -> CueConflict:
    """Texture-shape cue conflict from two image sets: each stimulus keeps the spatial
    frequencies of a ``shapes`` image up to ``cutoff`` cycles per image (its global form and
    layout) and takes every higher frequency from a ``textures`` image (its local texture).

    The split is an ideal filter in the 2-D Fourier domain (a disc of radius ``cutoff``), so the
    two bands are exactly the two sources' (up to rounding to uint8 and clipping to 0-255); the
    price is some ringing at edges. Low ``cutoff`` leaves less of the shape; high, less texture.

    Args:
      key: ``jax.random`` key: picks the pairs; the same key gives the same images.
      shapes, textures: ``uint8 [n, size, size, 3]`` image sets of one size.
      num_stimuli: images to make.
      cutoff: in cycles per image, between 0.5 and ``size / 2``.
      image_size: checked against the images' size when given.
      shape_labels, texture_labels: ``int [n]`` categories of both sets in one label space:
        when given, each shape is paired only with textures of another category (a true
        conflict), as in Geirhos et al. (2019).
    """
    shapes, textures = np.asarray(shapes), np.asarray(textures)
    for role, images in (("shapes", shapes), ("textures", textures)):
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8 or images.shape[0] == 0:
            raise ValueError(f"{role} must be uint8 [n >= 1, size, size, 3], got {images.dtype} {images.shape}")
    if shapes.shape[1:] != textures.shape[1:] or shapes.shape[1] != shapes.shape[2]:
        raise ValueError(f"shapes and textures must be square images of one size; got {shapes.shape[1:3]} and "
                         f"{textures.shape[1:3]}")
    size = shapes.shape[1]
    if image_size is not None and image_size != size:
        raise ValueError(f"image_size={image_size} but the images are {size} x {size}")
    if not 0.5 <= cutoff <= size / 2:
        raise ValueError(f"cutoff must be in [0.5, {size / 2}] cycles per image, got {cutoff}")
    if num_stimuli < 1:
        raise ValueError(f"num_stimuli must be positive, got {num_stimuli}")
    if (shape_labels is None) != (texture_labels is None):
        raise ValueError("give both shape_labels and texture_labels, or neither")
    shape_key, texture_key = jax.random.split(key)
    shape_index = jax.random.randint(shape_key, (num_stimuli,), 0, shapes.shape[0])
    if shape_labels is None:
        texture_index = jax.random.randint(texture_key, (num_stimuli,), 0, textures.shape[0])
    else:
        shape_labels, texture_labels = np.asarray(shape_labels), np.asarray(texture_labels)
        if shape_labels.shape != shapes.shape[:1] or texture_labels.shape != textures.shape[:1]:
            raise ValueError("shape_labels and texture_labels need one label per image")
        conflicting = shape_labels[:, None] != texture_labels[None, :]  # [shapes, textures]
        lonely = np.flatnonzero(~conflicting.any(axis=1))
        if lonely.size:
            raise ValueError(f"shape image {int(lonely[0])} has no texture of another category to pair with")
        choose = jax.vmap(lambda k, allowed: jax.random.choice(k, allowed.shape[0], p=allowed / allowed.sum()))
        texture_index = choose(jax.random.split(texture_key, num_stimuli),
                               jnp.asarray(conflicting, jnp.float32)[shape_index])
    frequency = np.fft.fftfreq(size) * size  # cycles per image
    low = jnp.asarray(np.hypot(frequency[:, None], frequency[None, :]) <= cutoff)
    shape_index, texture_index = np.asarray(shape_index, np.int32), np.asarray(texture_index, np.int32)
    # In chunks: the complex spectra take 16x the images' memory.
    chunks = [slice(i, i + 256) for i in range(0, num_stimuli, 256)]
    images = np.concatenate([np.asarray(_hybrid(jnp.asarray(shapes[shape_index[c]]),
                                                jnp.asarray(textures[texture_index[c]]), low)) for c in chunks])
    return CueConflict(images, shape_index, texture_index)


@jax.jit
def _hybrid(shapes, textures, low):
    """Low band of ``shapes`` + high band of ``textures``, per channel."""

    def spectrum(images):
        return jnp.fft.fft2(images.astype(jnp.float32), axes=(1, 2))

    mask = low[None, :, :, None]
    mixed = jnp.where(mask, spectrum(shapes), spectrum(textures))
    pixels = jnp.fft.ifft2(mixed, axes=(1, 2)).real
    return jnp.clip(jnp.round(pixels), 0, 255).astype(jnp.uint8)


__all__ = ["SHAPES", "CueConflict", "LocalGlobal", "Squares", "cue_conflict", "local_global", "shape_mask", "squares"]
