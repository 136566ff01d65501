"""The extraction loop: every model of a zoo over a stimulus set, each one served from the cache
(:mod:`jaxagree.pipeline.cache`) or run (:mod:`jaxagree.pipeline.runner`) and written to it; the
package's docstring describes the cache."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh

from jaxagree.data.labels import DECISIONS, LabelSpace
from jaxagree.data.labels import label_space as resolve_label_space
from jaxagree.data.sources import ArrayStimuli, Stimuli
from jaxagree.models import LoadedModel, ModelSpec, load_model
from jaxagree.models import preprocess as preprocessing
from jaxagree.models.inventory import model_files
from jaxagree.pipeline import cache
from jaxagree.pipeline.keys import code_digest, model_key, same_model, stored_files
from jaxagree.pipeline.runner import RunSettings, run_model
from jaxagree.sharding import stimulus_mesh

DEFAULT_LAYERS = ("penultimate",)


class Extraction(NamedTuple):
    """What :func:`extract` returns.

    Attributes:
      models: model names, in zoo order.
      predictions: ``int32 [models, stimuli]`` top-1 class of each model, or with a label space
        its category there (-1: a backbone, which has no predictions).
      features: for each layer asked for, one ``float32 [stimuli, dim_m]`` array per model.
      num_classes: per model, the number of classes its outputs have.
      images_per_second: per model, the rate of this run (None where the cache had it).
      label_space: the label space of ``predictions``, or None for the models' own classes.
    """

    models: list[str]
    predictions: np.ndarray
    features: dict[str, list[np.ndarray]]
    num_classes: list[int]
    images_per_second: dict[str, float | None]
    label_space: LabelSpace | None = None


def extract(
    zoo: Sequence[ModelSpec],
    stimuli: Stimuli | np.ndarray,
    *,
    cache_dir: str | os.PathLike,
    layers: Sequence[str] = DEFAULT_LAYERS,
    batch_size: int = 128,
    mesh: Mesh | None = None,
    progress: bool = True,
    label_space: LabelSpace | str | None = None,
    decision: str = "max",
    checkpoint_seconds: float = 60.0,
) -> Extraction:
    """Predictions and features of every model of ``zoo`` on ``stimuli``, cached per model.

    Args:
      zoo: inventory entries (:func:`jaxagree.models.read_zoo`).
      stimuli: a source (:func:`jaxagree.data.open_stimuli`) or ``uint8 [stimuli, height, width, 3]``.
      cache_dir: where finished models are kept; a rerun skips them.
      layers: the layers whose pooled features to keep (see each model's ``layers``).
      batch_size: images per step over all devices (rounded up to a multiple of the devices).
      mesh: device mesh for data parallelism (default: :func:`jaxagree.sharding.stimulus_mesh`
        over every local device when there are several).
      progress: show progress bars (images/s per model, models done for the zoo).
      label_space: predict within these categories (:func:`jaxagree.data.labels.label_space`:
        a shipped name or a mapping file) instead of the models' own classes.
      decision: ``max`` or ``mean`` probability over a category's classes (see
        :mod:`jaxagree.data.labels`).
      checkpoint_seconds: how often a running model's partial results are saved for a
        mid-set resume.
    """
    plan = _plan(stimuli, cache_dir=cache_dir, layers=layers, batch_size=batch_size, mesh=mesh, progress=progress,
                 label_space=label_space, decision=decision, checkpoint_seconds=checkpoint_seconds)
    found, rates = _run_own_share(zoo[jax.process_index() :: jax.process_count()], plan)
    if jax.process_count() > 1:
        found.update(_read_the_others(zoo, plan, done=found.keys()))
    return _assemble(zoo, found, rates, plan)


class _LabelSpaces:
    """Each model's label space, by its class count: a mapping file is read once per count."""

    def __init__(self, requested: LabelSpace | str | None):
        self.requested, self.by_classes = requested, {}

    def of(self, spec: ModelSpec, num_classes: int | None) -> LabelSpace | None:
        """None without a label space, for an unknown class count, and for a backbone (no
        classes: its predictions stay -1)."""
        if self.requested is None or not num_classes:
            return None
        if num_classes not in self.by_classes:
            try:
                self.by_classes[num_classes] = resolve_label_space(self.requested, num_classes=num_classes)
            except ValueError as error:
                raise ValueError(f"model {spec.name!r}: {error}") from None
        return self.by_classes[num_classes]


class _Plan(NamedTuple):
    """What every model of one :func:`extract` call shares."""

    stimuli: Stimuli
    set_dir: Path  # the stimulus set's folder in the cache
    layers: tuple[str, ...]
    decision: str
    spaces: _LabelSpaces
    preprocessing: str  # digest of the preprocessing code, part of every key
    run: RunSettings


