"""jaxagree's own Flax zoo (``flax.nnx``): small conv nets, ViTs and MLP-Mixers, each in named
variants from a tiny one for tests to ImageNet-sized ones.

Every model maps normalised images ``float32 [batch, size, size, 3]`` to
``(logits [batch, classes], layers)``: ``layers`` maps layer names to pooled representations
``[batch, dim]``, in order from the input, ending with ``"penultimate"`` (what the head sees:
global average for conv nets and mixers, the class token for ViTs). Intermediate layers are
pooled the same way: ``stage1, stage2, ...`` for conv nets, ``block1, block2, ...`` for ViTs
(class token) and mixers (token mean).
Weights are random (from ``seed``): the zoo is for pipelines, tests and benchmarks, and for
users who train their own.
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


def native_family(architecture: str, variant: str) -> str:
    return _variant(architecture, variant).family


def build_native(architecture: str, variant: str, *, num_classes: int = 1000, seed: int = 0):
    """A randomly initialised model of jaxagree's zoo and its :class:`Preprocess`."""
    spec = _variant(architecture, variant)
    options = dict(spec.options)
    if spec.build in (ViT, MlpMixer):
        options["image_size"] = spec.image_size
    model = spec.build(**options, num_classes=num_classes, rngs=nnx.Rngs(seed))
    return model, Preprocess(spec.image_size)


def _variant(architecture: str, variant: str) -> _Variant:
    if architecture not in VARIANTS:
        raise ValueError(f"unknown native architecture {architecture!r}; known: {', '.join(VARIANTS)}")
    if variant not in VARIANTS[architecture]:
        raise ValueError(
            f"unknown variant {variant!r} of {architecture}; known: {', '.join(VARIANTS[architecture])}"
        )
    return VARIANTS[architecture][variant]
