"""Stimulus sources: random access to uint8 images with stable ids and, when known, labels.

Every source is a :class:`Stimuli`: its length, its stimulus ids, its labels and category names,
and ``read(indices)`` returning ``uint8 [len(indices), height, width, 3]``. Random access is what
lets extraction resume in the middle of a set. :func:`open_stimuli` reads the SOURCE forms of
``jaxagree extract --stimuli``:

``npz:PATH`` (or a ``.npz``/``.npy`` path)
    an image array; an ``.npz`` holds ``images`` and optionally ``labels``, ``ids`` and
    ``categories``.
``folder:PATH``
    a folder of images (``.jpg .jpeg .png .bmp .gif .webp .tif .tiff .ppm``), either all at its
    top level (no labels) or one sub-folder per class (labels, categories = sorted sub-folder
    names). Ids are the paths relative to the folder. Decoded with PIL in a thread pool.
``tfds:NAME[/CONFIG][:VERSION]:SPLIT``
    a prepared tensorflow-datasets dataset, read through ``tfds.data_source`` (ArrayRecord; no
    TensorFlow). SPLIT may be sliced (``validation[:1000]``). Ids are the dataset's file name or
    id feature when it has one, otherwise ``SPLIT/INDEX``.
``synthetic:NAME?params``
    a probe generated in JAX (:mod:`jaxagree.data.synthetic`).

Image size. Decoded images (folders, TFDS) come in many sizes, but a batch needs one shape; so
they are brought to one square stimulus: the shorter side resized to ``image_size`` (PIL,
antialiased bicubic) and the centre cropped. Every model then sees the same pixels, and its own
preprocessing runs on the device. ``image_size=None`` keeps each image as it is (they must all
have one shape). The default ``"auto"`` is :data:`DEFAULT_IMAGE_SIZE` for folders and for TFDS
images of undeclared shape, and the native size otherwise.

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
import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

DEFAULT_IMAGE_SIZE = 256
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
# Feature names that hold a stable per-example id in common TFDS datasets, in order of preference.
_TFDS_ID_FEATURES = ("file_name", "filename", "image/filename", "id", "image_id", "key")
_TFDS_SPEC = re.compile(r"^(?P<name>[\w.-]+(?:/[\w.-]+)?(?::\d+\.\d+\.\d+)?):(?P<split>[^:].*)$")


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


class _DecodedStimuli(Stimuli):
    """Shared by sources of encoded images: decoding in a thread pool, colour checks, one size."""

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
        return np.asarray(_square(Image.fromarray(np.ascontiguousarray(image)), image_size)) if image_size else image
    try:
        with Image.open(encoded if isinstance(encoded, Path) else io.BytesIO(encoded)) as image:
            image.load()
            if image.mode == "L":
                image = image.convert("RGB")
            elif image.mode != "RGB":
                raise ValueError(f"{where} has colour mode {image.mode!r}; only RGB and greyscale (L) images are "
                                 "read (convert it, or leave it out with --skip-bad)")
            if image_size is not None:
                image = _square(image, image_size)
            return np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError) as error:  # PIL raises SyntaxError for some bad files
        raise ValueError(f"{where} cannot be decoded ({error}); leave out unreadable images with --skip-bad") from None


def _square(image, size: int):
    """Shorter side to ``size``, then the centre ``size x size``."""
    from PIL import Image

    width, height = image.size
    if (width, height) == (size, size):
        return image
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return image.crop((left, top, left + size, top + size))


class FolderStimuli(_DecodedStimuli):
    """A folder of images, flat (unlabelled) or one sub-folder per class.

    With ``skip_bad``, every image is decoded once when the folder is opened and the ones that
    cannot be read (corrupt, truncated, or neither RGB nor greyscale) are left out and listed in
    ``skipped`` (path, reason); without it, the first bad image stops the run with its path.
    """

    def __init__(self, root: str | os.PathLike, *, image_size: int | None = DEFAULT_IMAGE_SIZE,
                 skip_bad: bool = False, workers: int | None = None):
        super().__init__(image_size, workers)
        root = Path(root)
        self.source = f"folder:{root}"
        if not root.is_dir():
            raise ValueError(f"{self.source}: no such folder")
        files = sorted((p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                       key=lambda p: p.relative_to(root).as_posix())
        if not files:
            raise ValueError(f"{self.source}: no images (looked for {' '.join(IMAGE_SUFFIXES)} files, "
                             "at the top level or in one sub-folder per class)")
        top = [p for p in files if p.parent == root]
        if top and len(top) != len(files):
            raise ValueError(f"{self.source}: images both at the top level (e.g. {top[0].name}) and in sub-folders; "
                             "use either a flat folder or one sub-folder per class")
        self.root = root
        self.skipped: list[tuple[str, str]] = []
        if skip_bad:
            files = self._keep_readable(files)
        self._files = files
        self._ids = [p.relative_to(root).as_posix() for p in files]
        if top:
            self._categories, self._labels = None, None
        else:
            classes = [p.relative_to(root).parts[0] for p in files]
            self._categories = sorted(set(classes))
            index = {name: i for i, name in enumerate(self._categories)}
            self._labels = np.array([index[c] for c in classes], np.int32)

    def _keep_readable(self, files: list[Path]) -> list[Path]:
        def problem(path: Path) -> str | None:
            try:
                decode_image(path, None, str(path))
                return None
            except ValueError as error:
                return str(error)

        problems = list(self._pool.map(problem, files))
        self.skipped = [(p.relative_to(self.root).as_posix(), why) for p, why in zip(files, problems) if why]
        kept = [p for p, why in zip(files, problems) if why is None]
        if not kept:
            raise ValueError(f"{self.source}: none of its {len(files)} images can be read; first: {self.skipped[0][1]}")
        return kept

    def _encoded(self, index: int) -> Path:
        return self._files[index]

    def fingerprint(self) -> str:
        return self._digest

    @functools.cached_property
    def _digest(self) -> str:
        digest = hashlib.sha256(f"folder size={self.image_size}".encode())
        for path, name in zip(self._files, self._ids):
            stat = path.stat()
            digest.update(f"\n{name}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
        return digest.hexdigest()[:16]


class TfdsStimuli(_DecodedStimuli):
    """A split of a prepared tensorflow-datasets dataset, read through ``tfds.data_source``
    (ArrayRecord files; TensorFlow is not needed). tfds decodes each image (with PIL) in this
    source's thread pool; ids and labels are read without decoding images."""

    def __init__(self, name: str, split: str, *, data_dir: str | os.PathLike | None = None,
                 image_size: int | None | str = "auto", workers: int | None = None):
        import tensorflow_datasets as tfds

        self.source = f"tfds:{name}:{split}"
        base = name.split(":")[0]
        try:
            self._data = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
        except tfds.core.registered.DatasetNotFoundError:
            raise ValueError(f"{self.source}: no dataset {base!r} in {_data_dir_text(data_dir)}; "
                             f"prepared there: {', '.join(prepared_tfds_datasets(data_dir)) or 'none'}") from None
        except (AssertionError, FileNotFoundError, RuntimeError) as error:  # tfds: not prepared, or not ArrayRecord
            raise ValueError(f"{self.source}: dataset {base!r} is not prepared as ArrayRecord in "
                             f"{_data_dir_text(data_dir)} ({str(error).splitlines()[0]}); prepared there: "
                             f"{', '.join(prepared_tfds_datasets(data_dir)) or 'none'}") from None
        except ValueError as error:  # an unknown split names the ones that exist
            raise ValueError(f"{self.source}: {error}") from None
        features = self._data.dataset_info.features
        images = [key for key, feature in features.items() if isinstance(feature, tfds.features.Image)]
        if not images:
            raise ValueError(f"{self.source}: the dataset has no image feature; its features: {', '.join(features)}")
        self._image_key = "image" if "image" in images else images[0]
        height, width, channels = features[self._image_key].shape
        if channels not in (1, 3):
            raise ValueError(f"{self.source}: images have {channels} channels; only RGB and greyscale are read")
        fixed = height is not None and width is not None
        super().__init__((None if fixed else DEFAULT_IMAGE_SIZE) if image_size == "auto" else image_size, workers)
        found = dict(features.items())
        self._name, self._data_dir = name, data_dir
        label = found.get("label")
        self._label_key = "label" if isinstance(label, tfds.features.ClassLabel) else None
        self._categories = list(label.names) if self._label_key else None
        self._id_key = next((k for k in _TFDS_ID_FEATURES if isinstance(found.get(k), tfds.features.Text)), None)
        self.info = self._data.dataset_info

    @functools.cached_property
    def _records(self) -> tuple[list[str], np.ndarray | None]:
        """Ids and labels of every example, read once with image decoding skipped."""
        import tensorflow_datasets as tfds

        keys = [k for k in (self._id_key, self._label_key) if k]
        if not keys:
            return [f"{self._data.split}/{i}" for i in range(len(self._data))], None
        # A second view of the split that leaves the images encoded: ids and labels without decoding.
        view = tfds.data_source(self._name, split=self._data.split, data_dir=self._data_dir, download=False,
                                decoders={self._image_key: tfds.decode.SkipDecoding()})

        def fields(start: int) -> list[dict]:
            indices = list(range(start, min(start + 1024, len(self._data))))
            try:
                records = [view[i] for i in indices]
            except ModuleNotFoundError:  # tfds' mocks re-encode skipped images with TensorFlow
                records = [self._data[i] for i in indices]
            return [{k: record[k] for k in keys} for record in records]

        records = [r for chunk in self._pool.map(fields, range(0, len(self._data), 1024)) for r in chunk]
        ids = ([_text(r[self._id_key]) for r in records] if self._id_key
               else [f"{self._data.split}/{i}" for i in range(len(records))])
        if len(set(ids)) != len(ids):
            ids = [f"{self._data.split}/{i}" for i in range(len(records))]
        labels = np.array([r[self._label_key] for r in records], np.int32) if self._label_key else None
        return ids, labels

    @property
    def ids(self) -> list[str]:
        return self._records[0]

    def __len__(self) -> int:
        return len(self._data)

    @property
    def labels(self) -> np.ndarray | None:
        return self._records[1]

    def _where(self, index: int) -> str:
        return f"{self.source} example {index}"

    def _encoded(self, index: int) -> bytes | np.ndarray:
        return self._data[index][self._image_key]  # arrays where a data source decodes (tfds' mocks)

    def fingerprint(self) -> str:
        return self._digest

    @functools.cached_property
    def _digest(self) -> str:
        info = self.info
        split = info.splits[self._data.split]
        text = json.dumps([info.full_name, str(self._data.split), split.num_examples,
                           [str(f) for f in getattr(split, "filenames", [])], self.image_size])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _data_dir_text(data_dir) -> str:
    return str(data_dir) if data_dir is not None else "the default data_dir (~/tensorflow_datasets or $TFDS_DATA_DIR)"


