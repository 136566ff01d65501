"""Model loading: the inventory (``zoo.toml``) and jaxagree's native Flax zoo. The only part of
jaxagree that imports flax."""

from jaxagree.models.inventory import FAMILIES, LoadedModel, ModelSpec, load_model, read_zoo
from jaxagree.models.native import VARIANTS, Preprocess, build_native

__all__ = ["FAMILIES", "VARIANTS", "LoadedModel", "ModelSpec", "Preprocess", "build_native", "load_model", "read_zoo"]