def _plan(stimuli: Stimuli | np.ndarray, *, cache_dir: str | os.PathLike, layers: Sequence[str], batch_size: int,
          mesh: Mesh | None, progress: bool, label_space: LabelSpace | str | None, decision: str,
          checkpoint_seconds: float) -> _Plan:
    """The arguments checked, and what they fix for every model."""
    if not isinstance(stimuli, Stimuli):
        stimuli = ArrayStimuli(stimuli)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
    layers = tuple(dict.fromkeys(layers))
    if not layers:
        raise ValueError("layers is empty; ask for at least one (e.g. 'penultimate')")
    if mesh is None and len(jax.local_devices()) > 1:
        mesh = stimulus_mesh(jax.local_devices())
    devices = 1 if mesh is None else mesh.devices.size
    settings = RunSettings(-(-batch_size // devices) * devices, mesh, progress, checkpoint_seconds)
    return _Plan(stimuli, Path(cache_dir) / stimuli.fingerprint(), layers, decision, _LabelSpaces(label_space),
                 code_digest(preprocessing.preprocess_images), settings)


def _run_own_share(specs: Sequence[ModelSpec], plan: _Plan) -> tuple[dict[str, cache.Entry], dict[str, float | None]]:
    """This process's models, each served from the cache or run while its lock is held; the
    rate of each run (None where the cache had the model)."""
    from tqdm.auto import tqdm

    found, rates = {}, {}
    with tqdm(total=len(specs), desc="zoo", unit="model", disable=not plan.run.progress) as bar:
        for spec in _locked_in_turn(specs, plan.set_dir):
            found[spec.name], rates[spec.name] = _cached_or_computed(spec, plan)
            bar.update()
    return found, rates


def _locked_in_turn(specs: Sequence[ModelSpec], set_dir: Path) -> Iterator[ModelSpec]:
    """Each model while its lock is held: first those no other run holds, then the others,
    waiting for each (likely finished by then, and served from the cache)."""
    busy = []
    for spec in specs:
        with cache.locked(set_dir / spec.name, spec.name, wait=False) as held:
            if held:
                yield spec
            else:
                busy.append(spec)
    for spec in busy:
        with cache.locked(set_dir / spec.name, spec.name, wait=True):
            yield spec


def _cached_or_computed(spec: ModelSpec, plan: _Plan) -> tuple[cache.Entry, float | None]:
    """The model's entry, and the rate of its run; the cached entry as it is (rate None) when it
    has every output asked for. The caller holds the entry's lock."""
    folder = plan.set_dir / spec.name
    key = _key(spec, plan, stored_files(folder))
    cached = cache.read_entry(folder, key, len(plan.stimuli), spec.name)
    if cache.complete(cached, _needed(spec, cached, plan)):
        return cached, None
    loaded = load_model(spec)
    # Keyed on the files the loader used: a hub id is in the local cache now, and a checkpoint
    # saved again meanwhile must not be merged with the entry of the one before.
    loaded_key = _key(spec, plan, key["files"])
    if not same_model(loaded_key, key):
        cached = None
    layers = _missing_layers(spec, loaded, cached, plan.layers)
    space = plan.spaces.of(spec, loaded.num_classes)
    partial = cache.Partial(folder / "partial", loaded_key, cache.output_names(layers, space, plan.decision))
    computed = run_model(loaded, plan.stimuli, layers, space, plan.decision, partial, plan.run)
    entry = computed.entry
    if cached is not None:  # the layers it had, with those just computed
        entry = entry._replace(arrays={**cached.arrays, **entry.arrays})
    cache.write_entry(folder, loaded_key, entry)
    return entry, computed.images_per_second


def _key(spec: ModelSpec, plan: _Plan, known: dict) -> dict:
    return model_key(spec, model_files(spec), plan.preprocessing, known)


def _needed(spec: ModelSpec, entry: cache.Entry | None, plan: _Plan) -> list[str]:
    """The arrays asked of the model's entry (its label space follows its class count)."""
    space = plan.spaces.of(spec, None if entry is None else entry.num_classes)
    return cache.output_names(plan.layers, space, plan.decision)


def _missing_layers(spec: ModelSpec, loaded: LoadedModel, cached: cache.Entry | None,
                    layers: tuple[str, ...]) -> tuple[str, ...]:
    """The layers to compute (those the cached entry lacks); each must be one of the model's."""
    missing = tuple(layer for layer in layers if cached is None or cache.feature_name(layer) not in cached.arrays)
    unknown = [layer for layer in missing if layer not in loaded.layers]
    if unknown:
        raise ValueError(f"model {spec.name!r} has no layer(s) {', '.join(map(repr, unknown))}; "
                         f"its layers: {', '.join(loaded.layers)}")
    return missing


def _read_the_others(zoo: Sequence[ModelSpec], plan: _Plan, *, done: Collection[str]) -> dict[str, cache.Entry]:
    """After every process has run its share: the models of the others, from the shared cache."""
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(f"jaxagree extract {plan.set_dir.name}")
    found = {}
    for spec in (spec for spec in zoo if spec.name not in done):
        folder = plan.set_dir / spec.name
        with cache.locked(folder, spec.name, wait=True):
            entry = cache.read_entry(folder, _key(spec, plan, stored_files(folder)), len(plan.stimuli), spec.name)
        if not cache.complete(entry, _needed(spec, entry, plan)):
            raise ValueError(f"model {spec.name!r}: another process's results are not in {plan.set_dir}; "
                             "with several processes the cache must be on a shared file system")
        found[spec.name] = entry
    return found


def _assemble(zoo: Sequence[ModelSpec], found: dict[str, cache.Entry], rates: dict[str, float | None],
              plan: _Plan) -> Extraction:
    """The entries in zoo order, as one :class:`Extraction`."""
    entries = [found[spec.name] for spec in zoo]
    spaces = [plan.spaces.of(spec, entry.num_classes) for spec, entry in zip(zoo, entries)]
    predictions = np.stack([e.arrays[cache.prediction_name(s, plan.decision)] for e, s in zip(entries, spaces)])
    features = {layer: [e.arrays[cache.feature_name(layer)] for e in entries] for layer in plan.layers}
    return Extraction([spec.name for spec in zoo], predictions, features, [e.num_classes for e in entries],
                      {spec.name: rates.get(spec.name) for spec in zoo},
                      next((space for space in spaces if space is not None), None))


__all__ = ["DEFAULT_LAYERS", "Extraction", "extract"]
