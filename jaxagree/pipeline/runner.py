"""The runner: one model over every stimulus under ``jit``, batches split over a mesh (data
parallel, ``NamedSharding``), the last batch padded to the compiled shape and its padding
dropped, what is done saved every ``checkpoint_seconds`` so that a rerun resumes after it."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jaxagree.data.labels import LabelSpace, decide
from jaxagree.data.sources import Stimuli
from jaxagree.models import LoadedModel, Preprocess
from jaxagree.models import preprocess as preprocessing
from jaxagree.pipeline.cache import Entry, Partial, output_names
from jaxagree.sharding import pad_rows, replicated, split_rows


class RunSettings(NamedTuple):
    """How every model of a zoo runs.

    Attributes:
      batch_size: images per step over all devices, a multiple of the mesh's devices.
      mesh: the devices a batch is split over (None: the default device).
      progress: show a progress bar (images/s) per model.
      checkpoint_seconds: how often what is done is saved for a mid-set resume.
    """

    batch_size: int
    mesh: Mesh | None
    progress: bool
    checkpoint_seconds: float


class Computed(NamedTuple):
    """A model's entry (its outputs on every stimulus), and the rate of this run over the
    stimuli it computed (those saved by an earlier run not counted)."""

    entry: Entry
    images_per_second: float


def run_model(loaded: LoadedModel, stimuli: Stimuli, layers: tuple[str, ...], space: LabelSpace | None,
              decision: str, partial: Partial, settings: RunSettings) -> Computed:
    """The model's predictions (and, with ``space``, its ``decision`` there) and the features of
    ``layers`` on every stimulus, resuming after what ``partial`` holds."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    names = output_names(layers, space, decision)
    run = runner(loaded.forward, loaded.preprocess, layers, settings.mesh, None if space is None else decision)
    arguments = _placed(loaded.params, space, settings.mesh)
    done_before, parts = partial.resume()  # what earlier runs saved; this run's parts are kept in memory too
    pending, last_save = [], time.monotonic()
    with tqdm(total=len(stimuli), initial=done_before, desc=loaded.spec.name, unit="img", leave=False,
              disable=not settings.progress) as bar:
        for first, batch, valid in _device_batches(stimuli, done_before, settings.batch_size, settings.mesh):
            pending.append((first, valid, run(batch, *arguments)))
            bar.update(valid)
            if time.monotonic() - last_save >= settings.checkpoint_seconds:
                parts.append(partial.save(names, pending))
                pending, last_save = [], time.monotonic()
    if pending:
        parts.append(partial.save(names, pending))
    arrays = {name: np.concatenate([part[name] for part in parts]) for name in names}
    rate = (len(stimuli) - done_before) / (time.perf_counter() - start)
    return Computed(Entry(arrays, loaded.num_classes), rate)


def _placed(params, space: LabelSpace | None, mesh: Mesh | None) -> tuple:
    """The arguments every batch shares, on every device: the weights, and a label space's
    ``members [categories, classes]`` table."""
    shared = (params,) if space is None else (params, jnp.asarray(space.members))
    return shared if mesh is None else jax.device_put(shared, replicated(mesh))


def _device_batches(stimuli: Stimuli, start: int, batch_size: int,
                    mesh: Mesh | None) -> Iterator[tuple[int, jax.Array, int]]:
    """``(first stimulus, uint8 [batch_size, h, w, 3] on the devices, real rows)`` from stimulus
    ``start`` on: one compiled shape for every batch, the last one padded."""
    for first, batch in stimuli.batches(batch_size, start=start):
        padded = pad_rows(batch, batch_size)
        rows = jnp.asarray(padded.rows) if mesh is None else jax.device_put(padded.rows, split_rows(mesh))
        yield first, rows, padded.valid


@functools.lru_cache(maxsize=64)
def runner(forward, preprocess: Preprocess, layers: tuple[str, ...], mesh: Mesh | None, decision: str | None):
    """One jitted forward per (forward, preprocessing, layers, mesh, decision): models that
    share an architecture share the compiled function. Returns the top-1 class, the decision
    within a label space when ``decision`` is given (its ``members`` an argument), and the
    features of ``layers``, as one flat tuple."""

    def run(images, params, *members):
        # Looked up when traced: the function the cache key digests is the one that runs.
        logits, named = forward(params, preprocessing.preprocess_images(images, preprocess))
        features = tuple(named[layer].astype(jnp.float32) for layer in layers)
        if logits is None:  # a backbone: no predictions
            return (jnp.full(images.shape[:1], -1, jnp.int32), *features)
        top1 = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        mapped = () if decision is None else (decide(logits, members[0], decision=decision),)
        return (top1, *mapped, *features)

    if mesh is None:
        return jax.jit(run)
    inputs = (split_rows(mesh), replicated(mesh)) + (() if decision is None else (replicated(mesh),))
    return jax.jit(run, in_shardings=inputs, out_shardings=split_rows(mesh))


__all__ = ["Computed", "RunSettings", "run_model", "runner"]
