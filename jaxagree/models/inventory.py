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
  random weights from ``seed``, ``num_classes`` outputs (default 1000). An ``architecture``
  table sets sizes over the variant's (:data:`~jaxagree.models.native.ARCHITECTURE_OPTIONS`:
  ``widths`` and ``depth`` of a conv net; ``patch``, ``dim``, ``depth``, ``heads`` of a ViT;
  ``patch``, ``dim``, ``depth``, ``token_hidden``, ``channel_hidden`` of a mixer; ``image_size``
  and ``crop_fraction`` of any). ``checkpoint``: an orbax checkpoint folder of trained weights
  (a path relative to the zoo file's folder; :func:`jaxagree.models.train.train_zoo` writes
  them, with a zoo file that names them), restored in place of random ones::

      [[model]]
      name = "conv-small-0"
      source = "native:convnet/tiny"
      family = "conv"
      num_classes = 10
      architecture = { widths = [16, 32], image_size = 32, crop_fraction = 1.0 }
      checkpoint = "checkpoints/conv-small-0"
* ``python:MODULE:FUNCTION``: a user function called with the entry's options; it returns a
  ``flax.nnx.Module`` mapping normalised images ``[batch, size, size, 3]`` to
  ``(logits, features)``, and its :class:`~jaxagree.models.preprocess.Preprocess` (or the module has
  a ``preprocess`` attribute). Importing and calling it runs any code it holds: a zoo file with
  ``python:`` entries is code, read only with ``read_zoo(path, trust_code=True)``.

* ``hf:HUB_ID`` or ``hf:FOLDER``: a Hugging Face Flax checkpoint (see
  :mod:`jaxagree.models.huggingface`); options ``task`` (``classification`` or ``features``),
  ``from_pt`` and ``revision``.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import math
import os
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxagree.models import checkpoint as weights
from jaxagree.models.native import abstract_native, build_native, native_config, native_family
from jaxagree.models.preprocess import Preprocess