def default_tfds_data_dir() -> Path:
    """tfds' default data_dir: ``$TFDS_DATA_DIR``, else ~/tensorflow_datasets."""
    return Path(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")).expanduser()


def prepared_tfds_datasets(data_dir: str | os.PathLike | None) -> list[str]:
    """``NAME[/CONFIG]:VERSION`` of every prepared dataset found in ``data_dir``."""
    root = Path(data_dir).expanduser() if data_dir is not None else default_tfds_data_dir()
    if not root.is_dir():
        return []
    found = []
    for info in sorted(root.glob("*/*/dataset_info.json")) + sorted(root.glob("*/*/*/dataset_info.json")):
        parts = info.parent.relative_to(root).parts
        found.append("/".join(parts[:-1]) + ":" + parts[-1])
    return sorted(found)


def open_stimuli(source: str | os.PathLike, *, data_dir: str | os.PathLike | None = None,
                 image_size: int | None | str = "auto", skip_bad: bool = False) -> Stimuli:
    """Open a SOURCE (see the module docstring): ``npz:PATH``, ``folder:PATH``,
    ``tfds:NAME[/CONFIG][:VERSION]:SPLIT`` or ``synthetic:NAME?params``.

    Args:
      data_dir: the TFDS data_dir (default: tfds' own, ``$TFDS_DATA_DIR`` or ~/tensorflow_datasets).
      image_size: the square size decoded images are brought to; None keeps them as they are;
        ``"auto"``: :data:`DEFAULT_IMAGE_SIZE` where sizes vary, else native.
      skip_bad: leave out (and list) folder images that cannot be read, instead of stopping.
    """
    text = str(source)
    if image_size != "auto" and image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise ValueError(f"image_size must be a positive integer, None or 'auto', got {image_size!r}")
    if text.startswith("tfds:"):
        match = _TFDS_SPEC.match(text[5:])
        if not match:
            raise ValueError(f"{text}: expected tfds:NAME[/CONFIG][:VERSION]:SPLIT, e.g. tfds:imagenet2012:validation")
        return TfdsStimuli(match["name"], match["split"], data_dir=data_dir, image_size=image_size)
    if text.startswith("folder:"):
        size = DEFAULT_IMAGE_SIZE if image_size == "auto" else image_size
        return FolderStimuli(text[7:], image_size=size, skip_bad=skip_bad)
    if text.startswith("synthetic:"):
        from jaxagree.data.synthetic import synthetic_stimuli

        stimuli = synthetic_stimuli(text, data_dir=data_dir)
    else:
        stimuli = _array_file(text)
    return stimuli if image_size in ("auto", None) else _resized(stimuli, image_size)


def _array_file(text: str) -> ArrayStimuli:
    from jaxagree.io.arrays import labels_array, load_arrays, names_array

    path = Path(text[4:] if text.startswith("npz:") else text)
    if path.suffix.lower() not in (".npz", ".npy"):
        raise ValueError(f"{text}: unknown SOURCE; expected npz:PATH (or a .npz/.npy file), folder:PATH, "
                         "tfds:NAME:SPLIT or synthetic:NAME?params")
    loaded = load_arrays(path)
    arrays = {"images": loaded} if isinstance(loaded, np.ndarray) else loaded
    if "images" not in arrays:
        raise ValueError(f"{path}: no 'images' array; found {', '.join(arrays) or 'nothing'}")
    images = arrays["images"]
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"{path}: images must be uint8 [stimuli, height, width, 3], got {images.dtype} {images.shape}")
    num = images.shape[0]
    categories = arrays.get("categories")
    ids = names_array(arrays.get("ids"), num, "", path, "ids", "images")
    return ArrayStimuli(images, labels_array(arrays, num, path), ids,
                        None if categories is None else [str(c) for c in categories], source=f"npz:{path}")


def _resized(stimuli: ArrayStimuli, image_size: int) -> ArrayStimuli:
    from PIL import Image

    images = np.stack([np.asarray(_square(Image.fromarray(image), image_size)) for image in stimuli.images])
    return ArrayStimuli(images, stimuli.labels, stimuli.ids, stimuli.categories, source=stimuli.source)


__all__ = [
    "DEFAULT_IMAGE_SIZE", "IMAGE_SUFFIXES", "ArrayStimuli", "FolderStimuli", "Stimuli", "TfdsStimuli", "decode_image",
    "default_tfds_data_dir", "open_stimuli", "prepared_tfds_datasets",
]
