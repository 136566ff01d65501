"""Input checks shared by the public functions: clear ValueErrors that name the culprit."""

from __future__ import annotations

import jax
import numpy as np

# Category indices size count tables, totals and name lists: a stray 2**40 must not size them.
# ImageNet-21k has 21,843 classes; a million leaves room for any real label space.
MAX_CATEGORIES = 2**20


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



def require_num_categories(value, name: str = "num_categories") -> int:
    """A category count in ``[1, MAX_CATEGORIES]``: it fixes the size of count tables."""
    value = require_positive_int(name, value)
    if value > MAX_CATEGORIES:
        raise ValueError(f"{name}={value:,} is more categories than jaxagree accepts ({MAX_CATEGORIES:,}); "
                         "count tables grow with it")
    return value
