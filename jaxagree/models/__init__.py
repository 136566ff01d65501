"""Model loading: the inventory (``zoo.toml``), jaxagree's native Flax zoo and each model's
preprocessing (:mod:`jaxagree.models.preprocess`, jax only); training a native zoo with optax
(:mod:`jaxagree.models.train`; the demo's zoo of digit classifiers in
:mod:`jaxagree.models.digits_zoo`). The only part of jaxagree that imports flax. optax and
orbax are imported when a model is trained, saved or restored."""

from jaxagree.models.digits_zoo import digits_zoo, train_digits_zoo
from jaxagree.models.inventory import FAMILIES, LoadedModel, ModelSpec, load_model, read_zoo
from jaxagree.models.native import ARCHITECTURE_OPTIONS, VARIANTS, build_native, native_config, parameter_count
from jaxagree.models.preprocess import Preprocess, preprocess_images
from jaxagree.models.train import TrainResult, TrainSpec, train_zoo

__all__ = ["ARCHITECTURE_OPTIONS", "FAMILIES", "VARIANTS", "LoadedModel", "ModelSpec", "Preprocess", "TrainResult",
           "TrainSpec", "build_native", "digits_zoo", "load_model", "native_config", "parameter_count",
           "preprocess_images", "read_zoo", "train_digits_zoo", "train_zoo"]
