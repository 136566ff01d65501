"""``jaxagree cka --distributed`` and ``jaxagree agreement --distributed``: several processes
(``jax.distributed``, see :func:`jaxagree.sharding.start_distributed`) each read a contiguous
block of the stimuli, reduce it to a mergeable state, and the states are combined across
processes; every process then holds the result of one process over all stimuli.

* CKA: each process streams its block of every model's features through the exact streaming
  state (:func:`jaxagree.cka_stream`, ``"exact"`` or ``"exact-debiased"``: the CKA of all stimuli
  at once, not an estimate), about stimulus 0 of the set on every process; the states are summed
  over processes (an all-reduce over one device per process).
* Agreement: each process computes the agreement statistics of its block of the prediction
  table (:class:`jaxagree.AgreementStats`); the per-stimulus fields are gathered in stimulus
  order and the category totals summed, so agreement, kappa and the contrastive stimuli are
  those of one process, exactly.

Partial reads: features in a folder of ``.npy`` files or an ``.npz`` written uncompressed
(``np.savez``) are memory-mapped and only the block's rows are read; a compressed ``.npz``
(``np.savez_compressed``) is decompressed up to the block's end (the rows before it are read and
dropped, never held). Predictions in an ``.npy`` or uncompressed ``.npz`` are memory-mapped and
only the block's columns read; other prediction inputs (compressed ``.npz``, CSV/Parquet tables,
folders) are read whole by every process, which then keeps its block.

Every process checks its input before any collective: when one fails, all stop with an error
(``process_status``), none waits for the others forever; inputs that differ between processes
are an error on every process (``check_same_input``).
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numpy.lib import format as npy_format

# ---------------------------------------------------------------------------------------------
# Processes


class ProcessBlock(NamedTuple):
    """This process's share of ``total`` stimuli: ``[start, stop)``."""

    index: int
    count: int
    start: int
    stop: int


def process_block(total: int, index: int, count: int) -> ProcessBlock:
    """Contiguous, as equal as can be (the first ``total % count`` blocks one longer)."""
    if not 0 <= index < count:
        raise ValueError(f"process index {index} is outside [0, {count})")
    size, extra = divmod(total, count)
    start = index * size + min(index, extra)
    return ProcessBlock(index, count, start, start + size + (index < extra))


def check_environment() -> None:
    """The environment ``--distributed`` reads, checked before jax starts: a clear error instead
    of a wait for processes that never come."""
    address = os.environ.get("JAX_COORDINATOR_ADDRESS")
    number, index = os.environ.get("JAX_NUM_PROCESSES"), os.environ.get("JAX_PROCESS_ID")
    cluster = any(os.environ.get(v) for v in ("SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES",
                                              "MEGASCALE_COORDINATOR_ADDRESS"))
    if address is None and number is None and index is None:
        if cluster:
            return  # JAX's own cluster detection
        raise ValueError("--distributed: set JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES "
                         "and JAX_PROCESS_ID on every process (or run under Slurm, Open MPI or on a TPU pod, "
                         "which JAX detects)")
    missing = [name for name, value in (("JAX_COORDINATOR_ADDRESS", address), ("JAX_NUM_PROCESSES", number),
                                        ("JAX_PROCESS_ID", index)) if value is None]
    if missing and not cluster:
        raise ValueError(f"--distributed: {', '.join(missing)} not set (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES "
                         "and JAX_PROCESS_ID are needed together)")
    for name, value in (("JAX_NUM_PROCESSES", number), ("JAX_PROCESS_ID", index)):
        if value is not None and not value.strip().isdigit():
            raise ValueError(f"--distributed: {name}={value!r} is not a whole number")
    if number is not None and int(number) < 1:
        raise ValueError(f"--distributed: JAX_NUM_PROCESSES={number}; at least 1")
    if number is not None and index is not None and int(index) >= int(number):
        raise ValueError(f"--distributed: JAX_PROCESS_ID={index} is outside [0, JAX_NUM_PROCESSES={number})")


def _one_device_per_process():
    import jax
    from jax.sharding import Mesh

    devices = []
    for process in range(jax.process_count()):
        devices.append(min((d for d in jax.devices() if d.process_index == process), key=lambda d: d.id))
    return Mesh(np.array(devices), ("processes",))


