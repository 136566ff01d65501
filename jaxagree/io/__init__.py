"""Reading inputs and writing results, in plain formats only (no pickle anywhere).

* :mod:`~jaxagree.io.predictions`: prediction tables (long CSV/TSV/Parquet, wide ``.npy``/``.npz``).
* :mod:`~jaxagree.io.inputs`: features per model, stimulus indices, model families, category names.
* :mod:`~jaxagree.io.arrays`: ``.npy``/``.npz`` read safely (headers checked, never unpickled).
* :mod:`~jaxagree.io.results`: CSV and strict-JSON writers; the output folder of a command.
"""

from jaxagree.io.inputs import FeatureSet, read_categories, read_families, read_features, read_indices
from jaxagree.io.predictions import (
    MAX_CATEGORIES,
    MISSING_MARKERS,
    PredictionTable,
    read_predictions,
    save_predictions,
)
from jaxagree.io.results import MARKER, OutputFolder, json_text, write_csv, write_json

__all__ = [
    "MARKER",
    "MAX_CATEGORIES",
    "MISSING_MARKERS",
    "FeatureSet",
    "OutputFolder",
    "PredictionTable",
    "json_text",
    "read_categories",
    "read_families",
    "read_features",
    "read_indices",
    "read_predictions",
    "save_predictions",
    "write_csv",
    "write_json",
]
