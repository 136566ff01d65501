"""Device meshes for the kernels and extraction: the stimuli are split over every device. The
one place jaxagree builds a ``Mesh``; also the shardings of a stimulus batch and the padding of
a ragged last batch to the compiled shape."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


def stimulus_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-d mesh named ``"stimuli"`` over ``devices`` (default: every device)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("stimulus_mesh needs at least one device")
    return Mesh(np.array(devices), ("stimuli",))


def split_rows(mesh: Mesh) -> NamedSharding:
    """Leading axis (stimuli) split over every axis of ``mesh``, the rest whole."""
    return NamedSharding(mesh, P(mesh.axis_names))


def replicated(mesh: Mesh) -> NamedSharding:
    """The whole array on every device of ``mesh`` (weights, label-space tables)."""
    return NamedSharding(mesh, P())


class Padded(NamedTuple):
    """A batch padded to a fixed number of rows: ``rows[:valid]`` are the real ones."""

    rows: np.ndarray
    valid: int


def pad_rows(batch: np.ndarray, size: int) -> Padded:
    """``batch [n, ...]`` with zero rows appended up to ``[size, ...]`` (``n <= size``): a ragged
    last batch keeps the compiled shape, and its padding is dropped by ``valid`` afterwards."""
    valid = batch.shape[0]
    if valid > size:
        raise ValueError(f"a batch of {valid} rows does not fit in {size}")
    if valid == size:
        return Padded(batch, valid)
    return Padded(np.concatenate([batch, np.zeros((size - valid, *batch.shape[1:]), batch.dtype)]), valid)


def device_local(carry, device_axes: tuple[str, ...] | None):
    """Mark a ``scan`` carry inside ``shard_map`` as differing per device: it accumulates each
    device's own share of the data (the sum across devices is taken after the scan)."""
    return carry if device_axes is None else jax.lax.pcast(carry, device_axes, to="varying")


def start_distributed() -> None:
    """``jax.distributed.initialize`` for several processes: from JAX_COORDINATOR_ADDRESS,
    JAX_NUM_PROCESSES and JAX_PROCESS_ID when set, else JAX's own cluster detection (Slurm, Open
    MPI, TPU pods). CPU collectives go over gloo. Call it before any other JAX work."""
    import os

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    settings = {
        "coordinator_address": os.environ.get("JAX_COORDINATOR_ADDRESS"),
        "num_processes": os.environ.get("JAX_NUM_PROCESSES"),
        "process_id": os.environ.get("JAX_PROCESS_ID"),
    }
    jax.distributed.initialize(
        **{k: (v if k == "coordinator_address" else int(v)) for k, v in settings.items() if v is not None}
    )


__all__ = ["Padded", "device_local", "pad_rows", "replicated", "split_rows", "start_distributed",
           "stimulus_mesh"]
