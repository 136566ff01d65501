"""Processes: each one's block of the stimuli, its input checked against the others', collectives
over one device per process."""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


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


def one_device_per_process():
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
    mesh = one_device_per_process()
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
