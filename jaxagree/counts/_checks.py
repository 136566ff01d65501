"""Predictions and model masks checked, with errors that name the culprit; the raters a mask selects."""

from __future__ import annotations

from typing import NamedTuple, no_type_check

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Integer

from jaxagree._checks import (
    is_traced,
    out_of_range,
    outside_categories,
    require_integer,
    require_ndim,
    require_num_categories,
)
from jaxagree._typing import AnyArray


class Raters(NamedTuple):
    """The (model, subset) pairs to count: every model once without a mask."""

    model: np.ndarray | None  # [raters] model index; None means all models, in order
    subset: np.ndarray  # [raters] subset index
    num_subsets: int
    squeeze: bool  # no mask was given: drop the subset axis from outputs
    largest: int  # models in the largest subset: the most raters a stimulus can have


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def check_predictions(
    preds: AnyArray, num_categories: int, *, min_models: int = 2, check_values: bool = True
) -> jax.Array:
    """Validate ``preds [models, stimuli]`` and return it as an int32 jax array.

    With ``check_values=False`` the caller checks the range itself (the count kernels do it in
    their own pass and call :func:`raise_out_of_range`)."""
    require_num_categories(num_categories)
    if not hasattr(preds, "dtype"):
        preds = np.asarray(preds)
    require_ndim("predictions", preds, 2, "models, stimuli")
    require_integer("predictions", preds)
    num_models, num_stimuli = preds.shape
    if num_models < min_models:
        raise ValueError(
            f"predictions has {num_models} model(s); agreement needs at least {min_models}"
        )
    if num_stimuli < 1:
        raise ValueError("predictions has no stimuli (shape [models, 0])")
    if isinstance(preds, np.ndarray) and np.iinfo(preds.dtype).max > np.iinfo(np.int32).max:
        # Values that do not fit int32 would wrap when moved to the device: check them here.
        if outside_categories(np.array([preds.min(), preds.max()]), num_categories).any():
            raise_out_of_range(preds, num_categories)
    elif check_values and not is_traced(preds):
        if outside_categories(np.array(value_range(jnp.asarray(preds))), num_categories).any():
            raise_out_of_range(preds, num_categories)
    return jnp.asarray(preds, dtype=jnp.int32)


def raise_out_of_range(preds: AnyArray, num_categories: int) -> None:
    """Raise the ValueError for the first prediction outside [-1, num_categories)."""
    host = np.asarray(preds)
    model, stimulus = np.argwhere(outside_categories(host, num_categories))[0]
    raise out_of_range(f"predictions[model {model}, stimulus {stimulus}] = {host[model, stimulus]}", num_categories)


def check_invalid(invalid: jax.Array, preds: AnyArray, num_categories: int) -> None:
    if not is_traced(invalid) and int(invalid) > 0:
        raise_out_of_range(preds, num_categories)


@jax.jit
def value_range(x: Integer[Array, ...]) -> tuple[Integer[Array, ""], Integer[Array, ""]]:
    return x.min(), x.max()


def raters_from_mask(model_mask: AnyArray | None, num_models: int) -> Raters:
    if model_mask is None:
        return Raters(None, np.zeros(num_models, np.int32), 1, True, num_models)
    if is_traced(model_mask):
        raise ValueError(
            "model_mask must be a concrete array (it fixes how many ratings are counted); "
            "call count_predictions outside jit or close over the mask"
        )
    mask = np.asarray(model_mask)
    if mask.dtype != np.bool_:
        raise ValueError(f"model_mask must be a bool array [subsets, models], got dtype {mask.dtype}")
    require_ndim("model_mask", mask, 2, "subsets, models")
    if mask.shape[1] != num_models:
        raise ValueError(
            f"model_mask has {mask.shape[1]} models but predictions has {num_models}"
        )
    if mask.shape[0] < 1:
        raise ValueError("model_mask has no subsets (shape [0, models])")
    sizes = mask.sum(axis=1)
    if (sizes < 2).any():
        row = int(np.argmax(sizes < 2))
        raise ValueError(
            f"model_mask row {row} selects {int(sizes[row])} model(s); each subset needs at least 2"
        )
    subset, model = np.nonzero(mask)
    return Raters(model.astype(np.int32), subset.astype(np.int32), mask.shape[0], False, int(sizes.max()))
