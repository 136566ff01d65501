"""Stimuli: sources with random access and stable ids (:mod:`jaxagree.data.sources`), synthetic
probes generated in JAX (:mod:`jaxagree.data.synthetic`) and label spaces
(:mod:`jaxagree.data.labels`)."""

from jaxagree.data.sources import (
    DEFAULT_IMAGE_SIZE,
    ArrayStimuli,
    FolderStimuli,
    Stimuli,
    TfdsStimuli,
    decode_image,
    open_stimuli,
    prepared_tfds_datasets,
)
from jaxagree.data.synthetic import (
    SHAPES,
    CueConflict,
    LocalGlobal,
    Squares,
    cue_conflict,
    local_global,
    squares,
    synthetic_stimuli,
)

__all__ = [
    "DEFAULT_IMAGE_SIZE", "SHAPES", "ArrayStimuli", "CueConflict", "FolderStimuli", "LocalGlobal", "Squares", "Stimuli",
    "TfdsStimuli", "cue_conflict", "decode_image", "local_global", "open_stimuli", "prepared_tfds_datasets", "squares",
    "synthetic_stimuli",
]
