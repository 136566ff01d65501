"""Synthetic probes generated in JAX from a PRNG key (deterministic per key, ``vmap`` over
stimuli).

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
    if not (0 <= background <= 1 and 0 <= background + contrast <= 1 and contrast != 0):
        raise ValueError(f"background={background} and background + contrast={background + contrast} must be in "
                         "[0, 1], and contrast non-zero")
    keys = jax.random.split(key, num_stimuli)
    images, spacing, corners = _render(keys, float(low), float(high), image_size=image_size,
                                       square_size=square_size, num_squares=num_squares,
                                       contrast=float(contrast), background=float(background))
    return Squares(np.asarray(images), np.asarray(spacing), np.asarray(corners))


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


def parse_synthetic(source: str) -> tuple[str, dict[str, str]]:
    """``synthetic:NAME?key=value&...`` -> (NAME, {key: value})."""
    body = source.removeprefix("synthetic:")
    name, _, query = body.partition("?")
    params = {}
    for part in filter(None, query.split("&")):
        key, eq, value = part.partition("=")
        if not eq:
            raise ValueError(f"{source}: parameter {part!r} has no '=value'")
        params[key] = value
    return name, params


_SQUARES_PARAMS = {
    "n": ("num_stimuli", int), "size": ("image_size", int), "square": ("square_size", int),
    "count": ("num_squares", int), "contrast": ("contrast", float), "background": ("background", float),
}


def synthetic_images(source: str) -> tuple[np.ndarray, list[str]]:
    """Images and ids of a ``synthetic:`` source, e.g.
    ``synthetic:squares?n=1000&size=224&square=16&count=2&min_sep=30&max_sep=150&contrast=0.5&seed=0``."""
    name, params = parse_synthetic(source)
    if name != "squares":
        raise ValueError(f"{source}: unknown synthetic probe {name!r}; known: squares")
    known = set(_SQUARES_PARAMS) | {"seed", "min_sep", "max_sep"}
    unknown = set(params) - known
    if unknown:
        raise ValueError(f"{source}: unknown parameter(s) {sorted(unknown)}; known: {sorted(known)}")
    try:
        kwargs = {_SQUARES_PARAMS[k][0]: _SQUARES_PARAMS[k][1](v) for k, v in params.items() if k in _SQUARES_PARAMS}
        seed = int(params.get("seed", 0))
        bounds = [float(params[k]) for k in ("min_sep", "max_sep") if k in params]
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None
    if len(bounds) == 1:
        raise ValueError(f"{source}: give both min_sep and max_sep, or neither")
    kwargs.setdefault("num_stimuli", 1000)
    probe = squares(jax.random.key(seed), separation=tuple(bounds) if bounds else None, **kwargs)
    return probe.images, [f"squares-{seed}-{i:06d}" for i in range(len(probe.images))]


__all__ = ["Squares", "parse_synthetic", "squares", "synthetic_images"]
