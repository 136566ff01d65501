"""Training a zoo of native models (:mod:`jaxagree.models.native`) on a labelled stimulus source,
with optax, saving each model as an orbax checkpoint and writing a zoo file that names them.

:func:`train_zoo` takes the models as a zoo file (``native:`` entries; a budget in each entry's
``[model.metadata]``: ``steps``, ``learning_rate``, ``data_fraction``, ``batch_size``,
``weight_decay``) or as :class:`TrainSpec` values, and writes into ``out_dir``::

    zoo.toml                  every model, with ``checkpoint = "checkpoints/NAME"`` and its
                              family, parameter count, budget and held-out accuracy as metadata
    checkpoints/NAME/         the weights (orbax; see :mod:`jaxagree.models.checkpoint`)
    checkpoints/NAME.json     what NAME was trained on and with, and its results

The generated ``zoo.toml`` is what ``jaxagree extract --zoo`` and :func:`~jaxagree.models.read_zoo`
read, and it is a valid input of :func:`train_zoo` again.

Speed: models that differ only in ``seed`` (one architecture, one budget) train together, as one
``vmap``-ed step over their stacked weights: one compiled function, bigger operations. On CPU,
conv nets are the exception: a vmapped convolution with per-model kernels becomes a grouped
convolution, which XLA:CPU runs several times slower than one model's, so they train one after
another through the same compiled step. Every budget of one architecture shares that step (the
learning rate is an argument): compiling is a large share of training a small model.

Resuming: a model is finished when its checkpoint folder and its ``NAME.json`` record exist and
the record's configuration (source, architecture, seed, budget) is the one asked for; a later call
reuses it without training. orbax renames a complete checkpoint into place and the record is
written (temporary file, then rename) only after it, so an interrupted run never leaves a model
that looks finished: it is trained again, and its old files replaced.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Int, UInt8

from jaxagree.models import checkpoint as weights
from jaxagree.models.inventory import ModelSpec, check_options, native_arguments, read_zoo, toml_value
from jaxagree.models.native import build_native, parameter_count
from jaxagree.models.preprocess import Preprocess, preprocess_images

ZOO_FILE = "zoo.toml"
CHECKPOINTS = "checkpoints"
# The training loss is reported as the mean over this many first and last steps.
_LOSS_WINDOW = 25
_EVAL_BATCH = 500


class TrainSpec(NamedTuple):
    """One model to train.

    Attributes:
      model: its zoo entry: a ``native:`` source with options (``seed``, ``num_classes``,
        architecture options); ``num_classes`` defaults to the source's category count.
      steps: optimiser steps.
      learning_rate: AdamW's peak rate (linear warm-up over the first 5% of steps, then
        cosine decay to 5% of it).
      data_fraction: the share of the training stimuli the model may see (the first ones): a
        smaller budget of data, in (0, 1].
      batch_size: stimuli per step, drawn with replacement.
      weight_decay: AdamW's decoupled weight decay.
    """

    model: ModelSpec
    steps: int
    learning_rate: float
    data_fraction: float = 1.0
    batch_size: int = 128
    weight_decay: float = 1e-4


class TrainResult(NamedTuple):
    """One trained (or reused) model.

    Attributes:
      name, family: the model's zoo entry name and family.
      checkpoint: its weights' folder.
      parameters: its number of trainable values.
      num_classes: its number of outputs.
      steps, learning_rate, data_fraction, batch_size: its budget.
      accuracy: top-1 accuracy on the held-out stimuli.
      first_loss, final_loss: mean training cross-entropy over the first and the last
        ``_LOSS_WINDOW`` (25) steps (a quarter of the steps, for fewer than 100).
      seconds: wall time of its group's training divided among the group's models.
      reused: found finished in ``out_dir`` and not trained again.
    """

    name: str
    family: str
    checkpoint: Path
    parameters: int
    num_classes: int
    steps: int
    learning_rate: float
    data_fraction: float
    batch_size: int
    accuracy: float
    first_loss: float
    final_loss: float
    seconds: float
    reused: bool


_BUDGET_KEYS = {"steps": int, "learning_rate": float, "data_fraction": float, "batch_size": int,
                "weight_decay": float}


def train_zoo(
    zoo: str | os.PathLike | Sequence[TrainSpec | ModelSpec],
    source,
    *,
    out_dir: str | os.PathLike,
    heldout=None,
    steps: int = 600,
    learning_rate: float = 1e-3,
    data_fraction: float = 1.0,
    batch_size: int = 128,
    weight_decay: float = 1e-4,
    progress: bool = True,
) -> list[TrainResult]:
    """Train a zoo's native models on a labelled stimulus source, save each as an orbax
    checkpoint and write ``out_dir/zoo.toml`` naming them (see the module docstring).

    Args:
      zoo: a zoo file of ``native:`` entries, or :class:`TrainSpec` / :class:`ModelSpec` values.
        A zoo entry's budget comes from its ``[model.metadata]`` (``steps``, ``learning_rate``,
        ``data_fraction``, ``batch_size``, ``weight_decay``), else from the keyword defaults here;
        a :class:`ModelSpec` takes the defaults.
      source: a SOURCE string (e.g. ``synthetic:digits?split=train&n=20000``) or a
        :class:`~jaxagree.data.Stimuli` with labels; its images are the models' training data.
      out_dir: where checkpoints and the generated zoo file go (created).
      heldout: a SOURCE or stimuli to measure accuracy on; None holds out the last tenth of
        ``source`` (and trains on the rest).
      steps, learning_rate, data_fraction, batch_size, weight_decay: the default budget.
      progress: show a progress bar of training steps (all models).

    Returns:
      One :class:`TrainResult` per model, in the zoo's order; models found finished in
      ``out_dir`` are reused (``reused=True``), not trained again.
    """
    defaults = TrainSpec(ModelSpec("", "", "", {}, {}), steps, learning_rate, data_fraction, batch_size, weight_decay)
    specs = _train_specs(zoo, defaults)
    out = Path(out_dir)
    folder = out / CHECKPOINTS
    data = _Data(source, heldout)
    configs = {spec.model.name: _config(spec, data.description) for spec in specs}
    finished = {spec.model.name: _finished(folder, spec.model.name, configs[spec.model.name]) for spec in specs}
    todo = [spec for spec in specs if finished[spec.model.name] is None]
    results = {name: record for name, record in finished.items() if record is not None}
    if todo:
        folder.mkdir(parents=True, exist_ok=True)
        train, test = data.opened()
        specs_ready = [_with_classes(spec, train) for spec in todo]
        from tqdm.auto import tqdm

        total = sum(spec.steps for spec in specs_ready)
        with tqdm(total=total, desc="training", unit="step", disable=not progress, smoothing=0.1) as bar:
            for group in _groups(specs_ready):
                bar.set_postfix_str(", ".join(spec.model.name for spec in group), refresh=False)
                for spec, result in zip(group, _train_group(group, train, test, folder, bar)):
                    _write_record(folder, spec.model.name, configs[spec.model.name], result)
                    results[spec.model.name] = result
    ordered = [results[spec.model.name] for spec in specs]
    _write_zoo(out / ZOO_FILE, specs, ordered, data.description)
    return ordered


# --- the zoo's models and budgets -----------------------------------------------------------------


def _train_specs(zoo, defaults: TrainSpec) -> list[TrainSpec]:
    if isinstance(zoo, str | os.PathLike):
        models = read_zoo(zoo)
        specs = [_from_metadata(model, defaults) for model in models]
    else:
        specs = [spec if isinstance(spec, TrainSpec) else defaults._replace(model=spec) for spec in zoo]
    if not specs:
        raise ValueError("no models to train")
    names = [spec.model.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique; repeated: {sorted({n for n in names if names.count(n) > 1})}")
    for spec in specs:
        _check_spec(spec)
    return specs


def _from_metadata(model: ModelSpec, defaults: TrainSpec) -> TrainSpec:
    budget = {}
    for key, kind in _BUDGET_KEYS.items():
        if key in model.metadata:
            value = model.metadata[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and value != int(value)):
                raise ValueError(f"model {model.name!r}: metadata {key!r} must be a number, got {value!r}")
            budget[key] = kind(value)
    return defaults._replace(model=model, **budget)


def _check_spec(spec: TrainSpec) -> None:
    model, where = spec.model, f"model {spec.model.name!r}"
    if not model.source.startswith("native:"):
        raise ValueError(f"{where}: only native: models can be trained here, got source {model.source!r}")
    check_options(model.source, model.options, where)
    if spec.steps < 1 or spec.batch_size < 1:
        raise ValueError(f"{where}: steps and batch_size must be positive, got {spec.steps} and {spec.batch_size}")
    if not 0 < spec.data_fraction <= 1:
        raise ValueError(f"{where}: data_fraction must be in (0, 1], got {spec.data_fraction}")
    if not spec.learning_rate > 0 or not spec.weight_decay >= 0:
        raise ValueError(f"{where}: learning_rate must be positive and weight_decay not negative, "
                         f"got {spec.learning_rate} and {spec.weight_decay}")


def _options(spec: TrainSpec) -> dict[str, Any]:
    """The entry's options without ``checkpoint`` (its weights are what is being made)."""
    return {k: v for k, v in spec.model.options.items() if k != "checkpoint"}