def process_sum(tree):
    """Each leaf summed over the processes (every process passes the same shapes and dtypes);
    returned as NumPy arrays on every process. An all-reduce over one device per process: no
    process holds more than its own leaf and the sum."""
    import jax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    mesh = _one_device_per_process()
    local = next(d for d in mesh.devices.reshape(-1) if d.process_index == jax.process_index())
    stacked = NamedSharding(mesh, P("processes"))
    whole = NamedSharding(mesh, P())

    def global_leaf(leaf):
        leaf = np.asarray(leaf)
        shard = jax.device_put(leaf[None], local)
        return jax.make_array_from_single_device_arrays((jax.process_count(), *leaf.shape), stacked, [shard])

    leaves, treedef = jax.tree.flatten(tree)
    summed = jax.jit(lambda xs: [x.sum(0, dtype=x.dtype) for x in xs], out_shardings=whole)(
        [global_leaf(leaf) for leaf in leaves])
    return jax.tree.unflatten(treedef, [np.asarray(x.addressable_data(0)) for x in summed])


def process_concat(array: np.ndarray) -> np.ndarray:
    """Each process's ``[rows_p, ...]`` array (rows may differ) concatenated in process order,
    on every process (small per-stimulus results)."""
    import jax
    from jax.experimental import multihost_utils

    array = np.asarray(array)
    if jax.process_count() == 1:
        return array
    rows = np.asarray(multihost_utils.process_allgather(np.int64(array.shape[0]))).reshape(-1)
    padded = np.zeros((int(rows.max()), *array.shape[1:]), array.dtype)
    padded[: array.shape[0]] = array
    gathered = np.asarray(multihost_utils.process_allgather(padded))
    return np.concatenate([gathered[p, : rows[p]] for p in range(len(rows))])


def process_max(value: int) -> int:
    import jax
    from jax.experimental import multihost_utils

    if jax.process_count() == 1:
        return int(value)
    return int(np.max(np.asarray(multihost_utils.process_allgather(np.int64(value)))))


class OtherProcessFailed(ValueError):
    """Another process stopped on bad input (its own message names the cause)."""


def process_status(error: BaseException | None) -> None:
    """A collective every process reaches once its input is read and checked: re-raises this
    process's ``error``, or raises :class:`OtherProcessFailed` when another process had one, so
    that no process enters a later collective the others never reach."""
    import jax

    failed = process_sum(np.zeros(jax.process_count(), np.int32) + np.eye(jax.process_count(), dtype=np.int32)
                         [jax.process_index()] * (error is not None))
    if error is not None:
        raise error
    if failed.any():
        others = ", ".join(str(p) for p in np.flatnonzero(failed))
        raise OtherProcessFailed(f"process(es) {others} stopped on bad input (see their message); nothing written")


def check_same_input(signature: Sequence[int], what: str) -> None:
    """Every process's input must be the same (the same file, or copies of it, on every host): a
    collective that compares a few numbers describing it and raises on every process otherwise."""
    import jax

    mine = np.asarray([int(v) % 2**31 for v in signature], np.int32)
    every = process_concat(mine[None, :])
    differ = [p for p in range(len(every)) if not np.array_equal(every[p], every[0])]
    if differ:
        raise ValueError(f"{what} differs between processes: process {differ[0]} sees {every[differ[0]].tolist()}, "
                         f"process 0 {every[0].tolist()} (this is process {jax.process_index()}); give every process "
                         "the same input")


def names_checksum(names: Sequence[str]) -> int:
    return zlib.crc32("\n".join(names).encode())


# ---------------------------------------------------------------------------------------------
# Partial reads of .npy files and .npz members


