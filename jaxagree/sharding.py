"""Device meshes for the kernels: the stimuli are split over every device."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh


def stimulus_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-d mesh named ``"stimuli"`` over ``devices`` (default: every device)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("stimulus_mesh needs at least one device")
    return Mesh(np.array(devices), ("stimuli",))


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


__all__ = ["start_distributed", "stimulus_mesh"]