def _with_classes(spec: TrainSpec, train: _Split) -> TrainSpec:
    options = _options(spec)
    options.setdefault("num_classes", train.num_classes)
    if options["num_classes"] < train.num_classes:
        raise ValueError(f"model {spec.model.name!r}: num_classes={options['num_classes']} but the training labels "
                         f"go up to {train.num_classes - 1}")
    return spec._replace(model=spec.model._replace(options=options))


def _groups(specs: Sequence[TrainSpec]) -> list[list[TrainSpec]]:
    """Models that differ only in seed, in first-seen order: each group trains as one vmap."""
    groups: dict[str, list[TrainSpec]] = {}
    for spec in specs:
        options = {k: v for k, v in spec.model.options.items() if k != "seed"}
        key = json.dumps([spec.model.source, options, spec._replace(model=None)], sort_keys=True, default=str)
        groups.setdefault(key, []).append(spec)
    return list(groups.values())


# --- data -----------------------------------------------------------------------------------------


class _Split(NamedTuple):
    images: UInt8[Array, "stimuli height width 3"]
    labels: Int[Array, " stimuli"]
    num_classes: int


class _Data:
    """The training and held-out stimuli, opened only when a model needs training."""

    def __init__(self, source, heldout):
        self.source, self.heldout = source, heldout
        self.description = {"source": _describe(source), "heldout": _describe(heldout)}

    def opened(self) -> tuple[_Split, _Split]:
        train = _labelled(self.source, "source")
        if self.heldout is None:
            cut = len(train[0]) - max(1, len(train[0]) // 10)
            if cut < 1:
                raise ValueError("source: too few stimuli to hold out a tenth; give heldout")
            test = (train[0][cut:], train[1][cut:], train[2])
            train = (train[0][:cut], train[1][:cut], train[2])
        else:
            test = _labelled(self.heldout, "heldout")
        num_classes = max(train[2], test[2])
        return (_Split(jnp.asarray(train[0]), jnp.asarray(train[1]), num_classes),
                _Split(jnp.asarray(test[0]), jnp.asarray(test[1]), num_classes))


def _describe(source) -> str | None:
    if source is None or isinstance(source, str | os.PathLike):
        return None if source is None else str(source)
    return f"stimuli {source.source} ({source.fingerprint()})"


def _labelled(source, role: str) -> tuple[np.ndarray, np.ndarray, int]:
    from jaxagree.data.sources import open_stimuli

    stimuli = open_stimuli(source) if isinstance(source, str | os.PathLike) else source
    labels = stimuli.labels
    if labels is None or (labels < 0).any():
        raise ValueError(f"{role} {stimuli.source}: training needs a label for every stimulus")
    images = stimuli.read(range(len(stimuli)))
    num_classes = len(stimuli.categories) if stimuli.categories is not None else int(labels.max()) + 1
    return images, labels.astype(np.int32), num_classes


# --- training -------------------------------------------------------------------------------------


def _train_group(group: list[TrainSpec], train: _Split, test: _Split, folder: Path, bar) -> list[TrainResult]:
    """Train models that differ only in seed; save each; measure each."""
    architecture = group[0].model.source.removeprefix("native:").partition("/")[0]
    # vmap turns a convolution whose kernel differs per model into a grouped convolution, which
    # XLA:CPU runs ~5x slower per model than one model's (measured: 296 ms for a step of two conv
    # nets against 27 ms for one); attention and mixing layers are matrix products, which batch.
    lanes = 1 if architecture == "convnet" and jax.default_backend() == "cpu" else len(group)
    return [result for start in range(0, len(group), lanes)
            for result in _train_lanes(group[start : start + lanes], train, test, folder, bar)]


def _train_lanes(group: list[TrainSpec], train: _Split, test: _Split, folder: Path, bar) -> list[TrainResult]:
    """Train models that differ only in seed as one vmapped step (a plain step for one model)."""
    import optax

    start = time.perf_counter()
    first = group[0]
    architecture, _, variant = first.model.source.removeprefix("native:").partition("/")
    built = [build_native(architecture, variant, **native_arguments(spec.model.options)) for spec in group]
    models, preprocess = [model for model, _ in built], built[0][1]
    graphdef, _ = nnx.split(models[0])
    params = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[nnx.state(m) for m in models])
    # The rate is an argument of the step, not part of it: every budget shares one compiled step.
    schedule = optax.warmup_cosine_decay_schedule(0.0, first.learning_rate, max(1, first.steps // 20), first.steps,
                                                  end_value=first.learning_rate * 0.05)
    vmapped = len(group) > 1
    run = _step_function(graphdef, preprocess, first.batch_size, first.weight_decay, vmapped)
    opt_state = jax.vmap(_optimizer(first.weight_decay).init)(params)
    usable = jnp.int32(max(1, round(first.data_fraction * train.images.shape[0])))
    # Batches drawn from the seed (offset: not the initialisation's stream), the same on every run.
    keys = jnp.stack([jax.random.key(spec.model.options.get("seed", 0) + 1_000_003) for spec in group])
    # Every step's rate in one compiled call: evaluated eagerly, step by step, optax's schedule
    # dispatched ~30 small operations a step (23 s of a 75 s quick-zoo training, measured).
    rates = jax.jit(jax.vmap(schedule))(jnp.arange(first.steps))
    losses = []
    for index in range(first.steps):
        params, opt_state, loss = run(params, opt_state, keys, jnp.uint32(index), rates[index],
                                      usable, train.images, train.labels)
        losses.append(loss)
        bar.update(len(group))
    losses = np.asarray(jnp.stack(losses))  # [steps, models]
    window = max(1, min(_LOSS_WINDOW, first.steps // 4))  # short runs: windows that do not overlap
    first_loss, final_loss = losses[:window].mean(axis=0), losses[-window:].mean(axis=0)
    accuracy = _accuracy(graphdef, preprocess, params, test, vmapped)
    seconds = (time.perf_counter() - start) / len(group)
    results = []
    for number, (spec, model) in enumerate(zip(group, models)):
        nnx.update(model, jax.tree.map(lambda leaf, n=number: leaf[n], params))
        path = folder / spec.model.name
        weights.save_state(path, nnx.state(model))
        results.append(TrainResult(spec.model.name, spec.model.family, path, parameter_count(model),
                                   spec.model.options["num_classes"], spec.steps,
                                   spec.learning_rate, spec.data_fraction, spec.batch_size,
                                   float(accuracy[number]), float(first_loss[number]), float(final_loss[number]),
                                   seconds, False))
    return results


def _optimizer(weight_decay: float):
    """AdamW without its rate (applied in the step): clipped gradients, Adam, decoupled decay."""
    import optax

    return optax.chain(optax.clip_by_global_norm(1.0), optax.scale_by_adam(),
                       optax.add_decayed_weights(weight_decay))


def _stacked(function, vmapped: bool, in_axes: tuple):
    """``function`` over stacked models: vmapped, or on the one model of a stack of one."""
    if vmapped:
        return jax.vmap(function, in_axes=in_axes)

    def single(*args):
        args = [jax.tree.map(lambda leaf: leaf[0], a) if axis == 0 else a for a, axis in zip(args, in_axes)]
        return jax.tree.map(lambda leaf: leaf[None], function(*args))

    return single


@functools.lru_cache(maxsize=32)
def _step_function(graphdef, preprocess: Preprocess, batch_size: int, weight_decay: float, vmapped: bool):
    """A jitted ``(params, opt_state, keys, step, rate, usable, images, labels) -> (params,
    opt_state, losses)``: one AdamW step at ``rate`` for every model of the stacked ``params``,
    on a batch drawn from the first ``usable`` stimuli (one key per model, folded with the step
    number). Cached: models of one architecture share it, whatever their budget.

    One step per call, not a ``lax.scan`` of several: XLA:CPU runs a convolution inside a loop
    ~25x slower than the same convolution outside one (measured: 1.4 s against 60 ms a step)."""
    import optax

    tx = _optimizer(weight_decay)

    def loss_fn(params, images, labels):
        logits, _ = nnx.merge(graphdef, params)(preprocess_images(images, preprocess))
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    def one_model(params, opt_state, key, step, rate, usable, images, labels):
        batch = jax.random.randint(jax.random.fold_in(key, step), (batch_size,), 0, usable)
        loss, grads = jax.value_and_grad(loss_fn)(params, images[batch], labels[batch])
        updates, opt_state = tx.update(grads, opt_state, params)
        return jax.tree.map(lambda p, u: p - rate * u, params, updates), opt_state, loss

    return jax.jit(_stacked(one_model, vmapped, (0, 0, 0, None, None, None, None, None)), donate_argnums=(0, 1))


@functools.lru_cache(maxsize=32)
def _correct_function(graphdef, preprocess: Preprocess, vmapped: bool):
    """A jitted ``(params, images, labels, valid) -> [models]`` count of right answers."""

    def one(params, images, labels, valid):
        logits, _ = nnx.merge(graphdef, params)(preprocess_images(images, preprocess))
        return ((logits.argmax(-1) == labels) & valid).sum()

    return jax.jit(_stacked(one, vmapped, (0, None, None, None)))


def _accuracy(graphdef, preprocess: Preprocess, params, test: _Split, vmapped: bool) -> np.ndarray:
    """``[models]``: each stacked model's top-1 accuracy on the held-out split, in batches."""
    correct = _correct_function(graphdef, preprocess, vmapped)
    total = 0
    count = test.images.shape[0]
    for start in range(0, count, _EVAL_BATCH):
        images, labels = test.images[start : start + _EVAL_BATCH], test.labels[start : start + _EVAL_BATCH]
        pad = _EVAL_BATCH - images.shape[0]  # one compiled shape: the last batch padded and masked
        valid = jnp.arange(_EVAL_BATCH) < images.shape[0]
        images = jnp.pad(images, ((0, pad), (0, 0), (0, 0), (0, 0)))
        total = total + correct(params, images, jnp.pad(labels, (0, pad)), valid)
    return np.asarray(total) / count


# --- records and the zoo file ----------------------------------------------------------------------


def _config(spec: TrainSpec, description: dict) -> dict:
    """What a finished model must have been trained with to be reused."""
    return {"source": spec.model.source, "options": _options(spec), "budget": spec._replace(model=None)._asdict(),
            "data": description}


def _finished(folder: Path, name: str, config: dict) -> TrainResult | None:
    """The recorded result of a finished model trained as ``config`` asks; None otherwise."""
    try:
        record = json.loads((folder / f"{name}.json").read_text())
        weights.checkpoint_files(folder / name)
        result = TrainResult(**{**record["result"], "checkpoint": folder / name, "reused": True})
        wanted = json.loads(json.dumps(config, default=str))
        # num_classes, when not given, comes from the data: the generated zoo file, read back in,
        # gives it; either way the model is the same one.
        classes = wanted["options"].get("num_classes", result.num_classes)
        if _without_classes(record["config"]) != _without_classes(wanted) or classes != result.num_classes:
            return None
        return result
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _without_classes(config: dict) -> dict:
    return {**config, "options": {k: v for k, v in config["options"].items() if k != "num_classes"}}


def _write_record(folder: Path, name: str, config: dict, result: TrainResult) -> None:
    record = {"config": config,
              "result": {k: v for k, v in result._asdict().items() if k not in ("checkpoint", "reused")}}
    _atomic_write(folder / f"{name}.json", json.dumps(record, indent=1, sort_keys=True, default=str))


def _atomic_write(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _write_zoo(path: Path, specs: Sequence[TrainSpec], results: Sequence[TrainResult], data: dict) -> None:
    lines = [f"# Written by jaxagree.models.train.train_zoo: {len(specs)} models trained on {data['source']}.",
             "# Each model's weights are the orbax checkpoint its `checkpoint` names (relative to this file).", ""]
    for spec, result in zip(specs, results):
        options = {**_options(spec), "num_classes": result.num_classes}
        entry = {"name": spec.model.name, "source": spec.model.source, "family": spec.model.family, **options,
                 "checkpoint": f"{CHECKPOINTS}/{spec.model.name}"}
        metadata = {**spec.model.metadata, "parameters": result.parameters, "steps": result.steps,
                    "learning_rate": result.learning_rate, "data_fraction": result.data_fraction,
                    "batch_size": result.batch_size, "weight_decay": spec.weight_decay,
                    "heldout_accuracy": round(result.accuracy, 4), "train_seconds": round(result.seconds, 2),
                    "train_source": data["source"], "heldout_source": data["heldout"] or "the source's last tenth"}
        lines.append("[[model]]")
        lines += [f"{key} = {toml_value(value)}" for key, value in entry.items()]
        lines.append("[model.metadata]")
        lines += [f"{key} = {toml_value(value)}" for key, value in metadata.items()]
        lines.append("")
    _atomic_write(path, "\n".join(lines))


__all__ = ["CHECKPOINTS", "ZOO_FILE", "TrainResult", "TrainSpec", "train_zoo"]
