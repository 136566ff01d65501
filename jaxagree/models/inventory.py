"""The model inventory (``zoo.toml``) and loading a model from its entry.

A zoo file lists models as ``[[model]]`` tables::

    [[model]]
    name = "vit-tiny-0"            # unique; names the model in every output
    source = "native:vit/tiny"     # see below
    family = "attention"           # conv, attention, hybrid or mlp
    seed = 0                       # options passed to the source (native: seed, num_classes)
    [model.metadata]               # anything: parameter count, release date, training data, ...
    imagenet_top1 = 0.0

Sources:

* ``native:ARCHITECTURE/VARIANT``: jaxagree's own Flax zoo (:mod:`jaxagree.models.native`),
  random weights from ``seed``, ``num_classes`` outputs (default 1000).
* ``python:MODULE:FUNCTION``: a user function called with the entry's options; it returns a
  ``flax.nnx.Module`` mapping normalised images ``[batch, size, size, 3]`` to
  ``(logits, features)``, and its :class:`~jaxagree.models.native.Preprocess` (or the module has
  a ``preprocess`` attribute).

* ``hf:HUB_ID`` or ``hf:FOLDER``: a Hugging Face Flax checkpoint (see
  :mod:`jaxagree.models.huggingface`); options ``task`` (``classification`` or ``features``),
  ``from_pt`` and ``revision``.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxagree.models.native import Preprocess, build_native, native_family

FAMILIES = ("conv", "attention", "hybrid", "mlp")
_RESERVED = {"name", "source", "family", "metadata"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # names become file names


class ModelSpec(NamedTuple):
    """One inventory entry.

    Attributes:
      name: unique model name.
      source: where the model comes from (``native:...`` or ``python:...``).
      family: conv, attention, hybrid or mlp.
      options: the entry's other keys, passed to the source.
      metadata: the entry's ``metadata`` table, kept as given.
    """

    name: str
    source: str
    family: str
    options: dict[str, Any]
    metadata: dict[str, Any]


class LoadedModel(NamedTuple):
    """A model ready to run: ``forward(params, images) -> (logits or None, layers)`` on
    normalised images ``float32 [batch, size, size, 3]``; ``layers`` maps layer names to pooled
    ``[batch, dim]`` representations and always has ``"penultimate"``.

    Attributes:
      spec: its inventory entry.
      forward: a hashable callable; models with equal forwards share one compiled function.
      params: the weights (a pytree).
      preprocess: how its images are prepared.
      num_classes: the number of classes it predicts (0: a backbone without predictions).
      layers: the layer names it offers, from the input to ``"penultimate"``.
    """

    spec: ModelSpec
    forward: Callable
    params: Any
    preprocess: Preprocess
    num_classes: int
    layers: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class NnxForward:
    """The forward of a ``flax.nnx`` model: equal (and hashed) by its graph definition, so models
    of one architecture share a compiled function."""

    graphdef: Any

    def __call__(self, params, images):
        logits, features = nnx.merge(self.graphdef, params)(images)
        # A user model may return one feature array: it is the penultimate layer.
        return logits, features if isinstance(features, dict) else {"penultimate": features}


def read_zoo(path: str | Path) -> list[ModelSpec]:
    """Read and check a ``zoo.toml`` (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such zoo file")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not valid TOML: {error}") from None
    entries = data.get("model")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: no [[model]] entries")
    specs, seen = [], set()
    for number, entry in enumerate(entries, 1):
        where = f"{path}: model {number}"
        for key in ("name", "source", "family"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise ValueError(f"{where}: needs a string {key!r}")
        name = entry["name"]
        where = f"{path}: model {name!r}"
        if not _NAME.match(name):
            raise ValueError(f"{where}: names may hold only letters, digits, '.', '_' and '-' (they name files)")
        if name in seen:
            raise ValueError(f"{where}: the name is used twice")
        seen.add(name)
        if entry["family"] not in FAMILIES:
            raise ValueError(f"{where}: unknown family {entry['family']!r}; known: {', '.join(FAMILIES)}")
        _check_source(entry["source"], where)
        metadata = entry.get("metadata", {})
        if not isinstance(metadata, dict):
            raise ValueError(f"{where}: metadata must be a table")
        options = {k: v for k, v in entry.items() if k not in _RESERVED}
        specs.append(ModelSpec(name, entry["source"], entry["family"], options, metadata))
    return specs


def _check_source(source: str, where: str) -> None:
    kind, _, rest = source.partition(":")
    if kind == "native":
        architecture, _, variant = rest.partition("/")
        try:
            native_family(architecture, variant)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
    elif kind == "python":
        if rest.count(":") != 1 or not all(rest.split(":")):
            raise ValueError(f"{where}: a python source is 'python:MODULE:FUNCTION', got {source!r}")
    elif kind == "hf":
        if not rest:
            raise ValueError(f"{where}: an hf source is 'hf:HUB_ID' or 'hf:FOLDER', got {source!r}")
    else:
        raise ValueError(
            f"{where}: unknown source {source!r}; expected native:ARCH/VARIANT, python:MODULE:FUNCTION or hf:ID"
        )


def load_model(spec: ModelSpec) -> LoadedModel:
    """Build (or import) the model an inventory entry names."""
    kind, _, rest = spec.source.partition(":")
    if kind == "hf":
        from jaxagree.models.huggingface import load_hf

        return _loaded(spec, *load_hf(spec.name, rest, spec.options))
    if kind == "native":
        architecture, _, variant = rest.partition("/")
        allowed = {"seed", "num_classes"}
        unknown = set(spec.options) - allowed
        if unknown:
            raise ValueError(f"model {spec.name!r}: unknown option(s) {sorted(unknown)} for a native model; "
                             f"known: {sorted(allowed)}")
        module, preprocess = build_native(architecture, variant, **spec.options)
    else:
        module_name, function_name = rest.split(":")
        try:
            function = getattr(importlib.import_module(module_name), function_name)
        except (ImportError, AttributeError) as error:
            raise ValueError(f"model {spec.name!r}: cannot import {rest!r}: {error}") from None
        built = function(**spec.options)
        module, preprocess = built if isinstance(built, tuple) else (built, getattr(built, "preprocess", None))
        if not isinstance(module, nnx.Module) or not isinstance(preprocess, Preprocess):
            raise ValueError(f"model {spec.name!r}: {rest} must return (flax.nnx.Module, Preprocess)")
    graphdef, state = nnx.split(module)
    return _loaded(spec, NnxForward(graphdef), state, preprocess)


def _loaded(spec: ModelSpec, forward: Callable, params, preprocess: Preprocess) -> LoadedModel:
    """The model with its class count and layer names, read from the forward's output shapes."""
    size = preprocess.size
    logits, layers = jax.eval_shape(forward, params, jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))
    num_classes = 0 if logits is None else int(logits.shape[-1])
    return LoadedModel(spec, forward, params, preprocess, num_classes, tuple(layers))
