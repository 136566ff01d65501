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


__all__ = ["stimulus_mesh"]