FAMILIES = ("conv", "attention", "hybrid", "mlp")
_RESERVED = {"name", "source", "family", "metadata"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # names become file names
# Names become file names under the cache and output folders, whose own paths take part of the
# file system's limit (255 bytes per name, 4096 per path on Linux).
MAX_NAME_LENGTH = 128
# Seeds wrap modulo 2**32 without jax_enable_x64: a larger one silently repeats a smaller one's weights.
_SEEDS = range(2**32)
# A typo such as 10000000000 would allocate a head of tens of gigabytes before failing.
_CLASS_COUNTS = range(1, 1_000_001)


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


def read_zoo(path: str | Path, *, trust_code: bool = False) -> list[ModelSpec]:
    """Read and check a ``zoo.toml`` (see the module docstring): every entry's name, family,
    source and options are checked here, before any model is built.

    Args:
      path: the zoo file.
      trust_code: allow ``python:`` sources. Loading one imports a module and calls a function
        the file names, which runs whatever code they hold (as transformers' ``trust_remote_code``):
        without it a zoo with a ``python:`` entry is refused before anything runs.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such zoo file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text (byte {error.start}), as TOML must be") from None
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
        if len(name) > MAX_NAME_LENGTH:
            raise ValueError(f"{where}: the name has {len(name)} characters; at most {MAX_NAME_LENGTH} "
                             f"(names become file names): {name[:40]!r}...")
        where = f"{path}: model {name!r}"
        if not _NAME.match(name):
            raise ValueError(f"{where}: names may hold only letters, digits, '.', '_' and '-' (they name files)")
        if name in seen:
            raise ValueError(f"{where}: the name is used twice")
        seen.add(name)
        if entry["family"] not in FAMILIES:
            raise ValueError(f"{where}: unknown family {entry['family']!r}; known: {', '.join(FAMILIES)}")
        _check_source(entry["source"], where)
        if entry["source"].startswith("python:") and not trust_code:
            raise ValueError(
                f"{where}: source {entry['source']!r} imports and runs Python code named by the zoo file; "
                "a zoo file with python: entries is code: run it only if you trust it, with --trust-code "
                "(Python: read_zoo(..., trust_code=True))"
            )
        metadata = entry.get("metadata", {})
        if not isinstance(metadata, dict):
            raise ValueError(f"{where}: metadata must be a table")
        options = {k: v for k, v in entry.items() if k not in _RESERVED}
        check_options(entry["source"], options, where)
        if entry["source"].startswith("native:") and "checkpoint" in options:
            # Relative to the zoo file, so that a zoo and its checkpoints move together.
            options["checkpoint"] = os.path.abspath(path.parent / options["checkpoint"])
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


def check_options(source: str, options: dict[str, Any], where: str) -> None:
    """Check an entry's options against its source: names, types and ranges. ``python:``
    options go to the user's function unchecked. Raises ``ValueError`` naming ``where`` and the option."""
    from jaxagree.models.huggingface import TASKS

    kind, _, rest = source.partition(":")
    if kind == "python":
        return
    architecture, _, variant = rest.partition("/")
    checks = {
        "native": {
            "seed": (_is_int_in(_SEEDS), f"an integer from 0 to {_SEEDS.stop - 1}"),
            "num_classes": (_is_int_in(_CLASS_COUNTS), f"an integer from 1 to {_CLASS_COUNTS.stop - 1:,}"),
            "checkpoint": (lambda v: isinstance(v, str) and v != "", "a non-empty string (a checkpoint folder)"),
            # Its options are checked below, together: their relations (patch divides image_size).
            "architecture": (lambda v: isinstance(v, dict), "a table of architecture options"),
        },
        "hf": {
            "task": (lambda v: v in TASKS, " or ".join(map(repr, TASKS))),
            "from_pt": (lambda v: isinstance(v, bool), "true or false"),
            "revision": (lambda v: isinstance(v, str) and v != "", "a non-empty string (a branch, tag or commit)"),
        },
    }[kind]
    for option, value in options.items():
        if option not in checks:
            raise ValueError(f"{where}: unknown option {option!r} for {kind}: sources; known: {', '.join(checks)}")
        valid, expected = checks[option]
        if not valid(value):
            raise ValueError(f"{where}: option {option!r} must be {expected}, got {value!r}")
    if kind == "native":
        try:
            native_config(architecture, variant, **options.get("architecture", {}))
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None


def native_arguments(options: dict[str, Any]) -> dict[str, Any]:
    """A native entry's options as keyword arguments of :func:`~jaxagree.models.native.build_native`:
    ``seed``, ``num_classes`` and the ``architecture`` table's options (not ``checkpoint``)."""
    return {**options.get("architecture", {}), **{k: options[k] for k in ("seed", "num_classes") if k in options}}


def _is_int_in(allowed: range) -> Callable[[Any], bool]:
    # bool is an int subclass: `seed = true` is a mistake, not seed 1.
    return lambda value: isinstance(value, int) and not isinstance(value, bool) and value in allowed


def load_model(spec: ModelSpec) -> LoadedModel:
    """Build (or import) the model an inventory entry names.

    A ``python:`` spec is imported and called: :func:`read_zoo` refuses one from a zoo file
    unless trusted; a spec built in Python is its author's own code."""
    check_options(spec.source, spec.options, f"model {spec.name!r}")
    kind, _, rest = spec.source.partition(":")
    if kind == "hf":
        from jaxagree.models.huggingface import load_hf

        return _loaded(spec, *load_hf(spec.name, rest, spec.options))
    if kind == "native":
        architecture, _, variant = rest.partition("/")
        if "checkpoint" not in spec.options:
            module, preprocess = build_native(architecture, variant, **native_arguments(spec.options))
        else:
            return _restored(spec, architecture, variant)
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


def _restored(spec: ModelSpec, architecture: str, variant: str) -> LoadedModel:
    """A native model with the weights of its ``checkpoint``, restored into its abstract shape
    (no random weights are drawn first)."""
    options = native_arguments(spec.options)
    options.pop("seed", None)  # no weights are drawn
    abstract, preprocess = abstract_native(architecture, variant, **options)
    graphdef, shapes = nnx.split(abstract)
    try:
        state = weights.restore_state(spec.options["checkpoint"], shapes)
    except ValueError as error:
        raise ValueError(f"model {spec.name!r}: {error}") from None
    return _loaded(spec, NnxForward(graphdef), state, preprocess)


def model_files(spec: ModelSpec) -> list[Path]:
    """The files whose contents determine a model, for the extraction cache's key: an ``hf:``
    checkpoint's files (see :func:`jaxagree.models.huggingface.checkpoint_files`), a native
    entry's ``checkpoint`` folder's files and a ``python:`` source's module file (not what that
    module imports or reads). Other native models have none: their weights come from their
    options. Raises ``ValueError`` naming the model when its checkpoint is missing."""
    kind, _, rest = spec.source.partition(":")
    if kind == "native" and "checkpoint" in spec.options:
        try:
            return weights.checkpoint_files(spec.options["checkpoint"])
        except ValueError as error:
            raise ValueError(f"model {spec.name!r}: {error}") from None
    if kind == "hf":
        from jaxagree.models.huggingface import checkpoint_files

        return checkpoint_files(rest, spec.options.get("revision"))
    if kind == "python":
        try:  # find_spec imports the module's parent packages (not the module): trusted code by now
            found = importlib.util.find_spec(rest.split(":")[0])
        except (ImportError, ValueError):
            return []  # load_model says why it cannot import it
        return [Path(found.origin)] if found is not None and found.has_location else []
    return []


def _loaded(spec: ModelSpec, forward: Callable, params, preprocess: Preprocess) -> LoadedModel:
    """The model with its class count and layer names, read from the forward's output shapes."""
    size = preprocess.size
    logits, layers = jax.eval_shape(forward, params, jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))
    num_classes = 0 if logits is None else int(logits.shape[-1])
    return LoadedModel(spec, forward, params, preprocess, num_classes, tuple(layers))


def toml_value(value) -> str:
    """A value as TOML text, for writing zoo files (the kinds an entry holds: strings, booleans,
    numbers, lists of them, inline tables of option names)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else
                                                         ("inf" if value > 0 else "-inf"))
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):  # an inline table; keys are option names (bare TOML keys)
        return "{ " + ", ".join(f"{key} = {toml_value(item)}" for key, item in value.items()) + " }"
    raise ValueError(f"cannot write {value!r} ({type(value).__name__}) to a zoo file")
