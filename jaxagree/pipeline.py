"""Extraction: every model of a zoo over a stimulus set, under ``jit`` across every device,
cached per model and resumable.

For each model the images go through the model's own preprocessing on the device (resize, centre
crop, normalise), then the model; batches are split over the devices of a mesh (data parallel,
``NamedSharding``), the last batch padded and its padding dropped. Each finished model is written
to the cache at once, so a run that is killed loses at most the model in progress.

Cache layout (plain ``.npy``, readable without jaxagree)::

    CACHE/STIMULUS_SET/MODEL/predictions.npy       int32 [stimuli], top-1 class (-1: a backbone)
    CACHE/STIMULUS_SET/MODEL/features-LAYER.npy    float32 [stimuli, dim], one per layer asked for
    CACHE/STIMULUS_SET/MODEL/entry.json            shapes, SHA-256 of each file, the model's key
    CACHE/STIMULUS_SET/MODEL/.lock                 held while a run reads, computes or writes the model

Several processes (``jax.distributed``): each process runs its share of the models (process
``i`` of ``P`` takes models ``i, i + P, ...``) on its own devices and writes them to the cache,
which must be on a file system all processes see; after a barrier every process reads the whole
zoo's results from it. Each model's entry is locked (``flock``) while a process reads, computes
or writes it: runs that share a cache (two extracts on one ``--out``) wait for each other per
model (with a warning naming the lock), first doing the models nobody holds; the kernel releases a
lock when its process ends, so a killed run leaves none behind.

Layers are named by the model (:attr:`jaxagree.models.LoadedModel.layers`); ``penultimate``
(the pooled input of the classification head) is the default. Asking for a layer that a cached
model lacks runs that model again and adds the layer to its entry.

Predictions within a label space (``label_space``, :mod:`jaxagree.data.labels`) are kept beside
the top-1 class as ``predictions-SPACE-DECISION.npy``; SPACE is a hash of the mapping.

Mid-set resume: while a model runs, what it has computed is written every ``checkpoint_seconds``
to ``MODEL/partial/START-STOP.npz`` (atomically); a rerun reads the stimuli from the first one
not yet done, through the source's random access, and the partial files go once the entry is
written.

``STIMULUS_SET`` is the source's fingerprint (a hash of the images for arrays; of the files,
their sizes and times for folders; of the split's files for TFDS; always with the image size),
so a different image set never reuses an entry. Within it an entry is keyed on what determines
the model's outputs (:mod:`jaxagree.pipeline_cache`): its source and options, the files its
weights and configuration come from, and jaxagree's preprocessing code. Files are written to a
temporary name and renamed into place, ``entry.json`` last: an entry is either complete or
absent. An entry whose files do not match ``entry.json`` (truncated, corrupted), or whose key
changed (a checkpoint saved again, other options), is recomputed with a warning saying why.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxagree import pipeline_cache as cache
from jaxagree.data.labels import DECISIONS, LabelSpace, decide, map_labels
from jaxagree.data.labels import label_space as resolve_label_space
from jaxagree.data.sources import ArrayStimuli, Stimuli
from jaxagree.models import LoadedModel, ModelSpec, Preprocess, load_model
from jaxagree.models.inventory import model_files

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
      mesh: device mesh for data parallelism (default: every local device when there are several).
      progress: show progress bars (images/s per model, models done for the zoo).
      label_space: predict within these categories (:func:`jaxagree.data.labels.label_space`:
        a shipped name or a mapping file) instead of the models' own classes.
      decision: ``max`` or ``mean`` probability over a category's classes (see
        :mod:`jaxagree.data.labels`).
      checkpoint_seconds: how often a running model's partial results are saved for a
        mid-set resume.
    """
    from tqdm.auto import tqdm

    if not isinstance(stimuli, Stimuli):
        stimuli = ArrayStimuli(stimuli)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
    if mesh is None and len(jax.local_devices()) > 1:
        mesh = Mesh(np.array(jax.local_devices()), ("batch",))
    devices = 1 if mesh is None else mesh.devices.size
    batch_size = -(-batch_size // devices) * devices
    layers = tuple(dict.fromkeys(layers))
    if not layers:
        raise ValueError("layers is empty; ask for at least one (e.g. 'penultimate')")
    set_dir = Path(cache_dir) / stimuli.fingerprint()
    num_stimuli = len(stimuli)
    spaces_by_classes: dict[int, LabelSpace | None] = {}  # a mapping file is read once per class count

    def space_for(spec: ModelSpec, known) -> LabelSpace | None:
        """The label space for a model, given its class count (an int, or a cached entry's); None
        without one, and for a backbone (no classes: its predictions stay -1)."""
        if label_space is None or known is None:
            return None
        num_classes = known if isinstance(known, int) else known.num_classes
        if num_classes == 0:
            return None
        if num_classes not in spaces_by_classes:
            try:
                spaces_by_classes[num_classes] = resolve_label_space(label_space, num_classes=num_classes)
            except ValueError as error:
                raise ValueError(f"model {spec.name!r}: {error}") from None
        return spaces_by_classes[num_classes]

    preprocessing = cache.code_digest(preprocess_images)

    def key_of(spec: ModelSpec, known: dict) -> dict:
        return cache.model_key(spec, model_files(spec), preprocessing, known)

    def cached_or_computed(spec: ModelSpec) -> tuple[cache.Entry, float | None]:
        """The model's entry, computed (with its rate) unless the cache has all it needs; the
        caller holds the entry's lock."""
        entry = set_dir / spec.name
        key = key_of(spec, cache.stored_files(entry))
        cached = cache.read_entry(entry, key, num_stimuli, spec.name)
        if cached is not None and set(_output_names(layers, space_for(spec, cached), decision)) <= set(cached.arrays):
            return cached, None
        loaded = load_model(spec)
        # Keyed on the files the loader used: a hub id is in the local cache now, and a checkpoint
        # saved again meanwhile must not be merged with the entry of the one before.
        loaded_key = key_of(spec, key["files"])
        if not cache.same_model(loaded_key, key):
            cached = None
        space = space_for(spec, loaded.num_classes)
        missing = [layer for layer in layers if cached is None or f"features-{layer}" not in cached.arrays]
        unknown = [layer for layer in missing if layer not in loaded.layers]
        if unknown:
            raise ValueError(f"model {spec.name!r} has no layer(s) {', '.join(map(repr, unknown))}; "
                             f"its layers: {', '.join(loaded.layers)}")
        start = time.perf_counter()
        computed, done_before = _run_model(loaded, stimuli, tuple(missing), batch_size, mesh, progress, space,
                                           decision, entry, loaded_key, checkpoint_seconds)
        rate = (num_stimuli - done_before) / (time.perf_counter() - start)
        if cached is not None:
            computed = computed._replace(arrays={**cached.arrays, **computed.arrays})
        cache.write_entry(entry, loaded_key, computed)
        return computed, rate

    processes, index = jax.process_count(), jax.process_index()
    results, rates = {}, {}
    mine = zoo[index::processes]
    with tqdm(total=len(mine), desc="zoo", unit="model", disable=not progress) as bar:
        busy = []  # held by another run on this cache: done after the others, when it is likely finished
        for spec in mine:
            with cache.locked(set_dir / spec.name, spec.name, wait=False) as held:
                if held:
                    results[spec.name], rates[spec.name] = cached_or_computed(spec)
                    bar.update()
                else:
                    busy.append(spec)
        for spec in busy:
            with cache.locked(set_dir / spec.name, spec.name, wait=True):
                results[spec.name], rates[spec.name] = cached_or_computed(spec)
                bar.update()
    if processes > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"jaxagree extract {set_dir.name}")
        for spec in zoo:
            if spec.name not in results:
                entry = set_dir / spec.name
                with cache.locked(entry, spec.name, wait=True):
                    key = key_of(spec, cache.stored_files(entry))
                    results[spec.name] = cache.read_entry(entry, key, num_stimuli, spec.name)
                rates[spec.name] = None
                found = results[spec.name]
                space = space_for(spec, found)
                if found is None or not set(_output_names(layers, space, decision)) <= set(found.arrays):
                    raise ValueError(f"model {spec.name!r}: another process's results are not in {set_dir}; "
                                     "with several processes the cache must be on a shared file system")
    ordered = [results[spec.name] for spec in zoo]
    spaces = [space_for(spec, r) for spec, r in zip(zoo, ordered)]
    predictions = np.stack([r.arrays[_prediction_name(s, decision)] for r, s in zip(ordered, spaces)])
    features = {layer: [r.arrays[f"features-{layer}"] for r in ordered] for layer in layers}
    return Extraction([s.name for s in zoo], predictions, features, [r.num_classes for r in ordered],
                      {s.name: rates[s.name] for s in zoo}, next((s for s in spaces if s is not None), None))


