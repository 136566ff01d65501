"""Reading inputs and writing results, in plain formats only (no pickle anywhere).

* :mod:`~jaxagree.io.predictions`: prediction tables (long CSV/TSV/Parquet, wide ``.npy``/``.npz``).
* :mod:`~jaxagree.io.folders`: folders of CSV files (model-vs-human raw data, per-image tables per model).
* :mod:`~jaxagree.io.inputs`: features per model, stimulus indices, model families, category names.
* :mod:`~jaxagree.io.arrays`: ``.npy``/``.npz`` read safely (headers checked, never unpickled).
* :mod:`~jaxagree.io.results`: CSV and strict-JSON writers; the output folder of a command.
* :mod:`~jaxagree.io.exports`: the count table in statsmodels' layout, the CKA matrix as a long table.
"""

from jaxagree.io.exports import (
    MAX_CSV_CELLS,
    cka_long_table,
    count_table,
    read_model_metadata,
    write_cka_long,
    write_count_table,
)
from jaxagree.io.folders import (
    folder_kind,
    read_model_vs_human,
    read_per_image_predictions,
    read_prediction_folder,
    short_image_name,
)
from jaxagree.io.inputs import FeatureSet, feature_arrays, read_categories, read_families, read_features, read_indices
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
    "MAX_CSV_CELLS",
    "MISSING_MARKERS",
    "FeatureSet",
    "OutputFolder",
    "PredictionTable",
    "cka_long_table",
    "count_table",
    "feature_arrays",
    "json_text",
    "read_categories",
    "read_families",
    "read_features",
    "read_indices",
    "read_model_metadata",
    "read_predictions",
    "save_predictions",
    "folder_kind",
    "read_model_vs_human",
    "read_per_image_predictions",
    "read_prediction_folder",
    "short_image_name",
    "write_cka_long",
    "write_count_table",
    "write_csv",
    "write_json",
]
