"""jaxagree's own Flax zoo (``flax.nnx``): small conv nets, ViTs and MLP-Mixers, each in named
variants from a tiny one for tests to ImageNet-sized ones.

Every model maps normalised images ``float32 [batch, size, size, 3]`` to
``(logits [batch, classes], layers)``: ``layers`` maps layer names to pooled representations
``[batch, dim]``, in order from the input, ending with ``"penultimate"`` (what the head sees:
global average for conv nets and mixers, the class token for ViTs). Intermediate layers are
pooled the same way: ``stage1, stage2, ...`` for conv nets, ``block1, block2, ...`` for ViTs
(class token) and mixers (token mean).
Weights are random (from ``seed``) unless a zoo entry names a checkpoint (trained with
:func:`jaxagree.models.train.train_zoo`, or by users who train their own). An entry may set
architecture options over its variant's (:data:`ARCHITECTURE_OPTIONS`), so that models of any
size are described in a zoo file.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxagree.models.preprocess import Preprocess


class ConvNet(nnx.Module):
    """A plain residual conv net: a strided stem, then stages of residual 3x3 blocks (GroupNorm,
    ReLU), each stage after the first halving the resolution."""

    def __init__(self, widths: tuple[int, ...], depth: int, num_classes: int, *, rngs: nnx.Rngs):
        self.stem = nnx.Conv(3, widths[0], (3, 3), strides=(2, 2), rngs=rngs)
        self.stages = nnx.List()
        previous = widths[0]
        for index, width in enumerate(widths):
            blocks = nnx.List()
            for block in range(depth):
                stride = 2 if index > 0 and block == 0 else 1
                blocks.append(_ResidualBlock(previous, width, stride, rngs=rngs))
                previous = width
            self.stages.append(blocks)
        self.norm = nnx.GroupNorm(previous, num_groups=min(8, previous), rngs=rngs)
        self.head = nnx.Linear(previous, num_classes, rngs=rngs)

    def __call__(self, images: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        x = self.stem(images)
        layers = {}
        for index, blocks in enumerate(self.stages, 1):
            for block in blocks:
                x = block(x)
            layers[f"stage{index}"] = x.mean(axis=(1, 2))
        layers["penultimate"] = jax.nn.relu(self.norm(x)).mean(axis=(1, 2))
        return self.head(layers["penultimate"]), layers


class _ResidualBlock(nnx.Module):
    def __init__(self, inputs: int, width: int, stride: int, *, rngs: nnx.Rngs):
        self.norm1 = nnx.GroupNorm(inputs, num_groups=min(8, inputs), rngs=rngs)
        self.conv1 = nnx.Conv(inputs, width, (3, 3), strides=(stride, stride), rngs=rngs)
        self.norm2 = nnx.GroupNorm(width, num_groups=min(8, width), rngs=rngs)
        self.conv2 = nnx.Conv(width, width, (3, 3), rngs=rngs)
        self.skip = (
            nnx.Conv(inputs, width, (1, 1), strides=(stride, stride), rngs=rngs)
            if stride != 1 or inputs != width else None
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.conv1(jax.nn.relu(self.norm1(x)))
        h = self.conv2(jax.nn.relu(self.norm2(h)))
        return h + (x if self.skip is None else self.skip(x))


class ViT(nnx.Module):
    """Vision Transformer (Dosovitskiy et al. 2021): patches, a class token, learned positions,
    pre-norm transformer blocks; the class token's final state is the representation."""

    def __init__(self, image_size: int, patch: int, dim: int, depth: int, heads: int, num_classes: int, *,
                 rngs: nnx.Rngs):
        self.patch = nnx.Conv(3, dim, (patch, patch), strides=(patch, patch), padding="VALID", rngs=rngs)
        tokens = (image_size // patch) ** 2 + 1
        self.cls = nnx.Param(jax.random.normal(rngs.params(), (1, 1, dim)) * 0.02)
        self.position = nnx.Param(jax.random.normal(rngs.params(), (1, tokens, dim)) * 0.02)
        self.blocks = nnx.List([_TransformerBlock(dim, heads, 4 * dim, rngs=rngs) for _ in range(depth)])
        self.norm = nnx.LayerNorm(dim, rngs=rngs)
        self.head = nnx.Linear(dim, num_classes, rngs=rngs)

    def __call__(self, images: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        x = self.patch(images)
        x = x.reshape(x.shape[0], -1, x.shape[-1])
        cls = jnp.broadcast_to(self.cls[...], (x.shape[0], 1, x.shape[-1]))
        x = jnp.concatenate([cls, x], axis=1) + self.position[...]
        layers = {}
        for index, block in enumerate(self.blocks, 1):
            x = block(x)
            layers[f"block{index}"] = x[:, 0]
        layers["penultimate"] = self.norm(x)[:, 0]
        return self.head(layers["penultimate"]), layers


class _TransformerBlock(nnx.Module):
    def __init__(self, dim: int, heads: int, hidden: int, *, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(dim, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(num_heads=heads, in_features=dim, decode=False, rngs=rngs)
        self.norm2 = nnx.LayerNorm(dim, rngs=rngs)
        self.mlp = _Mlp(dim, hidden, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _Mlp(nnx.Module):
    def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs):
        self.up = nnx.Linear(dim, hidden, rngs=rngs)
        self.down = nnx.Linear(hidden, dim, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down(jax.nn.gelu(self.up(x)))


class MlpMixer(nnx.Module):
    """MLP-Mixer (Tolstikhin et al. 2021): patches, then blocks mixing across tokens and across
    channels with MLPs only; mean-pooled tokens are the representation."""

    def __init__(self, image_size: int, patch: int, dim: int, depth: int, token_hidden: int,
                 channel_hidden: int, num_classes: int, *, rngs: nnx.Rngs):
        self.patch = nnx.Conv(3, dim, (patch, patch), strides=(patch, patch), padding="VALID", rngs=rngs)
        tokens = (image_size // patch) ** 2
        self.blocks = nnx.List([_MixerBlock(tokens, dim, token_hidden, channel_hidden, rngs=rngs)
                                for _ in range(depth)])
        self.norm = nnx.LayerNorm(dim, rngs=rngs)
        self.head = nnx.Linear(dim, num_classes, rngs=rngs)

    def __call__(self, images: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        x = self.patch(images)
        x = x.reshape(x.shape[0], -1, x.shape[-1])
        layers = {}
        for index, block in enumerate(self.blocks, 1):
            x = block(x)
            layers[f"block{index}"] = x.mean(axis=1)
        layers["penultimate"] = self.norm(x).mean(axis=1)
        return self.head(layers["penultimate"]), layers


class _MixerBlock(nnx.Module):
    def __init__(self, tokens: int, dim: int, token_hidden: int, channel_hidden: int, *, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(dim, rngs=rngs)
        self.token_mlp = _Mlp(tokens, token_hidden, rngs=rngs)
        self.norm2 = nnx.LayerNorm(dim, rngs=rngs)
        self.channel_mlp = _Mlp(dim, channel_hidden, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.token_mlp(self.norm1(x).swapaxes(1, 2)).swapaxes(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class _Variant(NamedTuple):
    build: type
    family: str
    image_size: int
    options: dict


VARIANTS: dict[str, dict[str, _Variant]] = {
    "convnet": {
        "tiny": _Variant(ConvNet, "conv", 32, {"widths": (8, 16), "depth": 1}),
        "small": _Variant(ConvNet, "conv", 224, {"widths": (32, 64, 128, 256), "depth": 2}),
        "base": _Variant(ConvNet, "conv", 224, {"widths": (64, 128, 256, 512), "depth": 3}),
    },
    "vit": {
        "tiny": _Variant(ViT, "attention", 32, {"patch": 8, "dim": 32, "depth": 2, "heads": 2}),
        "s16": _Variant(ViT, "attention", 224, {"patch": 16, "dim": 384, "depth": 12, "heads": 6}),
        "b16": _Variant(ViT, "attention", 224, {"patch": 16, "dim": 768, "depth": 12, "heads": 12}),
    },
    "mixer": {
        "tiny": _Variant(MlpMixer, "mlp", 32, {"patch": 8, "dim": 32, "depth": 2, "token_hidden": 16,
                                               "channel_hidden": 64}),
        "s16": _Variant(MlpMixer, "mlp", 224, {"patch": 16, "dim": 512, "depth": 8, "token_hidden": 256,
                                               "channel_hidden": 2048}),
        "b16": _Variant(MlpMixer, "mlp", 224, {"patch": 16, "dim": 768, "depth": 12, "token_hidden": 384,
                                               "channel_hidden": 3072}),
    },
}


# Architecture options a zoo entry may set over its variant's, in its ``architecture`` table
# (``native:convnet/tiny`` with ``architecture = {widths = [16, 32]}``): the variants are
# starting points, not the only sizes.
ARCHITECTURE_OPTIONS: dict[str, tuple[str, ...]] = {
    "convnet": ("widths", "depth", "image_size", "crop_fraction"),
    "vit": ("patch", "dim", "depth", "heads", "image_size", "crop_fraction"),
    "mixer": ("patch", "dim", "depth", "token_hidden", "channel_hidden", "image_size", "crop_fraction"),
}
# Sizes past these are typos that would allocate gigabytes before failing.
_LIMITS = {"widths": 8192, "depth": 256, "image_size": 4096, "patch": 512, "dim": 16384, "heads": 256,
           "token_hidden": 65536, "channel_hidden": 65536}


class NativeConfig(NamedTuple):
    """A native model's architecture: its variant with an entry's options applied.

    Attributes:
      build: the module class (:class:`ConvNet`, :class:`ViT` or :class:`MlpMixer`).
      family: conv, attention or mlp.
      options: the class's keyword arguments (``image_size`` included for ViTs and mixers).
      preprocess: how its images are prepared (``image_size`` square; ``crop_fraction``).
    """

    build: type
    family: str
    options: dict
    preprocess: Preprocess


def native_family(architecture: str, variant: str) -> str:
    return _variant(architecture, variant).family


def native_config(architecture: str, variant: str, **overrides) -> NativeConfig:
    """The architecture of ``native:ARCHITECTURE/VARIANT`` with ``overrides`` (names in
    :data:`ARCHITECTURE_OPTIONS`) in place of the variant's values, checked: positive sizes,
    ``widths`` a non-empty list, ``patch`` dividing ``image_size``, ``heads`` dividing ``dim``,
    ``crop_fraction`` in (0, 1] (1: the whole image, no crop; the variants crop 0.875 as ImageNet
    models do). Raises ``ValueError`` naming the option."""
    spec = _variant(architecture, variant)
    allowed = ARCHITECTURE_OPTIONS[architecture]
    for option, value in overrides.items():
        if option not in allowed:
            raise ValueError(f"unknown architecture option {option!r} for native {architecture}; "
                             f"known: {', '.join(allowed)}")
        _check_option(option, value)
    options = {**spec.options, "image_size": spec.image_size, **overrides}
    crop_fraction = float(options.pop("crop_fraction", Preprocess._field_defaults["crop_fraction"]))
    image_size = options["image_size"] if spec.build is not ConvNet else options.pop("image_size")
    if "widths" in options:
        options["widths"] = tuple(options["widths"])
    if "patch" in options and image_size % options["patch"]:
        raise ValueError(f"architecture option 'patch' ({options['patch']}) must divide image_size ({image_size})")
    if "heads" in options and options["dim"] % options["heads"]:
        raise ValueError(f"architecture option 'heads' ({options['heads']}) must divide dim ({options['dim']})")
    return NativeConfig(spec.build, spec.family, options, Preprocess(image_size, crop_fraction=crop_fraction))


def _check_option(option: str, value) -> None:
    if option == "crop_fraction":
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
            raise ValueError(f"architecture option 'crop_fraction' must be a number in (0, 1], got {value!r}")
        return
    values = value if option == "widths" else [value]
    if option == "widths" and (not isinstance(value, list | tuple) or not value):
        raise ValueError(f"architecture option 'widths' must be a non-empty list of positive integers, got {value!r}")
    limit = _LIMITS[option]
    for item in values:
        if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= limit:
            what = "a list of integers" if option == "widths" else "an integer"
            raise ValueError(f"architecture option {option!r} must be {what} from 1 to {limit}, got {value!r}")


def build_native(architecture: str, variant: str, *, num_classes: int = 1000, seed: int = 0, **overrides):
    """A randomly initialised model of jaxagree's zoo and its :class:`Preprocess`; ``overrides``
    set architecture options over the variant's (see :func:`native_config`)."""
    config = native_config(architecture, variant, **overrides)
    model = config.build(**config.options, num_classes=num_classes, rngs=nnx.Rngs(seed))
    return model, config.preprocess


def abstract_native(architecture: str, variant: str, *, num_classes: int = 1000, **overrides):
    """The model of :func:`build_native` as shapes only (``nnx.eval_shape``: no weights are
    drawn), to restore a checkpoint into, and its :class:`Preprocess`."""
    config = native_config(architecture, variant, **overrides)
    model = nnx.eval_shape(lambda: config.build(**config.options, num_classes=num_classes, rngs=nnx.Rngs(0)))
    return model, config.preprocess


def parameter_count(model: nnx.Module) -> int:
    """The number of trainable values (``nnx.Param`` leaves) of a model."""
    return sum(int(x.size) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def _variant(architecture: str, variant: str) -> _Variant:
    if architecture not in VARIANTS:
        raise ValueError(f"unknown native architecture {architecture!r}; known: {', '.join(VARIANTS)}")
    if variant not in VARIANTS[architecture]:
        raise ValueError(
            f"unknown variant {variant!r} of {architecture}; known: {', '.join(VARIANTS[architecture])}"
        )
    return VARIANTS[architecture][variant]
