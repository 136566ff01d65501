"""Partial reads of ``.npy`` files and ``.npz`` members: a block of rows (or columns) without
reading the rest."""

from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numpy.lib import format as npy_format


class Member(NamedTuple):
    """One array in a file: where its data starts, or how to decompress it."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    path: Path
    offset: int | None  # bytes from the file's start to the data when it can be memory-mapped
    member: str | None  # the .npz member, else None (an .npy file)
    where: str


def read_member_header(stream, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        version = npy_format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(stream)
        else:  # 3.0 (utf-8 field names): NumPy's private reader
            from numpy.lib import _format_impl

            shape, fortran, dtype = _format_impl._read_array_header(stream, version)
    except (ValueError, SyntaxError, EOFError) as error:
        raise ValueError(f"{where}: not a valid .npy array ({error})") from None
    if dtype.hasobject:
        raise ValueError(f"{where}: holds Python objects (dtype {dtype}); jaxagree never unpickles")
    return tuple(shape), fortran, dtype


def npy_member(path: Path) -> Member:
    try:
        with path.open("rb") as stream:
            shape, fortran, dtype = read_member_header(stream, str(path))
            offset = stream.tell()
        size = path.stat().st_size
    except OSError as error:
        raise ValueError(f"{path}: cannot read: {error.strerror or error}") from None
    if math.prod(shape) * dtype.itemsize > size - offset:
        raise ValueError(f"{path}: the header declares {dtype} {list(shape)} but the file is shorter: truncated?")
    return Member(shape, dtype, fortran, path, offset, None, str(path))


def npz_members(path: Path) -> dict[str, Member]:
    """Every array of an ``.npz``, by name, its header read (no data)."""
    members = {}
    try:
        with zipfile.ZipFile(path) as archive, path.open("rb") as raw:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                name, where = info.filename[:-4], f"{path} (array {info.filename[:-4]!r})"
                with archive.open(info) as stream:
                    shape, fortran, dtype = read_member_header(stream, where)
                    header = stream.tell()
                if math.prod(shape) * dtype.itemsize > info.file_size - header:
                    raise ValueError(f"{where}: the header declares {dtype} {list(shape)} but the member is "
                                     "shorter: truncated?")
                offset = None
                if info.compress_type == zipfile.ZIP_STORED:
                    raw.seek(info.header_offset)
                    local = raw.read(30)  # the local file header; its name and extra lengths may differ
                    if local[:4] == b"PK\x03\x04":
                        name_length, extra_length = int.from_bytes(local[26:28], "little"), \
                            int.from_bytes(local[28:30], "little")
                        offset = info.header_offset + 30 + name_length + extra_length + header
                members[name] = Member(shape, dtype, fortran, path, offset, info.filename, where)
    except zipfile.BadZipFile as error:
        raise ValueError(f"{path}: not a valid .npz file: {error}") from None
    except OSError as error:
        raise ValueError(f"{path}: cannot read: {error.strerror or error}") from None
    return members


def whole_array(member: Member) -> np.ndarray:
    if member.member is None:
        return np.load(member.path, allow_pickle=False)
    try:
        with zipfile.ZipFile(member.path) as archive, archive.open(member.member) as stream:
            return np.load(stream, allow_pickle=False)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise ValueError(f"{member.where}: damaged ({error})") from None


def mapped_array(member: Member) -> np.ndarray:
    return np.memmap(member.path, dtype=member.dtype, mode="r", offset=member.offset, shape=member.shape,
                     order="F" if member.fortran else "C")


def partial_read(member: Member) -> bool:
    """Whether rows (or columns) of ``member`` are read without the rest of the array."""
    return member.offset is not None


def read_rows(member: Member, rows: np.ndarray) -> np.ndarray:
    """``array[rows]`` (sorted, distinct row indices along the first axis) of a 2-d member:
    memory-mapped where the file allows, else decompressed up to the last row (rows before are
    dropped as they stream past)."""
    rows = np.asarray(rows, np.int64)
    if partial_read(member):
        return np.array(mapped_array(member)[rows])
    if member.fortran or rows.size == 0:
        return np.array(whole_array(member)[rows])
    row_bytes = math.prod(member.shape[1:]) * member.dtype.itemsize
    out = np.empty((rows.size, *member.shape[1:]), member.dtype)
    chunk = max(1, (64 << 20) // max(row_bytes, 1))
    try:
        with zipfile.ZipFile(member.path) as archive, archive.open(member.member) as stream:
            read_member_header(stream, member.where)
            position, filled = 0, 0
            last = int(rows[-1]) + 1
            while position < last:
                take = min(chunk, last - position)
                data = stream.read(take * row_bytes)
                if len(data) != take * row_bytes:
                    raise ValueError(f"{member.where}: ends early (truncated?)")
                block = np.frombuffer(data, member.dtype).reshape(take, *member.shape[1:])
                wanted = rows[(rows >= position) & (rows < position + take)]
                out[filled : filled + wanted.size] = block[wanted - position]
                filled += wanted.size
                position += take
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise ValueError(f"{member.where}: damaged ({error})") from None
    return out
