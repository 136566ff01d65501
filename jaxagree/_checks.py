"""Input checks shared by the public functions: clear ValueErrors that name the culprit."""

from __future__ import annotations

from collections.abc import Mapping

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


def require_confidence(value) -> float:
    """The coverage of an interval, in (0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not 0 < value < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {value!r}")
    return float(value)


def require_seed(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {value!r}")
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


def check_stimulus_indices(indices, num_stimuli: int, *, source: str = "stimuli") -> np.ndarray:
    """``int64 [k]`` indices of a stimulus subset: integers, at least one, each in
    ``[0, num_stimuli)``, none repeated; ``source`` begins each message (a file, an argument)."""
    indices = np.asarray(indices)
    if indices.ndim != 1 or (indices.size and not np.issubdtype(indices.dtype, np.integer)):
        raise ValueError(f"{source}: stimulus indices must be a 1-d integer array, got {indices.dtype} "
                         f"with shape {indices.shape}")
    if indices.size == 0:
        raise ValueError(f"{source}: no stimulus indices")
    indices = indices.astype(np.int64)
    outside = (indices < 0) | (indices >= num_stimuli)
    if outside.any():
        raise ValueError(f"{source}: stimulus index {indices[outside][0]} is outside [0, {num_stimuli})")
    if len(np.unique(indices)) != len(indices):
        raise ValueError(f"{source}: stimulus indices repeat")
    return indices


def family_of_each(families, models, *, source: str = "families") -> list[str]:
    """Each model's family, from a mapping of model name to family (every model needs one; other
    names are ignored) or a sequence in the models' order; ``source`` begins each message."""
    if isinstance(families, Mapping):
        missing = [m for m in models if m not in families]
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise ValueError(f"{source}: no family for model(s) {', '.join(map(repr, missing[:5]))}{more}")
        return [str(families[m]) for m in models]
    if isinstance(families, (str, bytes)) or len(families) != len(models):
        raise ValueError(f"{source}: give a mapping from model name to family, or one family per model "
                         f"({len(models)} models), got {families!r:.80}")
    return [str(f) for f in families]