class _Member(NamedTuple):
    """One array in a file: where its data starts, or how to decompress it."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    path: Path
    offset: int | None  # bytes from the file's start to the data when it can be memory-mapped
    member: str | None  # the .npz member, else None (an .npy file)
    where: str


def _read_header(stream, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
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


def _npy_member(path: Path) -> _Member:
    try:
        with path.open("rb") as stream:
            shape, fortran, dtype = _read_header(stream, str(path))
            offset = stream.tell()
        size = path.stat().st_size
    except OSError as error:
        raise ValueError(f"{path}: cannot read: {error.strerror or error}") from None
    if math.prod(shape) * dtype.itemsize > size - offset:
        raise ValueError(f"{path}: the header declares {dtype} {list(shape)} but the file is shorter: truncated?")
    return _Member(shape, dtype, fortran, path, offset, None, str(path))


def _npz_members(path: Path) -> dict[str, _Member]:
    """Every array of an ``.npz``, by name, its header read (no data)."""
    members = {}
    try:
        with zipfile.ZipFile(path) as archive, path.open("rb") as raw:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                name, where = info.filename[:-4], f"{path} (array {info.filename[:-4]!r})"
                with archive.open(info) as stream:
                    shape, fortran, dtype = _read_header(stream, where)
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
                members[name] = _Member(shape, dtype, fortran, path, offset, info.filename, where)
    except zipfile.BadZipFile as error:
        raise ValueError(f"{path}: not a valid .npz file: {error}") from None
    except OSError as error:
        raise ValueError(f"{path}: cannot read: {error.strerror or error}") from None
    return members


def _whole(member: _Member) -> np.ndarray:
    if member.member is None:
        return np.load(member.path, allow_pickle=False)
    try:
        with zipfile.ZipFile(member.path) as archive, archive.open(member.member) as stream:
            return np.load(stream, allow_pickle=False)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise ValueError(f"{member.where}: damaged ({error})") from None


def _mapped(member: _Member) -> np.ndarray:
    return np.memmap(member.path, dtype=member.dtype, mode="r", offset=member.offset, shape=member.shape,
                     order="F" if member.fortran else "C")


def partial_read(member: _Member) -> bool:
    """Whether rows (or columns) of ``member`` are read without the rest of the array."""
    return member.offset is not None


def read_rows(member: _Member, rows: np.ndarray) -> np.ndarray:
    """``array[rows]`` (sorted, distinct row indices along the first axis) of a 2-d member:
    memory-mapped where the file allows, else decompressed up to the last row (rows before are
    dropped as they stream past)."""
    rows = np.asarray(rows, np.int64)
    if partial_read(member):
        return np.array(_mapped(member)[rows])
    if member.fortran or rows.size == 0:
        return np.array(_whole(member)[rows])
    row_bytes = math.prod(member.shape[1:]) * member.dtype.itemsize
    out = np.empty((rows.size, *member.shape[1:]), member.dtype)
    chunk = max(1, (64 << 20) // max(row_bytes, 1))
    try:
        with zipfile.ZipFile(member.path) as archive, archive.open(member.member) as stream:
            _read_header(stream, member.where)
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


# ---------------------------------------------------------------------------------------------
# Features


class FeatureSource:
    """Features of several models read by rows: the headers only until :meth:`rows` is called.

    Attributes:
      models: model names (an ``.npz``'s keys in file order, or a folder's ``.npy`` stems sorted).
      dims: each model's feature dimension.
      num_stimuli: stimuli (rows) every model has.
      partial: whether reading rows reads only those rows for every model.
    """

    def __init__(self, path: str | os.PathLike):
        from jaxagree.cka import check_same_stimuli
        from jaxagree.io import feature_arrays

        path = Path(path)
        members = feature_arrays(path, npy=_npy_member, npz=_npz_members)
        check_same_stimuli([m.shape[0] for m in members.values()], [f"model {m!r}" for m in members])
        self.path, self._members = path, members
        self.models = list(members)
        self.dims = [int(m.shape[1]) for m in members.values()]
        self.num_stimuli = int(next(iter(members.values())).shape[0])
        self.partial = all(partial_read(m) for m in members.values())

    def rows(self, rows: np.ndarray) -> list[np.ndarray]:
        """Every model's features at ``rows`` (sorted, distinct), float32 ``[len(rows), dim_m]``."""
        return [read_rows(member, rows).astype(np.float32, copy=False) for member in self._members.values()]


def local_max_bytes() -> int:
    """A quarter of this process's first device's memory (of the host's RAM on a CPU), as
    ``cka_matrix``'s default."""
    import jax

    stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"]) // 4
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4


def state_bytes(dims: Sequence[int], debiased: bool) -> int:
    """Bytes of the exact streaming state (float32): ``4 (D^2 + D)`` plus ``4 (M^2 + M D)`` debiased."""
    total, models = sum(dims), len(dims)
    return 4 * (total * total + total + (models * models + models * total if debiased else 0))


