"""Per-model accuracy from labels, and binning models by accuracy into a ``model_mask``.

The paper (Fig. 3, Fig. 4) groups models by ImageNet accuracy and compares agreement within each
group; :func:`accuracy_bins` builds the ``[subsets, models]`` mask that the count kernels take.
"""

from __future__ import annotations

from typing import NamedTuple, no_type_check

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from jaxagree._checks import out_of_range, outside_categories, require_ndim, require_positive_int
from jaxagree._typing import AnyArray
from jaxagree.counts import check_predictions


class AccuracyBins(NamedTuple):
    """Models grouped by accuracy.

    Attributes:
      model_mask: ``bool [bins, models]``, which models fall in each bin (a model is in at most
        one bin).
      lower: ``float [bins]``, lowest accuracy a bin admits (its smallest member's for
        equal-count bins).
      upper: ``float [bins]``, highest accuracy a bin admits.
    """

    model_mask: Bool[np.ndarray, "bins models"]
    lower: Float[np.ndarray, " bins"]
    upper: Float[np.ndarray, " bins"]

    def names(self) -> list[str]:
        """Readable bin labels, e.g. ``'0.612-0.705'``."""
        return [f"{lo:.3f}-{hi:.3f}" for lo, hi in zip(self.lower, self.upper)]


@jax.jit
def correct_rate(
    preds: Int[Array, "models stimuli"], labels: Int[Array, " stimuli"]
) -> Float[Array, " models"]:
    """Each model's share of right answers over the labelled stimuli, on arrays already checked
    by :func:`~jaxagree.counts.check_predictions` and :func:`check_labels` (the kernel of
    :func:`model_accuracy`, for callers that check once and compute several things)."""
    labelled = labels >= 0
    right = (preds == labels[None, :]) & labelled[None, :]
    return right.sum(1).astype(jnp.float32) / labelled.sum().astype(jnp.float32)


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def check_labels(labels: Int[AnyArray, " stimuli"], num_stimuli: int, num_categories: int) -> jax.Array:
    """Validate ``labels [stimuli]`` (-1 = unlabelled) against the predictions' stimulus count and
    the categories; at least one stimulus must be labelled. Returns them as an int32 jax array."""
    labels = labels if hasattr(labels, "dtype") else np.asarray(labels)
    require_ndim("labels", labels, 1, "stimuli")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers (-1 = unlabelled), got dtype {labels.dtype}")
    if labels.shape[0] != num_stimuli:
        raise ValueError(f"labels has {labels.shape[0]} stimuli but predictions has {num_stimuli}")
    host = np.asarray(labels)
    bad = np.flatnonzero(outside_categories(host, num_categories))
    if bad.size:
        raise out_of_range(f"labels[stimulus {bad[0]}] = {host[bad[0]]}", num_categories, meaning="unlabelled")
    if not (host >= 0).any():
        raise ValueError("labels has no labelled stimulus (all -1); accuracy is undefined")
    return jnp.asarray(host, jnp.int32)


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def model_accuracy(
    preds: Int[AnyArray, "models stimuli"],
    labels: Int[AnyArray, " stimuli"],
    *,
    num_categories: int,
) -> Float[Array, " models"]:
    """Top-1 accuracy of every model over the stimuli with a label.

    Args:
      preds: ``int [models, stimuli]``; ``-1`` (no response) counts as wrong.
      labels: ``int [stimuli]`` true category; ``-1`` marks an unlabelled stimulus (skipped).
      num_categories: number of categories (to check both arrays' ranges).

    Returns:
      ``float32 [models]``.
    """
    preds = check_predictions(preds, num_categories, min_models=1)
    return correct_rate(preds, check_labels(labels, preds.shape[1], num_categories))


@no_type_check  # validates its input itself, with ValueErrors that name the culprit
def accuracy_bins(
    accuracy: Float[AnyArray, " models"],
    *,
    num_bins: int | None = None,
    edges: Float[AnyArray, " edges"] | None = None,
) -> AccuracyBins:
    """Group models into accuracy bins, as a ``model_mask`` for the count kernels.

    Give exactly one of:
      num_bins: equal-count bins: models sorted by accuracy (ties by index) and split into
        ``num_bins`` consecutive groups whose sizes differ by at most one.
      edges: increasing bin edges ``[bins + 1]``; bin ``b`` holds ``edges[b] <= acc < edges[b+1]``
        (the last bin includes its upper edge); models outside every bin are left out.

    Every bin must hold at least 2 models (agreement needs 2 raters); otherwise ``ValueError``
    names the bin.
    """
    acc = np.asarray(accuracy, np.float64)
    require_ndim("accuracy", acc, 1, "models")
    if not np.isfinite(acc).all():
        bad = int(np.flatnonzero(~np.isfinite(acc))[0])
        raise ValueError(f"accuracy of model {bad} is {acc[bad]}; accuracies must be finite")
    if (num_bins is None) == (edges is None):
        raise ValueError("give exactly one of num_bins= (equal-count bins) or edges=")
    num_models = acc.shape[0]
    if num_bins is not None:
        num_bins = require_positive_int("num_bins", num_bins)
        if 2 * num_bins > num_models:
            raise ValueError(
                f"num_bins={num_bins} needs at least {2 * num_bins} models (2 per bin), "
                f"got {num_models}"
            )
        order = np.argsort(acc, kind="stable")
        mask = np.zeros((num_bins, num_models), bool)
        for b, members in enumerate(np.array_split(order, num_bins)):
            mask[b, members] = True
        lower = np.array([acc[m].min() for m in mask])
        upper = np.array([acc[m].max() for m in mask])
    else:
        edges = np.asarray(edges, np.float64)
        if edges.ndim != 1 or edges.shape[0] < 2 or not (np.diff(edges) > 0).all():
            raise ValueError(f"edges must be a strictly increasing 1-d array of >= 2 values, got {edges}")
        lower, upper = edges[:-1], edges[1:]
        mask = (acc[None, :] >= lower[:, None]) & (acc[None, :] < upper[:, None])
        mask[-1] |= acc == upper[-1]
    sizes = mask.sum(1)
    if (sizes < 2).any():
        b = int(np.argmax(sizes < 2))
        raise ValueError(
            f"accuracy bin {b} [{lower[b]:.4g}, {upper[b]:.4g}] holds {int(sizes[b])} model(s); "
            "each bin needs at least 2"
        )
    return AccuracyBins(mask, lower, upper)


__all__ = ["AccuracyBins", "accuracy_bins", "check_labels", "correct_rate", "model_accuracy"]
