"""The files ``jaxagree extract`` writes from an :class:`~jaxagree.pipeline.loop.Extraction`:
what ``jaxagree agreement`` and ``jaxagree cka`` read."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jaxagree.data.labels import LabelSpace, map_labels
from jaxagree.data.labels import label_space as resolve_label_space
from jaxagree.data.sources import Stimuli
from jaxagree.pipeline.loop import Extraction


def write_extraction(result: Extraction, stimuli: Stimuli, out: str | os.PathLike) -> list[Path]:
    """Write what ``jaxagree agreement`` and ``jaxagree cka`` read: ``OUT/predictions.npz``
    (models x stimuli, with the stimuli's ids, their labels in the predictions' categories, and
    the category names) and ``OUT/features/LAYER/MODEL.npy``. ``stimuli``: the source the
    result came from. Returns the paths.

    Labels are mapped by name into the predictions' categories (:func:`jaxagree.data.labels.map_labels`):
    with a label space, into its categories; for 1000-class models, into the ImageNet classes
    (a folder of WordNet-id sub-folders is labelled); a label that has no category there is -1."""
    from jaxagree.io import PredictionTable, save_predictions

    out = Path(out)
    space = result.label_space
    if space is None:
        predicting = {c for c in result.num_classes if c > 0}  # 0: a backbone, features only
        if len(predicting) > 1:
            sizes = ", ".join(f"{m}: {c}" for m, c in zip(result.models, result.num_classes))
            raise ValueError(f"models predict different numbers of classes ({sizes}); agreement needs one label "
                             "space: give one (--label-space) to map them onto common categories")
        num_classes = max(predicting, default=1)
        space = resolve_label_space("imagenet") if num_classes == 1000 else LabelSpace(
            "classes", [str(c) for c in range(num_classes)], np.eye(num_classes, dtype=bool), {})
    labels = map_labels(space, stimuli.labels, stimuli.categories)
    out.mkdir(parents=True, exist_ok=True)
    table = PredictionTable(result.predictions, labels, result.models, list(stimuli.ids), space.categories)
    written = [save_predictions(out / "predictions.npz", table)]
    for layer, arrays in result.features.items():
        folder = out / "features" / layer
        folder.mkdir(parents=True, exist_ok=True)
        for name, features in zip(result.models, arrays):
            written.append(folder / f"{name}.npy")
            np.save(written[-1], features, allow_pickle=False)
    return written



__all__ = ["write_extraction"]