def _prediction_name(space: LabelSpace | None, decision: str) -> str:
    return "predictions" if space is None else f"predictions-{space.fingerprint()}-{decision}"


def _output_names(layers: Sequence[str], space: LabelSpace | None, decision: str) -> list[str]:
    names = ["predictions"] + ([_prediction_name(space, decision)] if space is not None else [])
    return names + [f"features-{layer}" for layer in layers]


def write_extraction(result: Extraction, stimuli: Stimuli, out: str | os.PathLike) -> list[Path]:
    """Write what ``jaxagree agreement`` and ``jaxagree cka`` read: ``OUT/predictions.npz``
    (models x stimuli, with the stimuli's ids, their labels in the predictions' categories, and
    the category names) and ``OUT/features/LAYER/MODEL.npy``. ``stimuli``: the source the
    result came from. Returns the paths.

    Labels are mapped by name into the predictions' categories (:func:`jaxagree.data.labels.map_labels`):
    with a label space, into its categories; for 1000-class models, into the ImageNet classes
    (a folder of WordNet-id sub-folders is labelled); a label that has no category there is -1."""
    from jaxagree.io import PredictionTable, save_predictions

    out = Path(out)
    space = result.label_space
    if space is None:
        predicting = {c for c in result.num_classes if c > 0}  # 0: a backbone, features only
        if len(predicting) > 1:
            sizes = ", ".join(f"{m}: {c}" for m, c in zip(result.models, result.num_classes))
            raise ValueError(f"models predict different numbers of classes ({sizes}); agreement needs one label "
                             "space: give one (--label-space) to map them onto common categories")
        num_classes = max(predicting, default=1)
        space = resolve_label_space("imagenet") if num_classes == 1000 else LabelSpace(
            "classes", [str(c) for c in range(num_classes)], np.eye(num_classes, dtype=bool), {})
    labels = map_labels(space, stimuli.labels, stimuli.categories)
    out.mkdir(parents=True, exist_ok=True)
    table = PredictionTable(result.predictions, labels, result.models, list(stimuli.ids), space.categories)
    written = [save_predictions(out / "predictions.npz", table)]
    for layer, arrays in result.features.items():
        folder = out / "features" / layer
        folder.mkdir(parents=True, exist_ok=True)
        for name, features in zip(result.models, arrays):
            written.append(folder / f"{name}.npy")
            np.save(written[-1], features, allow_pickle=False)
    return written


