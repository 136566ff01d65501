"""Writing stimuli as prepared tensorflow-datasets datasets (ArrayRecord), without TensorFlow.

:func:`write_tfds` stores any :class:`~jaxagree.data.stimuli.Stimuli` (a folder decoded once,
a synthetic probe, an array) so that later runs read it as ``tfds:NAME:SPLIT`` with fast
random access and no decoding of odd formats. :func:`prepare_imagenet_validation` writes
ImageNet's validation archive as the ``imagenet2012`` dataset that tfds itself would build
(same features, same labels), which tfds can only do with TensorFlow installed.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from jaxagree.data.stimuli import Stimuli

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _builder(name: str, version: str, features, splits: dict, data_dir, description: str):
    from tensorflow_datasets.core.dataset_builders.adhoc_builder import AdhocBuilder

    class _Builder(AdhocBuilder, skip_registration=True):
        # No code folder (and so no checksums file): finding one imports importlib_resources
        # for builders defined inside a package.
        code_path = None

        # AdhocBuilder checks each split against tf.data.Dataset, which imports TensorFlow.
        def _split_generators(self, dl_manager):
            return {split: iter(examples) for split, examples in self._split_datasets.items()}

    return _Builder(name=name, version=version, features=features, split_datasets=splits, data_dir=data_dir,
                    description=description, file_format="array_record", disable_shuffling=True)


def write_tfds(
    stimuli: Stimuli,
    data_dir: str | os.PathLike,
    name: str,
    *,
    split: str = "stimuli",
    version: str = "1.0.0",
    batch_size: int = 256,
    progress: bool = True,
) -> Path:
    """Store ``stimuli`` as the TFDS dataset ``NAME`` (split ``split``) in ``data_dir``, in
    stimulus order, images PNG-encoded (lossless) as they are read (so at the source's image
    size), with ``id`` and, when the source has them, ``label`` with its category names.
    Returns the dataset's folder; read it back with ``tfds:NAME:SPLIT`` and ``--data-dir``."""
    import tensorflow_datasets as tfds
    from PIL import Image
    from tqdm.auto import tqdm

    if not _NAME.match(name):
        raise ValueError(f"dataset name {name!r}: use lower-case letters, digits and _ (starting with a letter)")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", split) or split == "all":
        raise ValueError(f"split {split!r}: use lower-case letters, digits and _ (not 'all')")
    target = Path(data_dir) / name / version
    if (target / "dataset_info.json").exists():
        raise ValueError(f"{target} already holds a prepared dataset; choose another name or version, or delete it")
    height, width = stimuli.read([0]).shape[1:3]
    features = {"image": tfds.features.Image(shape=(height, width, 3), encoding_format="png"),
                "id": tfds.features.Text()}
    labels, categories = stimuli.labels, stimuli.categories
    if labels is not None:
        names = categories or [str(c) for c in range(int(labels.max()) + 1)]
        features["label"] = tfds.features.ClassLabel(names=names)
        if (labels < 0).any():
            first = int(np.flatnonzero(labels < 0)[0])
            raise ValueError(f"stimulus {stimuli.ids[first]!r} is unlabelled (-1); a TFDS ClassLabel cannot hold that")

    def examples() -> Iterator[tuple[str, dict]]:
        with tqdm(total=len(stimuli), desc=f"writing {name}", unit="img", disable=not progress) as bar:
            for first, images in stimuli.batches(batch_size):
                for offset, image in enumerate(images):
                    index = first + offset
                    buffer = io.BytesIO()
                    Image.fromarray(image).save(buffer, format="png")
                    example = {"image": buffer.getvalue(), "id": stimuli.ids[index]}
                    if labels is not None:
                        example["label"] = int(labels[index])
                    yield f"{index:09d}", example
                bar.update(len(images))

    builder = _builder(name, version, tfds.features.FeaturesDict(features), {split: examples()}, data_dir,
                       f"Written by jaxagree from {stimuli.source}.")
    builder.download_and_prepare()
    return target


def prepare_imagenet_validation(archive: str | os.PathLike, data_dir: str | os.PathLike, *,
                                progress: bool = True) -> Path:
    """Write ImageNet's ``ILSVRC2012_img_val.tar`` as the ``validation`` split of
    ``imagenet2012`` (version 5.1.0, tfds' features and labels) in ``data_dir``; read it with
    ``tfds:imagenet2012:validation``. JPEG bytes are kept as they are, except CMYK images, which
    are converted to RGB (as tfds does for the training split). Labels come from tfds' own
    ``validation_labels.txt`` (the sorted file names' WordNet ids)."""
    import tensorflow_datasets as tfds
    from PIL import Image
    from tqdm.auto import tqdm

    archive = Path(archive)
    if not archive.is_file():
        raise ValueError(f"{archive}: no such file (download ILSVRC2012_img_val.tar from image-net.org)")
    package = Path(tfds.__file__).parent / "datasets" / "imagenet2012"
    wnids = (package / "validation_labels.txt").read_text().split()
    target = Path(data_dir) / "imagenet2012" / "5.1.0"
    if (target / "dataset_info.json").exists():
        raise ValueError(f"{target} already holds a prepared imagenet2012")
    try:
        with tarfile.open(archive) as tar:
            names = sorted(m.name for m in tar.getmembers() if m.isfile())
    except tarfile.TarError as error:
        raise ValueError(f"{archive}: not a readable tar archive ({error})") from None
    if len(names) > len(wnids) or not all(re.fullmatch(r"ILSVRC2012_val_\d{8}\.JPEG", n) for n in names):
        raise ValueError(f"{archive}: expected the ILSVRC2012_val_NNNNNNNN.JPEG files of ILSVRC2012_img_val.tar")
    labels = {n: wnids[int(n[15:23]) - 1] for n in names}

    def examples() -> Iterator[tuple[str, dict]]:
        with tarfile.open(archive) as tar, tqdm(total=len(names), desc="imagenet2012 validation", unit="img",
                                                disable=not progress) as bar:
            for member in tar:
                if not member.isfile():
                    continue
                data = tar.extractfile(member).read()
                with Image.open(io.BytesIO(data)) as image:
                    if image.mode == "CMYK":
                        buffer = io.BytesIO()
                        image.convert("RGB").save(buffer, format="jpeg", quality=100)
                        data = buffer.getvalue()
                yield member.name, {"image": data, "label": labels[member.name], "file_name": member.name}
                bar.update(1)

    features = tfds.features.FeaturesDict({
        "image": tfds.features.Image(encoding_format="jpeg"),
        "label": tfds.features.ClassLabel(names_file=str(package / "labels.txt")),
        "file_name": tfds.features.Text(),
    })
    _builder("imagenet2012", "5.1.0", features, {"validation": examples()}, data_dir,
             f"ILSVRC 2012 validation, written by jaxagree from {archive.name}.").download_and_prepare()
    return target


__all__ = ["prepare_imagenet_validation", "write_tfds"]
