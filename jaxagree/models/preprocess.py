"""How a model wants its images, and doing it on the device: resize, centre crop, rescale and
normalise as a Hugging Face image processor does with PIL, with static shapes so that it runs
inside the model's ``jit``. jax and numpy only: the extraction cache keys its entries on this
module's code (:func:`jaxagree.pipeline.keys.code_digest` of :func:`preprocess_images`)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Preprocess(NamedTuple):
    """How a model wants its images (the Hugging Face image processors' steps, on the device).

    Fields:
      size: the side of the square the model takes.
      mean, std: per-channel normalisation, applied last.
      crop_fraction: the resized side (see ``resize``) is ``round(size / crop_fraction)``;
        the centre ``size`` square is then cropped out.
      resample: the filter, a ``jax.image.resize`` method; ``"nearest"``, ``"linear"``,
        ``"cubic"`` and ``"lanczos3"`` equal PIL's NEAREST, BILINEAR, BICUBIC and LANCZOS
        (antialiased when downscaling, as PIL's are).
      resize: ``"shorter_side"`` resizes the shorter side and keeps the aspect ratio;
        ``"square"`` resizes both sides to the same length (a ViT or BEiT processor's
        ``{"height", "width"}`` size).
      rescale: the factor from 8-bit values to what normalisation expects (HF's
        ``rescale_factor``; 1.0 for a processor that does not rescale).
    """

    size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_fraction: float = 0.875
    resample: str = "linear"
    resize: str = "shorter_side"
    rescale: float = 1 / 255


def preprocess_images(images: jax.Array, preprocess: Preprocess) -> jax.Array:
    """uint8 ``[batch, h, w, 3]`` -> normalised float32 ``[batch, size, size, 3]``, as a Hugging
    Face image processor does it with PIL: resize (:class:`Preprocess` says to what and with which
    filter), centre crop, ``* rescale``, per-channel normalisation. Shapes are static, so this
    runs inside the model's ``jit``."""
    try:
        jax.image.ResizeMethod.from_string(preprocess.resample)
    except ValueError:
        raise ValueError(f"Preprocess.resample must be a jax.image.resize method such as 'linear', 'cubic', "
                         f"'lanczos3' or 'nearest', got {preprocess.resample!r}") from None
    size = preprocess.size
    height, width = images.shape[1:3]
    resized_h, resized_w = _resized_shape(height, width, preprocess)
    x = images.astype(jnp.float32)
    # PIL resizes width first, then height, and clips each pass to the 8-bit range (cubic and
    # lanczos overshoot at edges): the same order and clips keep bicubic within rounding of it.
    if resized_w != width:
        x = _resample_axis(x, 2, resized_w, preprocess.resample)
    if resized_h != height:
        x = _resample_axis(x, 1, resized_h, preprocess.resample)
    top, left = (resized_h - size) // 2, (resized_w - size) // 2
    x = x[:, top : top + size, left : left + size] * preprocess.rescale
    return (x - jnp.asarray(preprocess.mean)) / jnp.asarray(preprocess.std)


def _resized_shape(height: int, width: int, preprocess: Preprocess) -> tuple[int, int]:
    """The (height, width) an image is resized to before the centre crop."""
    short = max(preprocess.size, round(preprocess.size / preprocess.crop_fraction))
    if preprocess.resize == "square":
        return short, short
    if preprocess.resize != "shorter_side":
        raise ValueError(f"Preprocess.resize must be 'shorter_side' or 'square', got {preprocess.resize!r}")
    # The longer side truncated, as transformers' get_resize_output_image_size and torchvision's
    # Resize do (in integers: int(short * long / shorter) without a float rounding up).
    if height <= width:
        return short, short * width // height
    return short * height // width, short


def _resample_axis(x: jax.Array, axis: int, length: int, method: str) -> jax.Array:
    shape = x.shape[:axis] + (length,) + x.shape[axis + 1 :]
    return jnp.clip(jax.image.resize(x, shape, method=method, antialias=True), 0.0, 255.0)


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Preprocess", "preprocess_images"]