def _run_model(
    loaded: LoadedModel, stimuli: Stimuli, layers: tuple[str, ...], batch_size: int, mesh: Mesh | None,
    progress: bool, space: LabelSpace | None, decision: str, entry: Path, key: dict, checkpoint_seconds: float,
) -> tuple[cache.Entry, int]:
    """The model over every stimulus, resuming after its saved partial results (those of this
    ``key``); returns the entry and how many stimuli were already done."""
    from tqdm.auto import tqdm

    names = _output_names(layers, space, decision)
    run = _runner(loaded.forward, loaded.preprocess, layers, mesh, None if space is None else decision)
    data = None if mesh is None else NamedSharding(mesh, P(mesh.axis_names))
    replicate = (lambda x: x) if mesh is None else (lambda x: jax.device_put(x, NamedSharding(mesh, P())))
    params = replicate(loaded.params)
    extra = () if space is None else (replicate(jnp.asarray(space.members)),)
    partial = cache.Partial(entry / "partial", key, names)
    done_before, parts = partial.resume()  # what earlier runs saved; this run's parts are kept in memory too
    pending, last_save = [], time.monotonic()
    num_stimuli = len(stimuli)
    with tqdm(total=num_stimuli, initial=done_before, desc=loaded.spec.name, unit="img", leave=False,
              disable=not progress) as bar:
        for first, batch in stimuli.batches(batch_size, start=done_before):
            valid = batch.shape[0]
            if valid < batch_size:  # the last batch: padded to the compiled shape, padding dropped
                batch = np.concatenate([batch, np.zeros((batch_size - valid, *batch.shape[1:]), batch.dtype)])
            batch = jnp.asarray(batch) if data is None else jax.device_put(batch, data)
            pending.append((first, valid, run(params, batch, *extra)))
            bar.update(valid)
            if time.monotonic() - last_save >= checkpoint_seconds:
                parts.append(partial.save(names, pending))
                pending, last_save = [], time.monotonic()
    if pending:
        parts.append(partial.save(names, pending))
    arrays = {name: np.concatenate([part[name] for part in parts]) for name in names}
    return cache.Entry(arrays, loaded.num_classes), done_before


