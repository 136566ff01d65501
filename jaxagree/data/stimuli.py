"""What every stimulus source is: a :class:`Stimuli` (random access to uint8 images with stable
ids and, when known, labels), the in-memory :class:`ArrayStimuli`, and the decoding shared by
sources of encoded images (:class:`DecodedStimuli`, :func:`decode_image`).

Image size. Decoded images come in many sizes, but a batch needs one shape; so they are brought
to one square stimulus: the shorter side resized (PIL, antialiased bicubic) and the centre
cropped (:func:`square_image`). Every model then sees the same pixels, and its own
preprocessing runs on the device.

Colour. Greyscale images (PIL mode ``L``, or one channel) are converted to RGB by repeating the
channel; any other mode (RGBA, CMYK, palette, 16-bit, ...) is an error that names the image,
since a silent conversion would change what the models see.
"""

from __future__ import annotations

import abc
import concurrent.futures
import functools
import hashlib
import io
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

DEFAULT_IMAGE_SIZE = 256


class Stimuli(abc.ABC):
    """A stimulus set with random access.

    Attributes:
      source: the SOURCE string (or a description) it was opened from.
      ids: one stable id per stimulus (the same on every run).
      labels: ``int32 [stimuli]`` category index (-1 = unlabelled), or None without labels.
      categories: the names of the label indices, or None.
    """

    source: str
    _ids: list[str]
    _labels: np.ndarray | None = None
    _categories: list[str] | None = None

    @property
    def ids(self) -> list[str]:
        return self._ids

    @property
    def labels(self) -> np.ndarray | None:
        return self._labels

    @property
    def categories(self) -> list[str] | None:
        return self._categories

    def __len__(self) -> int:
        return len(self.ids)

    @abc.abstractmethod
    def read(self, indices: Sequence[int]) -> np.ndarray:
        """``uint8 [len(indices), height, width, 3]``, one shape for the whole set."""

    @abc.abstractmethod
    def fingerprint(self) -> str:
        """A short hash that changes whenever the images a model would see change."""

    def batches(self, batch_size: int, start: int = 0, prefetch: int = 2) -> Iterator[tuple[int, np.ndarray]]:
        """``(first index, images)`` for consecutive batches from ``start``, read ``prefetch``
        batches ahead in a background thread so that decoding overlaps device work."""
        starts = range(start, len(self), batch_size)
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jaxagree-read") as reader:
            pending = [reader.submit(self.read, range(s, min(s + batch_size, len(self)))) for s in starts[:prefetch]]
            for position, first in enumerate(starts):
                images = pending.pop(0).result()
                if position + prefetch < len(starts):
                    ahead = starts[position + prefetch]
                    pending.append(reader.submit(self.read, range(ahead, min(ahead + batch_size, len(self)))))
                yield first, images


