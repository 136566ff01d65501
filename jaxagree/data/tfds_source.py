"""``tfds:NAME[/CONFIG][:VERSION]:SPLIT``: a prepared tensorflow-datasets dataset, read through
``tfds.data_source`` (ArrayRecord files; TensorFlow is not needed). tensorflow_datasets is
imported only when such a source is opened: it is slow to import and optional elsewhere."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from jaxagree.data.stimuli import DEFAULT_IMAGE_SIZE, DecodedStimuli

# Feature names that hold a stable per-example id in common TFDS datasets, in order of preference.
_TFDS_ID_FEATURES = ("file_name", "filename", "image/filename", "id", "image_id", "key")


class TfdsStimuli(DecodedStimuli):
    """A split of a prepared tensorflow-datasets dataset, read through ``tfds.data_source``
    (ArrayRecord files; TensorFlow is not needed). tfds decodes each image (with PIL) in this
    source's thread pool; ids and labels are read without decoding images.

    SPLIT may be sliced (``validation[:1000]``). Ids are the dataset's file name or id feature
    when it has one, otherwise ``SPLIT/INDEX``. ``image_size="auto"``: native where the dataset
    declares one image shape, else :data:`~jaxagree.data.stimuli.DEFAULT_IMAGE_SIZE`.
    """

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


__all__ = ["TfdsStimuli", "default_tfds_data_dir", "prepared_tfds_datasets"]