@functools.lru_cache(maxsize=64)
def _runner(forward, preprocess: Preprocess, layers: tuple[str, ...], mesh: Mesh | None, decision: str | None):
    """One jitted forward per (forward, preprocessing, layers, mesh, decision): models that
    share an architecture share the compiled function. Returns the top-1 class, the decision
    within a label space when ``decision`` is given (its ``members`` an argument), and the
    features of ``layers``, as one flat tuple."""

    def run(params, images, *members):
        logits, named = forward(params, preprocess_images(images, preprocess))
        features = tuple(named[layer].astype(jnp.float32) for layer in layers)
        if logits is None:  # a backbone: no predictions
            return (jnp.full(images.shape[:1], -1, jnp.int32), *features)
        top1 = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        mapped = () if decision is None else (decide(logits, members[0], decision=decision),)
        return (top1, *mapped, *features)

    if mesh is None:
        return jax.jit(run)
    data, replicated = NamedSharding(mesh, P(mesh.axis_names)), NamedSharding(mesh, P())
    inputs = (replicated, data) + (() if decision is None else (replicated,))
    return jax.jit(run, in_shardings=inputs, out_shardings=data)


def preprocess_images(images: jax.Array, preprocess: Preprocess) -> jax.Array:
    """uint8 ``[batch, h, w, 3]`` -> normalised float32 ``[batch, size, size, 3]``, as a Hugging
    Face image processor does it with PIL: resize (:class:`Preprocess` says to what and with which
    filter), centre crop, ``* rescale``, per-channel normalisation. Shapes are static, so this
    runs inside the model's ``jit``."""
    try:
        jax.image.ResizeMethod.from_string(preprocess.resample)
    except ValueError:
        raise ValueError(f"Preprocess.resample must be a jax.image.resize method such as 'linear', 'cubic', "
                         f"'lanczos3' or 'nearest', got {preprocess.resample!r}") from None
    size = preprocess.size
    height, width = images.shape[1:3]
    resized_h, resized_w = _resized_shape(height, width, preprocess)
    x = images.astype(jnp.float32)
    # PIL resizes width first, then height, and clips each pass to the 8-bit range (cubic and
    # lanczos overshoot at edges): the same order and clips keep bicubic within rounding of it.
    if resized_w != width:
        x = _resample_axis(x, 2, resized_w, preprocess.resample)
    if resized_h != height:
        x = _resample_axis(x, 1, resized_h, preprocess.resample)
    top, left = (resized_h - size) // 2, (resized_w - size) // 2
    x = x[:, top : top + size, left : left + size] * preprocess.rescale
    return (x - jnp.asarray(preprocess.mean)) / jnp.asarray(preprocess.std)


def _resized_shape(height: int, width: int, preprocess: Preprocess) -> tuple[int, int]:
    """The (height, width) an image is resized to before the centre crop."""
    short = max(preprocess.size, round(preprocess.size / preprocess.crop_fraction))
    if preprocess.resize == "square":
        return short, short
    if preprocess.resize != "shorter_side":
        raise ValueError(f"Preprocess.resize must be 'shorter_side' or 'square', got {preprocess.resize!r}")
    # The longer side truncated, as transformers' get_resize_output_image_size and torchvision's
    # Resize do (in integers: int(short * long / shorter) without a float rounding up).
    if height <= width:
        return short, short * width // height
    return short * height // width, short


def _resample_axis(x: jax.Array, axis: int, length: int, method: str) -> jax.Array:
    shape = x.shape[:axis] + (length,) + x.shape[axis + 1 :]
    return jnp.clip(jax.image.resize(x, shape, method=method, antialias=True), 0.0, 255.0)


__all__ = [
    "DEFAULT_LAYERS", "Extraction", "extract", "preprocess_images", "write_extraction",
]