class ArrayStimuli(Stimuli):
    """Images held in memory: ``uint8 [stimuli, height, width, 3]``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray | None = None, ids: Sequence[str] | None = None,
                 categories: Sequence[str] | None = None, source: str = "array"):
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"{source}: images must be uint8 [stimuli, height, width, 3], "
                             f"got {images.dtype} {images.shape}")
        if images.shape[0] == 0:
            raise ValueError(f"{source}: no images (0 stimuli)")
        num = images.shape[0]
        ids = [f"{i:06d}" for i in range(num)] if ids is None else [str(i) for i in ids]
        if len(ids) != num:
            raise ValueError(f"{source}: {len(ids)} ids for {num} images")
        if len(set(ids)) != num:
            raise ValueError(f"{source}: stimulus ids are not unique")
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != (num,) or not np.issubdtype(labels.dtype, np.integer):
                raise ValueError(f"{source}: labels must be int [{num}], got {labels.dtype} {labels.shape}")
            # Checked before the cast: a label past the int32 range would wrap into a valid one.
            limit = np.iinfo(np.int32).max if categories is None else len(categories) - 1
            bad = (labels < -1) | (labels > limit)
            if bad.any():
                at = int(np.argmax(bad))
                raise ValueError(f"{source}: label {labels[at]} of stimulus {ids[at]!r} is outside "
                                 f"[-1, {limit}] (-1 = unlabelled)")
            labels = labels.astype(np.int32)
        self.images, self.source = images, source
        self._ids, self._labels = ids, labels
        self._categories = None if categories is None else [str(c) for c in categories]

    def read(self, indices: Sequence[int]) -> np.ndarray:
        return self.images[np.asarray(indices, dtype=np.int64)]

    def fingerprint(self) -> str:
        return self._digest

    @functools.cached_property
    def _digest(self) -> str:
        images = self.images
        digest = hashlib.sha256(f"{images.shape}{images.dtype}".encode())
        flat = np.ascontiguousarray(images).reshape(-1).view(np.uint8)
        for start in range(0, flat.size, 1 << 26):
            digest.update(flat[start : start + (1 << 26)])
        return digest.hexdigest()[:16]


class DecodedStimuli(Stimuli):
    """Base of sources of encoded images: decoding in a thread pool, colour checks, one size.
    A subclass gives ``_encoded(index)``: the image's bytes, file or decoded array."""

    def __init__(self, image_size: int | None, workers: int | None):
        if image_size is not None and image_size < 1:
            raise ValueError(f"image_size must be positive or None, got {image_size}")
        self.image_size = image_size
        self.workers = workers or min(32, (os.cpu_count() or 1) + 4)

    @abc.abstractmethod
    def _encoded(self, index: int) -> bytes | Path | np.ndarray: ...

    @functools.cached_property
    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        """One pool for the source's life: decoding, checks and record reads (idle threads are
        joined at exit)."""
        return concurrent.futures.ThreadPoolExecutor(self.workers, thread_name_prefix="jaxagree-decode")

    def _where(self, index: int) -> str:
        return f"{self.source} stimulus {index} ({self.ids[index]})"

    def read(self, indices: Sequence[int]) -> np.ndarray:
        indices = list(indices)
        images = list(self._pool.map(self._decode, indices))
        shapes = {image.shape for image in images}
        if len(shapes) > 1:
            first = images[0].shape
            odd = next(i for i, image in zip(indices, images) if image.shape != first)
            raise ValueError(f"{self._where(odd)} is {images[indices.index(odd)].shape[:2]} but "
                             f"{self._where(indices[0])} is {first[:2]}; give an image size (--image-size) "
                             "to bring every image to one square size")
        return np.stack(images) if images else np.zeros((0, 1, 1, 3), np.uint8)

    def _decode(self, index: int) -> np.ndarray:
        return decode_image(self._encoded(index), self.image_size, self._where(index))


def decode_image(encoded: bytes | Path | np.ndarray, image_size: int | None, where: str) -> np.ndarray:
    """Decode one image (encoded bytes, a file, or an already decoded array) to ``uint8 [h, w, 3]``:
    greyscale repeated to RGB, other modes refused; with ``image_size``, the shorter side resized
    to it (antialiased bicubic) and centre cropped."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(encoded, np.ndarray):
        if encoded.dtype != np.uint8 or encoded.ndim not in (2, 3) or (encoded.ndim == 3 and encoded.shape[-1]
                                                                       not in (1, 3)):
            raise ValueError(f"{where} is {encoded.dtype} {encoded.shape}; expected uint8 [h, w, 3] or greyscale")
        image = np.broadcast_to(encoded.reshape(*encoded.shape[:2], -1), (*encoded.shape[:2], 3))
        if not image_size:
            return image
        return np.asarray(square_image(Image.fromarray(np.ascontiguousarray(image)), image_size))
    try:
        with Image.open(encoded if isinstance(encoded, Path) else io.BytesIO(encoded)) as image:
            image.load()
            if image.mode == "L":
                image = image.convert("RGB")
            elif image.mode != "RGB":
                raise ValueError(f"{where} has colour mode {image.mode!r}; only RGB and greyscale (L) images are "
                                 "read (convert it, or leave it out with --skip-bad)")
            if image_size is not None:
                image = square_image(image, image_size)
            return np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError) as error:  # PIL raises SyntaxError for some bad files
        raise ValueError(f"{where} cannot be decoded ({error}); leave out unreadable images with --skip-bad") from None


def square_image(image, size: int):
    """A PIL image brought to ``size x size``: the shorter side resized to ``size``
    (antialiased bicubic), then the centre cropped."""
    from PIL import Image

    width, height = image.size
    if (width, height) == (size, size):
        return image
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return image.crop((left, top, left + size, top + size))


__all__ = ["DEFAULT_IMAGE_SIZE", "ArrayStimuli", "DecodedStimuli", "Stimuli", "decode_image", "square_image"]
