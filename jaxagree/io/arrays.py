"""Plain NumPy files, read safely: never unpickled, every header checked against the bytes the
file holds before anything is allocated, and every failure a ``ValueError`` that names the file.

A damaged or hostile file must not be able to exhaust memory or escape as a traceback: a header
may declare any shape (a 4 TB array in a 128-byte file), a zip member may claim any size, and a
text file may be named ``.npy``.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from jaxagree._checks import out_of_range, outside_categories

# Declared array sizes above this share of physical memory are refused before they are read.
_MEMORY_SHARE = 0.5


def physical_memory() -> int:
    """Bytes of physical memory on this machine (a generous guess where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**40


def format_bytes(size: int) -> str:
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def _header(stream, where: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from an open ``.npy`` stream positioned at its start."""
    try:
        version = npy_format.read_magic(stream)
    except ValueError:
        raise ValueError(f"{where}: not a valid .npy file (it does not start with NumPy's header; "
                         "is it text or another format?)") from None
    try:
        if version == (1, 0):
            shape, _, dtype = npy_format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, _, dtype = npy_format.read_array_header_2_0(stream)
        else:  # 3.0 exists only for structured dtypes with UTF-8 field names, never a rating or feature array
            raise ValueError(f"{where}: .npy format {version[0]}.{version[1]} (a structured array with UTF-8 "
                             "field names); jaxagree reads plain numeric or string arrays (.npy format 1.0 or 2.0)")
    except (ValueError, SyntaxError, EOFError) as error:
        raise ValueError(f"{where}: damaged .npy header ({error})") from None
    if dtype.hasobject:
        raise ValueError(f"{where}: holds Python objects (dtype {dtype}), which only pickle can read; "
                         "jaxagree never unpickles: save plain numeric or string arrays")
    return tuple(shape), dtype


def _check_declared(shape, dtype: np.dtype, available: int, where: str) -> None:
    declared = math.prod(shape) * dtype.itemsize
    if declared > available:
        raise ValueError(f"{where}: the header declares {dtype} {list(shape)} ({format_bytes(declared)}) but the "
                         f"file holds {format_bytes(available)} of data: it is truncated or damaged")
    limit = int(_MEMORY_SHARE * physical_memory())
    if declared > limit:
        raise ValueError(f"{where}: {dtype} {list(shape)} needs {format_bytes(declared)}, more than this machine "
                         f"can hold ({format_bytes(limit)} allowed)")


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """An ``.npy`` array, its header checked against the file's size first."""
    path = Path(path)
    try:
        with path.open("rb") as stream:
            shape, dtype = _header(stream, str(path))
            _check_declared(shape, dtype, path.stat().st_size - stream.tell(), str(path))
            stream.seek(0)
            return np.load(stream, allow_pickle=False)
    except (OSError, EOFError) as error:
        raise ValueError(f"{path}: cannot read: {getattr(error, 'strerror', None) or error}") from None


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` in file order, each member's header checked against the size the
    archive declares for it before it is decompressed."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = [info for info in archive.infolist() if info.filename.endswith(".npy")]
            arrays = {}
            for info in members:
                where = f"{path} (array {info.filename[:-4]!r})"
                with archive.open(info) as stream:
                    shape, dtype = _header(stream, where)
                    _check_declared(shape, dtype, info.file_size - stream.tell(), where)
                with archive.open(info) as stream:
                    arrays[info.filename[:-4]] = np.load(stream, allow_pickle=False)
            return arrays
    except zipfile.BadZipFile as error:
        raise ValueError(f"{path}: not a valid .npz file (a zip archive of .npy arrays): {error}; "
                         "it may be truncated") from None
    except (zlib.error, EOFError) as error:
        raise ValueError(f"{path}: damaged .npz file ({error})") from None
    except OSError as error:
        raise ValueError(f"{path}: cannot read: {error.strerror or error}") from None


def load_arrays(path: str | os.PathLike) -> np.ndarray | dict[str, np.ndarray]:
    """An ``.npy`` array, or the arrays of an ``.npz`` by name (chosen by the suffix)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    return load_npz(path) if path.suffix.lower() == ".npz" else load_npy(path)


def check_prediction_array(path, shape: tuple[int, ...], dtype) -> tuple[int, int]:
    """(models, stimuli) of a stored predictions array of ``shape`` and ``dtype``, or a
    ``ValueError`` naming ``path`` when it is not a non-empty integer ``[models, stimuli]``."""
    if len(shape) != 2:
        raise ValueError(f"{path}: predictions must have shape [models, stimuli], got {tuple(shape)}")
    if not np.issubdtype(dtype, np.integer):
        raise ValueError(f"{path}: predictions must be integer category indices (-1 = no response), got dtype {dtype}")
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"{path}: predictions is empty (shape {tuple(shape)})")
    return int(shape[0]), int(shape[1])


def names_array(values, count: int, prefix: str, path, field: str, counted: str) -> list[str]:
    """Names from an optional string array of an ``.npz`` (``models``, ``stimuli``, ``ids``):
    ``count`` unique names (as many as ``counted`` has), or ``prefix + index`` without the array."""
    if values is None:
        return [f"{prefix}{i}" for i in range(count)]
    names = [str(v) for v in np.asarray(values).reshape(-1).tolist()]
    if np.ndim(values) != 1 or len(names) != count:
        raise ValueError(f"{path}: {field} has {len(names)} names but {counted} has {count}")
    if len(set(names)) != count:
        raise ValueError(f"{path}: {field} names are not unique")
    return names


def labels_array(arrays: dict, count: int, path) -> np.ndarray | None:
    """The optional ``labels`` array of an ``.npz``: int32 ``[count]`` (-1 = unlabelled), or None."""
    labels = arrays.get("labels")
    if labels is None:
        return None
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: labels must be int [{count}], got {labels.dtype} {labels.shape}")
    below = np.flatnonzero(outside_categories(labels, None))
    if below.size:  # the upper bound is the caller's: it may learn num_categories from the labels
        at = int(below[0])
        raise out_of_range(f"{path}: label {labels[at]} at index {at}", None, meaning="unlabelled")
    return labels.astype(np.int64)


__all__ = ["check_prediction_array", "format_bytes", "labels_array", "load_arrays", "load_npy", "load_npz",
           "names_array", "physical_memory"]
