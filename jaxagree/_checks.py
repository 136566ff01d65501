"""Input checks shared by the public functions: clear ValueErrors that name the culprit."""

from __future__ import annotations

import jax
import numpy as np


def is_traced(x) -> bool:
    """True inside a jax transformation, where values cannot be inspected."""
    return isinstance(x, jax.core.Tracer)


def require_integer(name: str, x) -> None:
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(
            f"{name} must be an integer array of category indices (-1 = no response), "
            f"got dtype {x.dtype}; convert with .astype(int) after checking the values are whole"
        )


def require_ndim(name: str, x, ndim: int, axes: str) -> None:
    if x.ndim != ndim:
        raise ValueError(f"{name} must have shape [{axes}], got shape {tuple(x.shape)}")


def require_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)

