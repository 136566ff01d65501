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


def outside_categories(values, num_categories: int | None):
    """Where ``values`` are neither a category index in ``[0, num_categories)`` nor -1 (no
    response): the one range rule for predictions and labels, in the readers and the kernels
    (NumPy or jax arrays, inside ``jit`` too). ``num_categories=None``: only values below -1,
    for readers that learn the number of categories from the values."""
    below = values < -1
    return below if num_categories is None else below | (values >= num_categories)


def out_of_range(subject: str, num_categories: int | None, *, meaning: str = "no response") -> ValueError:
    """The error for a value that :func:`outside_categories` flags; ``subject`` names the value
    and where it is (``"predictions[model 1, stimulus 0] = 5"``)."""
    bound = "num_categories" if num_categories is None else f"num_categories={num_categories}"
    return ValueError(f"{subject} is outside [-1, {bound}) (-1 means {meaning})")
