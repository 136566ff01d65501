"""Input checks of the CKA functions: shapes, stimulus counts and values, with ValueErrors that
name the model (by index, or by name for a mapping) and the stimulus and dimension at fault."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from jaxagree._checks import is_traced


class ModelSlices(Sequence):
    """The models of a ``[models, stimuli, dim]`` array, sliced only when one is used (slicing a
    device array copies it)."""

    def __init__(self, stacked):
        self.stacked = stacked
        self.shape = (stacked.shape[1], stacked.shape[2])

    def __len__(self) -> int:
        return self.stacked.shape[0]

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.stacked[i] for i in range(len(self))[index]]
        return self.stacked[range(len(self))[index]]  # range raises IndexError; jax would clamp

    def __iter__(self):
        return (self.stacked[i] for i in range(len(self)))


def shapes(models) -> list[tuple[int, int]]:
    if isinstance(models, ModelSlices):
        return [models.shape] * len(models)
    return [tuple(m.shape) for m in models]


def check_features(
    features, *, debiased: bool, min_models: int, min_stimuli: int | None = None
) -> tuple[Sequence, list[str]]:
    """Validate; return (per-model [stimuli, dim] arrays, how to name each model in messages)."""
    if isinstance(features, Mapping):
        labels = [f"model {name!r}" for name in features]
        models = [f if hasattr(f, "ndim") else np.asarray(f) for f in features.values()]
    elif hasattr(features, "ndim"):
        if features.ndim != 3:
            raise ValueError(
                f"features must have shape [models, stimuli, dim] or be a sequence of [stimuli, dim] "
                f"arrays, got shape {tuple(features.shape)}"
            )
        models = ModelSlices(features)
        labels = [f"model {m}" for m in range(len(models))]
    elif isinstance(features, Sequence) and not isinstance(features, (str, bytes)):
        models = [f if hasattr(f, "ndim") else np.asarray(f) for f in features]
        labels = [f"model {m}" for m in range(len(models))]
    else:
        raise ValueError(
            f"features must be an array, a sequence or a mapping of arrays, got {type(features).__name__}"
        )
    if len(models) < min_models:
        raise ValueError(f"features has {len(models)} model(s); CKA needs at least {min_models}")
    if not isinstance(models, ModelSlices):
        for x, label in zip(models, labels):
            if x.ndim != 2:
                raise ValueError(f"{label} features must have shape [stimuli, dim], got shape {tuple(x.shape)}")
    check_same_stimuli([shape[0] for shape in shapes(models)], labels)
    if isinstance(models, ModelSlices):
        # One check of the whole array; only when it fails, one model at a time to name it.
        check_one(features[0], labels[0], debiased=debiased, min_stimuli=min_stimuli, values=False)
        if all_valid(features):
            return models, labels
    for x, label in zip(models, labels):
        check_one(x, label, debiased=debiased, min_stimuli=min_stimuli)
    return models, labels


def all_valid(x) -> bool:
    """Whether every value is finite (and in float32's range); True for integers."""
    if not jnp.issubdtype(x.dtype, jnp.floating) or is_traced(x):
        return True
    if isinstance(x, np.ndarray):
        return bool(np.isfinite(x).all() and (x.dtype.itemsize <= 4 or np.abs(x).max() <= np.finfo(np.float32).max))
    return bool(jnp.isfinite(x).all())


def check_same_stimuli(counts: Sequence[int], labels: Sequence[str]) -> None:
    """Raise naming the first model whose stimulus count differs from the first model's."""
    for count, label in zip(counts[1:], labels[1:]):
        if count != counts[0]:
            raise ValueError(
                f"{label} has {count} stimuli but {labels[0]} has {counts[0]}; CKA compares "
                "representations of the same stimuli"
            )


def check_one(x, name: str, *, debiased: bool, min_stimuli: int | None = None, values: bool = True) -> None:
    """Dtype, sizes, and (with ``values``) finite float32 values, naming the first bad one."""
    if not jnp.issubdtype(x.dtype, jnp.floating) and not jnp.issubdtype(x.dtype, jnp.integer):
        raise ValueError(f"{name} features must be numeric, got dtype {x.dtype}")
    least = (4 if debiased else 2) if min_stimuli is None else min_stimuli
    if x.shape[0] < least:
        raise ValueError(
            f"{name} has {x.shape[0]} stimuli; {'debiased' if debiased else 'biased'} CKA needs at least {least}"
        )
    if x.shape[1] < 1:
        raise ValueError(f"{name} features have no dimensions (shape {tuple(x.shape)})")
    if not values or all_valid(x):
        return
    host = np.asarray(x)
    # float64 beyond float32's range would become Inf on the device.
    bad = ~np.isfinite(host) | (np.abs(host) > np.finfo(np.float32).max)
    where = np.argwhere(bad)[0]
    raise ValueError(
        f"{name} features contain {host[where[0], where[1]]} at stimulus {where[0]}, dimension {where[1]}"
        " (features must be finite float32 values)"
    )



__all__ = ["ModelSlices", "all_valid", "check_features", "check_one", "check_same_stimuli", "shapes"]