def cka_distributed(source: FeatureSource, stimuli: np.ndarray, *, debiased: bool, max_bytes: int | None,
                    error: BaseException | None = None, seconds: dict | None = None) -> np.ndarray:
    """``[models, models]`` CKA of ``stimuli`` (sorted or not; any order gives the same CKA) of
    ``source``, each process streaming its contiguous block of them; the same on every process.
    ``error``: this process's failure so far (raised after every process has said how it went).
    ``seconds``: filled with this process's time per step (read, stream, combine, compute)."""
    import time

    import jax

    import jaxagree as ja
    try:
        if error is not None:
            raise error
        budget = local_max_bytes() if max_bytes is None else max_bytes
        need = 2 * state_bytes(source.dims, debiased)  # the state and its all-reduce
        if need > budget:
            raise ValueError(
                f"--distributed keeps feature-space sums of {need / 1e9:.2f} GB (the state and its sum over "
                f"processes, 4 D^2 bytes each, D = {sum(source.dims):,} "
                f"summed dims of {len(source.dims)} models), more than --max-bytes {budget / 1e9:.2f} GB: raise "
                "--max-bytes, or run without --distributed (the Gram path holds stimuli x stimuli blocks instead: "
                "the cheaper one when the stimuli are fewer than the summed dims; see docs/capacity.md)")
        if len(stimuli) < (4 if debiased else 2):
            raise ValueError(f"{len(stimuli)} stimuli; {'debiased ' if debiased else ''}CKA needs at least "
                             f"{4 if debiased else 2}")
        block = process_block(len(stimuli), jax.process_index(), jax.process_count())
        mine = np.sort(np.asarray(stimuli[block.start : block.stop], np.int64))
        estimator = "exact-debiased" if debiased else "exact"
        # The same reference stimulus on every process: the set's first.
        stream = ja.cka_stream(source.rows(np.asarray(stimuli[:1], np.int64)), estimator=estimator)
        state = stream.init()
        # Rows per step: the features of one step within an eighth of the budget, at most 4,096.
        step = int(max(1, min(4096, budget // 8 // max(1, 4 * sum(source.dims)))))
        times = {"read": 0.0, "stream": 0.0}
        for start in range(0, len(mine), step):
            began = time.perf_counter()
            rows = source.rows(mine[start : start + step])
            read = time.perf_counter()
            state = jax.block_until_ready(stream.update(state, rows))
            times["read"] += read - began
            times["stream"] += time.perf_counter() - read
        state = jax.tree.map(np.asarray, state)
    except Exception as failure:  # noqa: BLE001 - every process must hear of any failure
        process_status(failure)
        raise
    process_status(None)
    check_same_input([source.num_stimuli, len(stimuli), names_checksum(source.models), *source.dims],
                     "FEATURES (stimuli, chosen stimuli, model names' checksum, dims)")
    began = time.perf_counter()
    total = ja.CKAState(*process_sum(tuple(state)))
    combined = time.perf_counter()
    matrix = np.asarray(stream.compute(total))
    if seconds is not None:
        seconds.update(times, combine=combined - began, compute=time.perf_counter() - combined,
                       stimuli=len(mine), step=step)
    return matrix


# ---------------------------------------------------------------------------------------------
# Agreement


class PredictionBlock(NamedTuple):
    """This process's block of a prediction table, with the names of the whole table.

    Attributes:
      table: a :class:`~jaxagree.io.PredictionTable` whose ``predictions`` are ``[models, block]``
        (the block's columns) and whose other fields describe the whole table.
      block: which stimuli.
      partial: whether only the block's columns were read from the file.
    """

    table: object
    block: ProcessBlock
    partial: bool


def read_prediction_block(path: Path, index: int, count: int, *, categories=None,
                          num_categories: int | None = None, read_whole=None) -> PredictionBlock:
    """Process ``index`` of ``count``'s block of the predictions in ``path``: columns of an
    ``.npy`` or uncompressed ``.npz`` memory-mapped, any other input read whole by ``read_whole()``
    and cut. Without ``categories`` or ``num_categories`` (and none in the file) the block's table
    has no categories: :func:`agreement_distributed` learns them over every process's block."""
    from jaxagree._checks import MAX_CATEGORIES, out_of_range, outside_categories
    from jaxagree.io import PredictionTable
    from jaxagree.io.arrays import labels_array, names_array
    from jaxagree.io.predictions import given_categories, too_large

    suffix = path.suffix.lower()
    member = None
    if path.is_file() and suffix == ".npy":
        member, others = _npy_member(path), {}
    elif path.is_file() and suffix == ".npz":
        members = _npz_members(path)
        if "predictions" in members and partial_read(members["predictions"]):
            member = members.pop("predictions")
            others = {name: _whole(m) for name, m in members.items()}
    if member is None or not partial_read(member) or member.fortran:
        table = read_whole()
        block = process_block(table.predictions.shape[1], index, count)
        return PredictionBlock(table._replace(predictions=table.predictions[:, block.start : block.stop]), block,
                               False)
    if len(member.shape) != 2:
        raise ValueError(f"{path}: predictions must have shape [models, stimuli], got {member.shape}")
    if not np.issubdtype(member.dtype, np.integer):
        raise ValueError(f"{path}: predictions must be integer category indices (-1 = no response), got dtype "
                         f"{member.dtype}")
    num_models, num_stimuli = member.shape
    if num_models == 0 or num_stimuli == 0:
        raise ValueError(f"{path}: predictions is empty (shape {member.shape})")
    block = process_block(num_stimuli, index, count)
    preds = np.array(_mapped(member)[:, block.start : block.stop])
    models = names_array(others.get("models"), num_models, "model_", path, "models", "predictions")
    stimuli = names_array(others.get("stimuli"), num_stimuli, "", path, "stimuli", "predictions")
    labels = labels_array(others, num_stimuli, path)
    if categories is None and "categories" in others:
        categories = [str(c) for c in np.asarray(others["categories"]).reshape(-1).tolist()]
    categories, num_categories = given_categories(categories, num_categories)
    limit = num_categories if num_categories is not None else MAX_CATEGORIES
    bad = outside_categories(preds, limit)
    if bad.any():
        at = np.argwhere(bad)[0]
        place = f"model {models[at[0]]!r}, stimulus {stimuli[block.start + at[1]]!r}"
        if num_categories is None and preds[tuple(at)] >= limit:
            raise too_large(path, f"predictions value {preds[tuple(at)]:,} at {place}")
        raise out_of_range(f"{path}: predictions value {preds[tuple(at)]} at {place}", limit)
    if labels is not None:  # whole on every process: checked as one process does
        bad = outside_categories(labels, limit)
        if bad.any():
            at = int(np.flatnonzero(bad)[0])
            raise out_of_range(f"{path}: labels value {labels[at]} at stimulus {stimuli[at]!r}", limit)
    groups, conditions = (None if others.get(name) is None else
                          [str(v) for v in np.asarray(others[name]).reshape(-1).tolist()]
                          for name in ("rater_groups", "conditions"))
    if groups is not None and len(groups) != num_models:
        raise ValueError(f"{path}: rater_groups has {len(groups)} entries but there are {num_models} models")
    table = PredictionTable(preds.astype(np.int32), None if labels is None else labels.astype(np.int32), models,
                            stimuli, list(categories) if categories is not None else [], groups, conditions,
                            others.get("observed"))
    return PredictionBlock(table, block, True)


UNSUPPORTED_AGREEMENT = {
    "conditions": "per-condition results",
    "observed": "which rater saw which stimulus (folders of CSV files)",
}


def agreement_distributed(table, block: ProcessBlock, *, k: int | None, num_bins: int | None = None,
                          bin_edges=None, error: BaseException | None = None):
    """``(analysis, table)``: the :class:`~jaxagree.analysis.AgreementAnalysis` of the whole table from every process's
    block (``table.predictions`` is this process's ``[models, block]``): agreement, Fleiss' and
    Randolph's kappa, the contrastive stimuli and their kappa; the same on every process and
    equal, value for value, to one process's :func:`~jaxagree.analysis.analyse_agreement`; the
    table with its categories (learnt over every process's block when the input named none).
    With labels (whole on every process), also each model's accuracy, the accuracy bins
    (``num_bins`` / ``bin_edges``) with their kappa over all and over their own contrastive
    stimuli, and error consistency: all from integer counts summed over the processes."""
    import jax.numpy as jnp

    from jaxagree.agreement import contrastive_stimuli, fleiss_kappa, per_stimulus_agreement
    from jaxagree.analysis import AgreementAnalysis, default_k
    from jaxagree.counts import agreement_stats, check_predictions
    from jaxagree.stats import INT32_LIMIT, AgreementStats

    try:
        if error is not None:
            raise error
        for field, what in UNSUPPORTED_AGREEMENT.items():
            if getattr(table, field) is not None:
                raise ValueError(f"--distributed does not support {what} yet: the table has {field}; run "
                                 "without --distributed")
        if table.labels is None and (num_bins is not None or bin_edges is not None):
            raise ValueError("accuracy bins need labels: give a label column or a labels array")
        largest = int(max(table.predictions.max(initial=-1),
                          table.labels.max(initial=-1) if table.labels is not None else -1))
    except Exception as failure:  # noqa: BLE001 - every process must hear of any failure
        process_status(failure)
        raise
    process_status(None)
    check_same_input([len(table.models), len(table.stimuli), len(table.categories), names_checksum(table.models),
                      names_checksum(table.stimuli), table.labels is not None],
                     "PREDICTIONS (models, stimuli, categories, names' checksums, labels)")
    if not table.categories:  # learnt from the values, as one process learns them from all of its
        largest = process_max(largest)
        if largest < 0:
            raise ValueError("no model gave any response")
        table = table._replace(categories=[str(i) for i in range(largest + 1)])
    num_categories = len(table.categories)
    preds = check_predictions(table.predictions, num_categories)
    if preds.shape[1] > 0:
        local = agreement_stats(preds, num_categories=num_categories)
    else:  # more processes than stimuli
        local = AgreementStats(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(num_categories, np.int64))
    n_raters, squares = np.asarray(local.n_raters), np.asarray(local.sum_squares)
    totals = np.asarray(local.category_totals, np.int64)
    # The wide form (float sums of squares) is chosen by the number of models: the same everywhere.
    n_raters, squares = process_concat(n_raters), process_concat(squares)
    totals = process_sum(totals)
    stats = _stats(AgreementStats, n_raters, squares, totals, INT32_LIMIT, jnp)
    agreement = per_stimulus_agreement(stats)
    defined = int(np.sum(~np.isnan(np.asarray(agreement))))
    if defined == 0:
        raise ValueError("no stimulus has responses from at least 2 models; agreement is undefined")
    k = default_k(defined) if k is None else k
    contrastive = np.asarray(contrastive_stimuli(agreement, k))
    # The contrastive stimuli's category totals: each process counts those in its block.
    mine = contrastive[(contrastive >= block.start) & (contrastive < block.stop)] - block.start
    chosen = np.zeros(num_categories, np.int64)
    if mine.size:
        chosen = np.asarray(agreement_stats(preds[:, np.sort(mine)], num_categories=num_categories)
                            .category_totals, np.int64)
    chosen = process_sum(chosen)
    contrastive_stats = _stats(AgreementStats, n_raters[contrastive], squares[contrastive], chosen, INT32_LIMIT, jnp)
    analysis = AgreementAnalysis(
        fleiss_kappa=float(fleiss_kappa(stats)),
        randolph_kappa=float(fleiss_kappa(stats, method="randolph")),
        agreement=np.asarray(agreement),
        n_raters=np.asarray(stats.n_raters),
        k=k,
        contrastive=contrastive,
        contrastive_kappa=float(fleiss_kappa(contrastive_stats)),
        accuracy=None,
        per_bin=None,
    )
    if table.labels is not None:
        analysis = _with_labels(analysis, table, preds, block, num_bins, bin_edges)
    return analysis, table


def _with_labels(analysis, table, preds, block: ProcessBlock, num_bins, bin_edges):
    """Accuracy, accuracy bins and error consistency, as :func:`~jaxagree.analysis.analyse_agreement`
    computes them with labels and no ``observed`` mask, from counts summed over the processes."""
    import jax
    import jax.numpy as jnp

    from jaxagree.accuracy import accuracy_bins, check_labels
    from jaxagree.agreement import consistency_of_pair_counts, contrastive_stimuli, fleiss_kappa, per_stimulus_agreement
    from jaxagree.analysis import BinResults, default_num_bins
    from jaxagree.counts import agreement_stats
    from jaxagree.stats import INT32_LIMIT, AgreementStats

    num_categories = len(table.categories)
    labels = np.asarray(check_labels(table.labels, len(table.stimuli), num_categories))
    mine = labels[block.start : block.stop]
    host = np.asarray(preds)
    marked = np.broadcast_to(mine >= 0, host.shape)
    right = (host == mine[None, :]) & marked
    # Per-block counts are exact in float32 (0/1 products, fewer than 2**24 stimuli); summed as integers.
    highest = jax.lax.Precision.HIGHEST
    r, seen = jnp.asarray(right, jnp.float32), jnp.asarray(marked, jnp.float32)
    counts = [np.asarray(jnp.matmul(a, b.T, precision=highest)).astype(np.int32) for a, b in
              ((seen, seen), (r, r), (r, seen))] if host.shape[0] >= 2 else []
    summed = process_sum([right.sum(1).astype(np.int32), *counts])
    accuracy = np.asarray(jnp.asarray(summed[0]).astype(jnp.float32)
                          / jnp.asarray(int((labels >= 0).sum())).astype(jnp.float32))
    consistency = None
    if counts:
        pairs = jax.jit(consistency_of_pair_counts)
        consistency = np.asarray(pairs(*(jnp.asarray(c).astype(jnp.float32) for c in summed[1:])))
    if bin_edges is None and num_bins is None:
        num_bins = default_num_bins(host.shape[0])
    bins = accuracy_bins(accuracy, num_bins=num_bins, edges=bin_edges)
    local = agreement_stats(preds, num_categories=num_categories, model_mask=bins.model_mask) \
        if host.shape[1] else AgreementStats(np.zeros((len(bins.model_mask), 0), np.int32),
                                             np.zeros((len(bins.model_mask), 0), np.int32),
                                             np.zeros((len(bins.model_mask), num_categories), np.int64))
    n_raters = process_concat(np.asarray(local.n_raters).T).T  # [bins, stimuli]
    squares = process_concat(np.asarray(local.sum_squares).T).T
    totals = process_sum(np.asarray(local.category_totals, np.int64))
    bin_stats = _stats(AgreementStats, n_raters, squares, totals, INT32_LIMIT, jnp)
    bin_agreement = per_stimulus_agreement(bin_stats)
    bin_contrastive = np.asarray(contrastive_stimuli(bin_agreement, analysis.k))
    chosen_totals = []
    for members, chosen in zip(bins.model_mask, bin_contrastive):
        inside = chosen[(chosen >= block.start) & (chosen < block.stop)] - block.start
        part = np.zeros(num_categories, np.int64)
        if inside.size:
            part = np.asarray(agreement_stats(preds[np.flatnonzero(members)][:, np.sort(inside)],
                                              num_categories=num_categories).category_totals, np.int64)
        chosen_totals.append(part)
    chosen_totals = process_sum(np.stack(chosen_totals))
    kappa_contrastive = np.array(
        [float(fleiss_kappa(_stats(AgreementStats, n_raters[b, chosen], squares[b, chosen], chosen_totals[b],
                                   INT32_LIMIT, jnp)))
         for b, chosen in enumerate(bin_contrastive)], np.float32)
    per_bin = BinResults(bins=bins, agreement=np.asarray(bin_agreement), kappa_all=np.asarray(fleiss_kappa(bin_stats)),
                         contrastive=bin_contrastive, kappa_contrastive=kappa_contrastive)
    return analysis._replace(accuracy=accuracy, per_bin=per_bin, error_consistency=consistency)


def _stats(kind, n_raters, squares, totals, limit, jnp):
    """AgreementStats as one process holds them: int32 totals on the device within int32's range."""
    totals = np.asarray(totals, np.int64)
    totals = jnp.asarray(totals.astype(np.int32)) if totals.max(initial=0) <= limit else totals
    return kind(jnp.asarray(n_raters), jnp.asarray(squares), totals)


__all__ = ["FeatureSource", "OtherProcessFailed", "PredictionBlock", "ProcessBlock", "agreement_distributed",
           "check_environment", "check_same_input", "cka_distributed", "process_block",
           "process_concat", "process_max", "process_status", "process_sum", "read_prediction_block", "state_bytes"]
