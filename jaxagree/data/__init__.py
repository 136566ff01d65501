"""Stimuli: sources with random access and stable ids, opened from a SOURCE string through one
scheme -> opener table (:mod:`jaxagree.data.sources`; the stimulus classes in
:mod:`jaxagree.data.stimuli`, :mod:`~jaxagree.data.folder`, :mod:`~jaxagree.data.tfds_source`),
synthetic probes generated in JAX (:mod:`jaxagree.data.synthetic`, pure: it imports nothing from
jaxagree), cluttered handwritten digits with labels (:mod:`jaxagree.data.digits`, pure as well)
and label spaces (:mod:`jaxagree.data.labels`)."""

from jaxagree.data.digits import DigitCanvases, digit_canvases, digit_split
from jaxagree.data.sources import (
    DEFAULT_IMAGE_SIZE,
    ArrayStimuli,
    FolderStimuli,
    Stimuli,
    TfdsStimuli,
    decode_image,
    open_stimuli,
    prepared_tfds_datasets,
    synthetic_stimuli,
)
from jaxagree.data.synthetic import (
    SHAPES,
    CueConflict,
    LocalGlobal,
    Squares,
    cue_conflict,
    local_global,
    squares,
)

__all__ = [
    "DEFAULT_IMAGE_SIZE", "SHAPES", "ArrayStimuli", "CueConflict", "DigitCanvases", "FolderStimuli", "LocalGlobal",
    "Squares", "Stimuli", "TfdsStimuli", "cue_conflict", "decode_image", "digit_canvases", "digit_split",
    "local_global", "open_stimuli", "prepared_tfds_datasets", "squares", "synthetic_stimuli",
]
