"""Model loading: the inventory (``zoo.toml``), jaxagree's native Flax zoo and each model's
preprocessing (:mod:`jaxagree.models.preprocess`, jax only). The only part of jaxagree that
imports flax."""

from jaxagree.models.inventory import FAMILIES, LoadedModel, ModelSpec, load_model, read_zoo
from jaxagree.models.native import VARIANTS, build_native
from jaxagree.models.preprocess import Preprocess, preprocess_images

__all__ = ["FAMILIES", "VARIANTS", "LoadedModel", "ModelSpec", "Preprocess", "build_native", "load_model",
           "preprocess_images", "read_zoo"]
