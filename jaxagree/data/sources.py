"""Stimulus sources: a SOURCE string (``jaxagree extract --stimuli``) opened as a
:class:`~jaxagree.data.stimuli.Stimuli`, through one table from scheme to opener (:data:`OPENERS`):

``npz:PATH`` (or a ``.npz``/``.npy`` path)
    an image array; an ``.npz`` holds ``images`` and optionally ``labels``, ``ids`` and
    ``categories``.
``folder:PATH``
    a folder of images (``.jpg .jpeg .png .bmp .gif .webp .tif .tiff .ppm``), either all at its
    top level (no labels) or one sub-folder per class (labels, categories = sorted sub-folder
    names). Ids are the paths relative to the folder. Decoded with PIL in a thread pool
    (:mod:`jaxagree.data.folder`).
``tfds:NAME[/CONFIG][:VERSION]:SPLIT``
    a prepared tensorflow-datasets dataset, read through ``tfds.data_source`` (ArrayRecord; no
    TensorFlow). SPLIT may be sliced (``validation[:1000]``). Ids are the dataset's file name or
    id feature when it has one, otherwise ``SPLIT/INDEX`` (:mod:`jaxagree.data.tfds_source`).
``synthetic:NAME?params``
    a probe generated in JAX by :mod:`jaxagree.data.synthetic` (or ``synthetic:digits?split=...``:
    cluttered handwritten digits with labels, :mod:`jaxagree.data.digits`, which trains the demo's
    zoo offline); the parameters are read here, and
    the image sets a probe is made from (``cue_conflict?shapes=SOURCE&textures=SOURCE``) are
    opened through the same table. The generators know nothing of sources: imports run one way.

Image size: decoded images (folders, TFDS) are brought to one square size (see
:mod:`jaxagree.data.stimuli`). The default ``"auto"`` is :data:`DEFAULT_IMAGE_SIZE` for folders
and for TFDS images of undeclared shape, and the native size otherwise; ``None`` keeps each
image as it is (they must all have one shape).

The stimulus classes are re-exported here, where they have always been importable from.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

import jax
import numpy as np

from jaxagree.data.digits import CATEGORIES as DIGIT_CATEGORIES
from jaxagree.data.digits import SPLITS as DIGIT_SPLITS
from jaxagree.data.digits import digit_canvases
from jaxagree.data.folder import IMAGE_SUFFIXES, FolderStimuli
from jaxagree.data.stimuli import DEFAULT_IMAGE_SIZE, ArrayStimuli, Stimuli, decode_image, square_image
from jaxagree.data.synthetic import SHAPES, cue_conflict, local_global, squares
from jaxagree.data.tfds_source import TfdsStimuli, default_tfds_data_dir, prepared_tfds_datasets
from jaxagree.io.arrays import labels_array, load_arrays, names_array

_TFDS_SPEC = re.compile(r"^(?P<name>[\w.-]+(?:/[\w.-]+)?(?::\d+\.\d+\.\d+)?):(?P<split>[^:].*)$")
_ARRAY_SUFFIXES = (".npz", ".npy")


class OpenOptions(NamedTuple):
    """What :func:`open_stimuli` was asked besides the SOURCE (see there)."""

    data_dir: str | os.PathLike | None = None
    image_size: int | None | str = "auto"
    skip_bad: bool = False


class Scheme(NamedTuple):
    """One row of :data:`OPENERS`.

    Attributes:
      usage: the SOURCE form, as an unknown SOURCE's error lists it.
      open: ``open(source, location, options)``: the whole SOURCE string (for messages), the
        part after ``SCHEME:``, and the options; returns the stimuli.
    """

    usage: str
    open: Callable[[str, str, OpenOptions], Stimuli]


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
    scheme, location = source_scheme(text)
    return OPENERS[scheme].open(text, location, OpenOptions(data_dir, image_size, skip_bad))


def source_scheme(text: str) -> tuple[str, str]:
    """``(scheme, location)`` of a SOURCE: its key in :data:`OPENERS` and the rest; a bare
    ``.npz``/``.npy`` path is ``npz``."""
    scheme, colon, location = text.partition(":")
    if colon and scheme in OPENERS:
        return scheme, location
    # Not a scheme: a path, which may itself hold a colon.
    if Path(text).suffix.lower() in _ARRAY_SUFFIXES:
        return "npz", text
    raise ValueError(_unknown(text))


def _unknown(text: str) -> str:
    usages = [scheme.usage for scheme in OPENERS.values()]
    return f"{text}: unknown SOURCE; expected {', '.join(usages[:-1])} or {usages[-1]}"


def _open_array_file(text: str, location: str, options: OpenOptions) -> ArrayStimuli:
    path = Path(location)
    if path.suffix.lower() not in _ARRAY_SUFFIXES:
        raise ValueError(_unknown(text))
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
    stimuli = ArrayStimuli(images, labels_array(arrays, num, path), ids,
                           None if categories is None else [str(c) for c in categories], source=f"npz:{path}")
    return _resized(stimuli, options.image_size)


def _open_folder(text: str, location: str, options: OpenOptions) -> FolderStimuli:
    size = DEFAULT_IMAGE_SIZE if options.image_size == "auto" else options.image_size
    return FolderStimuli(location, image_size=size, skip_bad=options.skip_bad)


def _open_tfds(text: str, location: str, options: OpenOptions) -> TfdsStimuli:
    match = _TFDS_SPEC.match(location)
    if not match:
        raise ValueError(f"{text}: expected tfds:NAME[/CONFIG][:VERSION]:SPLIT, e.g. tfds:imagenet2012:validation")
    return TfdsStimuli(match["name"], match["split"], data_dir=options.data_dir, image_size=options.image_size)


def _open_synthetic(text: str, location: str, options: OpenOptions) -> ArrayStimuli:
    return _resized(synthetic_stimuli(text, data_dir=options.data_dir), options.image_size)


def _resized(stimuli: ArrayStimuli, image_size: int | None | str) -> ArrayStimuli:
    """In-memory images brought to ``image_size`` (an int); ``"auto"`` and None keep them."""
    if image_size in ("auto", None):
        return stimuli
    from PIL import Image

    images = np.stack([np.asarray(square_image(Image.fromarray(image), image_size)) for image in stimuli.images])
    return ArrayStimuli(images, stimuli.labels, stimuli.ids, stimuli.categories, source=stimuli.source)


# Read-only: a scheme added here is a SOURCE form the CLI's help must document (a test checks).
OPENERS: MappingProxyType[str, Scheme] = MappingProxyType({
    "npz": Scheme("npz:PATH (or a .npz/.npy file)", _open_array_file),
    "folder": Scheme("folder:PATH", _open_folder),
    "tfds": Scheme("tfds:NAME:SPLIT", _open_tfds),
    "synthetic": Scheme("synthetic:NAME?params", _open_synthetic),
})


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


def synthetic_stimuli(source: str, *, data_dir: str | os.PathLike | None = None) -> ArrayStimuli:
    """The :class:`~jaxagree.data.stimuli.ArrayStimuli` of a ``synthetic:`` source, e.g.
    ``synthetic:squares?n=1000&size=224&square=16&count=2&min_sep=30&max_sep=150&contrast=0.5&seed=0``,
    ``synthetic:local_global?n=1000&size=224&grid=7&congruent=0&seed=0`` (ids end with the global
    and the local shape, e.g. ``local_global-0-000001-cross-ring``) or
    ``synthetic:cue_conflict?shapes=SOURCE&textures=SOURCE&n=1000&size=224&cutoff=8&seed=0``
    (SOURCE: any stimulus source without ``?`` or ``&``; ids name the shape and the texture
    stimulus, labels are the shape's) or
    ``synthetic:digits?split=train&n=20000&size=32&min_scale=0.5&max_scale=0.9&clutter=1&noise=0.05&seed=0``
    (cluttered handwritten digits, :mod:`jaxagree.data.digits`; ``split`` is ``train`` or ``pool``,
    whose source digits are disjoint; labels 0-9, categories ``"0"`` to ``"9"``; ids name the split,
    the seed, the index and the source digit, e.g. ``digits-pool-0-000001-d0123``).
    ``data_dir``: for ``tfds:`` sources inside cue_conflict."""
    name, params = parse_synthetic(source)
    if name not in _PROBES:
        raise ValueError(f"{source}: unknown synthetic probe {name!r}; known: {', '.join(_PROBES)}")
    table, make = _PROBES[name]
    unknown = set(params) - set(table)
    if unknown:
        raise ValueError(f"{source}: unknown parameter(s) {sorted(unknown)}; known: {sorted(table)}")
    kwargs = {}
    for k, v in params.items():
        try:
            kwargs[table[k][0]] = table[k][1](v)
        except ValueError as error:
            raise ValueError(f"{source}: parameter {k!r}: {error}") from None
    key = jax.random.key(kwargs.pop("seed", 0))
    kwargs.setdefault("num_stimuli", 1000)
    return make(source, key, kwargs, f"{name}-{int(params.get('seed', 0))}", data_dir)


def _squares_stimuli(source: str, key: jax.Array, kwargs: dict, prefix: str, data_dir) -> ArrayStimuli:
    bounds = [kwargs.pop(k) for k in ("min_sep", "max_sep") if k in kwargs]
    if len(bounds) == 1:
        raise ValueError(f"{source}: give both min_sep and max_sep, or neither")
    probe = squares(key, separation=tuple(bounds) if bounds else None, **kwargs)
    return ArrayStimuli(probe.images, ids=[f"{prefix}-{i:06d}" for i in range(len(probe.images))], source=source)


def _local_global_stimuli(source: str, key: jax.Array, kwargs: dict, prefix: str, data_dir) -> ArrayStimuli:
    probe = local_global(key, **kwargs)
    ids = [f"{prefix}-{i:06d}-{SHAPES[g]}-{SHAPES[k]}" for i, (g, k) in enumerate(zip(probe.global_shape,
                                                                                       probe.local_shape))]
    return ArrayStimuli(probe.images, ids=ids, source=source)


def _cue_conflict_stimuli(source: str, key: jax.Array, kwargs: dict, prefix: str, data_dir) -> ArrayStimuli:
    sets = {}
    for role in ("shapes", "textures"):
        if role not in kwargs:
            raise ValueError(f"{source}: give {role}=SOURCE (an image set: npz:PATH, folder:PATH or tfds:NAME:SPLIT)")
        sets[role] = open_stimuli(kwargs.pop(role), data_dir=data_dir, image_size=kwargs.get("image_size", "auto"))
    shapes, textures = sets["shapes"], sets["textures"]
    same_categories = shapes.categories is not None and shapes.categories == textures.categories
    probe = cue_conflict(key, shapes.read(range(len(shapes))), textures.read(range(len(textures))),
                         shape_labels=shapes.labels if same_categories else None,
                         texture_labels=textures.labels if same_categories else None, **kwargs)
    ids = [f"{prefix}-{i:06d}-{shapes.ids[s]}-{textures.ids[t]}"
           for i, (s, t) in enumerate(zip(probe.shape_index, probe.texture_index))]
    labels = None if shapes.labels is None else shapes.labels[probe.shape_index]
    return ArrayStimuli(probe.images, labels, ids, shapes.categories, source=source)


def _digits_stimuli(source: str, key: jax.Array, kwargs: dict, prefix: str, data_dir) -> ArrayStimuli:
    try:
        probe = digit_canvases(key, **kwargs)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None
    split, seed = kwargs.get("split", "train"), prefix.rpartition("-")[2]
    ids = [f"digits-{split}-{seed}-{i:06d}-d{digit:04d}" for i, digit in enumerate(probe.digits)]
    return ArrayStimuli(probe.images, probe.labels, ids, DIGIT_CATEGORIES, source=source)


def _digit_split(value: str) -> str:
    if value not in DIGIT_SPLITS:
        raise ValueError(f"must be one of {', '.join(DIGIT_SPLITS)}, got {value!r}")
    return value


class _Probe(NamedTuple):
    params: dict[str, tuple[str, Callable[[str], object]]]  # query name -> (keyword, parser)
    make: Callable[[str, jax.Array, dict, str, object], ArrayStimuli]


_COMMON = {"n": ("num_stimuli", int), "size": ("image_size", int), "contrast": ("contrast", float),
           "background": ("background", float), "seed": ("seed", int)}
_PROBES = {
    "squares": _Probe({**_COMMON, "square": ("square_size", int), "count": ("num_squares", int),
                       "min_sep": ("min_sep", float), "max_sep": ("max_sep", float)}, _squares_stimuli),
    "local_global": _Probe({**_COMMON, "grid": ("grid", int), "congruent": ("congruent", lambda v: bool(int(v)))},
                           _local_global_stimuli),
    "cue_conflict": _Probe({"n": ("num_stimuli", int), "size": ("image_size", int), "seed": ("seed", int),
                            "cutoff": ("cutoff", float), "shapes": ("shapes", str), "textures": ("textures", str)},
                           _cue_conflict_stimuli),
    "digits": _Probe({"n": ("num_stimuli", int), "size": ("image_size", int), "seed": ("seed", int),
                      "split": ("split", _digit_split), "min_scale": ("min_scale", float),
                      "max_scale": ("max_scale", float), "clutter": ("clutter", int), "noise": ("noise", float)},
                     _digits_stimuli),
}


__all__ = [
    "DEFAULT_IMAGE_SIZE", "IMAGE_SUFFIXES", "OPENERS", "ArrayStimuli", "FolderStimuli", "OpenOptions", "Scheme",
    "Stimuli", "TfdsStimuli", "decode_image", "default_tfds_data_dir", "open_stimuli", "parse_synthetic",
    "prepared_tfds_datasets", "source_scheme", "synthetic_stimuli",
]
