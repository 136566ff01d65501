"""Extraction: every model of a zoo over a stimulus set, under ``jit`` across every device,
cached per model and resumable.

For each model the images go through the model's own preprocessing on the device (resize, centre
crop, normalise), then the model; batches are split over the devices of a mesh (data parallel,
``NamedSharding``), the last batch padded and its padding dropped. Each finished model is written
to the cache at once, so a run that is killed loses at most the model in progress.

Cache layout (plain ``.npy``, readable without jaxagree)::

    CACHE/STIMULUS_SET/MODEL/predictions.npy       int32 [stimuli], top-1 class (-1: a backbone)
    CACHE/STIMULUS_SET/MODEL/features-LAYER.npy    float32 [stimuli, dim], one per layer asked for
    CACHE/STIMULUS_SET/MODEL/entry.json            shapes, SHA-256 of each file, the model's source

Several processes (``jax.distributed``): each process runs its share of the models (process
``i`` of ``P`` takes models ``i, i + P, ...``) on its own devices and writes them to the cache,
which must be on a file system all processes see; after a barrier every process reads the whole
zoo's results from it.

Layers are named by the model (:attr:`jaxagree.models.LoadedModel.layers`); ``penultimate``
(the pooled input of the classification head) is the default. Asking for a layer that a cached
model lacks runs that model again and adds the layer to its entry.

``STIMULUS_SET`` is a hash of the images, so a different image set never reuses an entry. Files
are written to a temporary name and renamed into place, ``entry.json`` last: an entry is either
complete or absent. An entry whose files do not match ``entry.json`` (truncated, corrupted, or
from a model whose source or options changed) is recomputed with a warning.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxagree.models import LoadedModel, ModelSpec, Preprocess, load_model

DEFAULT_LAYERS = ("penultimate",)


class Extraction(NamedTuple):
    """What :func:`extract` returns.

    Attributes:
      models: model names, in zoo order.
      predictions: ``int32 [models, stimuli]`` top-1 class of each model.
      features: for each layer asked for, one ``float32 [stimuli, dim_m]`` array per model.
      num_classes: per model, the number of classes its predictions index.
      images_per_second: per model, the rate of this run (None where the cache had it).
    """

    models: list[str]
    predictions: np.ndarray
    features: dict[str, list[np.ndarray]]
    num_classes: list[int]
    images_per_second: dict[str, float | None]


def stimulus_set_id(images: np.ndarray) -> str:
    """A short stable hash of an image array (shape, dtype and bytes)."""
    digest = hashlib.sha256(f"{images.shape}{images.dtype}".encode())
    flat = np.ascontiguousarray(images).reshape(-1).view(np.uint8)
    for start in range(0, flat.size, 1 << 26):
        digest.update(flat[start : start + (1 << 26)])
    return digest.hexdigest()[:16]


def check_images(images) -> np.ndarray:
    """uint8 ``[stimuli, height, width, 3]`` or a clear error."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must have shape [stimuli, height, width, 3], got {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (0-255), got dtype {images.dtype}")
    if images.shape[0] == 0:
        raise ValueError("images is empty (0 stimuli)")
    return images


def extract(
    zoo: Sequence[ModelSpec],
    images: np.ndarray,
    *,
    cache_dir: str | os.PathLike,
    layers: Sequence[str] = DEFAULT_LAYERS,
    batch_size: int = 128,
    mesh: Mesh | None = None,
    progress: bool = True,
) -> Extraction:
    """Predictions and features of every model of ``zoo`` on ``images``, cached per model.

    Args:
      zoo: inventory entries (:func:`jaxagree.models.read_zoo`).
      images: ``uint8 [stimuli, height, width, 3]``.
      cache_dir: where finished models are kept; a rerun skips them.
      layers: the layers whose pooled features to keep (see each model's ``layers``).
      batch_size: images per step over all devices (rounded up to a multiple of the devices).
      mesh: device mesh for data parallelism (default: every local device when there are several).
      progress: show progress bars (images/s per model, models done for the zoo).
    """
    from tqdm.auto import tqdm

    images = check_images(images)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if mesh is None and len(jax.local_devices()) > 1:
        mesh = Mesh(np.array(jax.local_devices()), ("batch",))
    devices = 1 if mesh is None else mesh.devices.size
    batch_size = -(-batch_size // devices) * devices
    layers = tuple(dict.fromkeys(layers))
    if not layers:
        raise ValueError("layers is empty; ask for at least one (e.g. 'penultimate')")
    set_dir = Path(cache_dir) / stimulus_set_id(images)
    processes, index = jax.process_count(), jax.process_index()
    results, rates = {}, {}
    for spec in tqdm(zoo[index::processes], desc="zoo", unit="model", disable=not progress):
        entry = set_dir / spec.name
        cached = _read_entry(entry, spec, images.shape[0])
        missing = [layer for layer in layers if cached is None or layer not in cached.features]
        if missing:
            loaded = load_model(spec)
            unknown = [layer for layer in missing if layer not in loaded.layers]
            if unknown:
                raise ValueError(f"model {spec.name!r} has no layer(s) {', '.join(map(repr, unknown))}; "
                                 f"its layers: {', '.join(loaded.layers)}")
            start = time.perf_counter()
            computed = _run_model(loaded, images, tuple(missing), batch_size, mesh, progress)
            rates[spec.name] = images.shape[0] / (time.perf_counter() - start)
            if cached is not None:
                computed = computed._replace(features={**cached.features, **computed.features})
            _write_entry(entry, spec, computed)
            cached = computed
        else:
            rates[spec.name] = None
        results[spec.name] = cached
    if processes > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"jaxagree extract {set_dir.name}")
        for spec in zoo:
            if spec.name not in results:
                results[spec.name] = _read_entry(set_dir / spec.name, spec, images.shape[0])
                rates[spec.name] = None
                if results[spec.name] is None or not set(layers) <= set(results[spec.name].features):
                    raise ValueError(f"model {spec.name!r}: another process's results are not in {set_dir}; "
                                     "with several processes the cache must be on a shared file system")
    ordered = [results[spec.name] for spec in zoo]
    features = {layer: [r.features[layer] for r in ordered] for layer in layers}
    return Extraction([s.name for s in zoo], np.stack([r.predictions for r in ordered]), features,
                      [r.num_classes for r in ordered], {s.name: rates[s.name] for s in zoo})


class _Entry(NamedTuple):
    """One model's results on one stimulus set."""

    predictions: np.ndarray
    features: dict[str, np.ndarray]
    num_classes: int


def write_extraction(result: Extraction, stimuli, out: str | os.PathLike) -> list[Path]:
    """Write what ``jaxagree agreement`` and ``jaxagree cka`` read: ``OUT/predictions.npz``
    (models x stimuli, with the stimuli's ids and labels) and ``OUT/features/LAYER/MODEL.npy``.
    ``stimuli``: the :class:`jaxagree.io.ImageSet` the result came from. Returns the paths."""
    from jaxagree.io import PredictionTable, save_predictions

    out = Path(out)
    predicting = {c for c in result.num_classes if c > 0}  # 0: a backbone, features only
    if len(predicting) > 1:
        sizes = ", ".join(f"{m}: {c}" for m, c in zip(result.models, result.num_classes))
        raise ValueError(f"models predict different numbers of classes ({sizes}); agreement needs one label space")
    categories = [str(c) for c in range(max(predicting, default=1))]
    out.mkdir(parents=True, exist_ok=True)
    table = PredictionTable(result.predictions, stimuli.labels, result.models, stimuli.ids, categories)
    written = [save_predictions(out / "predictions.npz", table)]
    for layer, arrays in result.features.items():
        folder = out / "features" / layer
        folder.mkdir(parents=True, exist_ok=True)
        for name, features in zip(result.models, arrays):
            written.append(folder / f"{name}.npy")
            np.save(written[-1], features, allow_pickle=False)
    return written


def _run_model(
    loaded: LoadedModel, images: np.ndarray, layers: tuple[str, ...], batch_size: int, mesh: Mesh | None,
    progress: bool,
) -> _Entry:
    from tqdm.auto import tqdm

    run = _runner(loaded.forward, loaded.preprocess, layers, mesh)
    data = None if mesh is None else NamedSharding(mesh, P(mesh.axis_names))
    params = loaded.params if mesh is None else jax.device_put(loaded.params, NamedSharding(mesh, P()))
    outputs = []
    num_stimuli = images.shape[0]
    with tqdm(total=num_stimuli, desc=loaded.spec.name, unit="img", leave=False, disable=not progress) as bar:
        for start in range(0, num_stimuli, batch_size):
            batch = images[start : start + batch_size]
            valid = batch.shape[0]
            if valid < batch_size:  # the last batch: padded to the compiled shape, padding dropped
                batch = np.concatenate([batch, np.zeros((batch_size - valid, *batch.shape[1:]), batch.dtype)])
            batch = jnp.asarray(batch) if data is None else jax.device_put(batch, data)
            outputs.append((*run(params, batch), valid))
            bar.update(valid)
    top1 = np.concatenate([np.asarray(t)[:v] for t, _, v in outputs]).astype(np.int32)
    features = {
        layer: np.concatenate([np.asarray(f[i])[:v] for _, f, v in outputs]).astype(np.float32)
        for i, layer in enumerate(layers)
    }
    return _Entry(top1, features, loaded.num_classes)


@functools.lru_cache(maxsize=64)
def _runner(forward, preprocess: Preprocess, layers: tuple[str, ...], mesh: Mesh | None):
    """One jitted forward per (forward, preprocessing, layers, mesh): models that share an
    architecture share the compiled function."""

    def run(params, images):
        logits, named = forward(params, preprocess_images(images, preprocess))
        features = tuple(named[layer].astype(jnp.float32) for layer in layers)
        if logits is None:  # a backbone: no predictions
            return jnp.full(images.shape[:1], -1, jnp.int32), features
        return jnp.argmax(logits, axis=-1).astype(jnp.int32), features

    if mesh is None:
        return jax.jit(run)
    data, replicated = NamedSharding(mesh, P(mesh.axis_names)), NamedSharding(mesh, P())
    return jax.jit(run, in_shardings=(replicated, data), out_shardings=(data, data))


def preprocess_images(images: jax.Array, preprocess: Preprocess) -> jax.Array:
    """uint8 ``[batch, h, w, 3]`` -> normalised float32 ``[batch, size, size, 3]``: the shorter
    side resized to ``size / crop_fraction`` (antialiased bilinear), centre crop, per-channel
    normalisation. Shapes are static, so this runs inside the model's ``jit``."""
    size = preprocess.size
    height, width = images.shape[1:3]
    short = max(size, round(size / preprocess.crop_fraction))
    scale = short / min(height, width)
    resized_h, resized_w = max(size, round(height * scale)), max(size, round(width * scale))
    x = images.astype(jnp.float32) / 255.0
    if (resized_h, resized_w) != (height, width):
        x = jax.image.resize(x, (x.shape[0], resized_h, resized_w, 3), method="bilinear", antialias=True)
    top, left = (resized_h - size) // 2, (resized_w - size) // 2
    x = x[:, top : top + size, left : left + size]
    return (x - jnp.asarray(preprocess.mean)) / jnp.asarray(preprocess.std)


def _fingerprint(spec: ModelSpec) -> dict:
    return {"source": spec.source, "options": spec.options}


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _read_entry(entry: Path, spec: ModelSpec, num_stimuli: int) -> _Entry | None:
    """A model's cached results (the layers its entry has), or None to compute them (with a
    warning when an entry exists but cannot be trusted)."""
    manifest_path = entry / "entry.json"
    if not manifest_path.exists():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("model") != _fingerprint(spec):
            raise ValueError("the model's source or options changed")
        arrays = {}
        for name, record in manifest["files"].items():
            path = entry / f"{name}.npy"
            data = path.read_bytes()  # read once: checked, then parsed from memory
            if hashlib.sha256(data).hexdigest() != record["sha256"]:
                raise ValueError(f"{path.name} does not match its checksum")
            array = np.load(io.BytesIO(data), allow_pickle=False)
            if array.shape[0] != num_stimuli:
                raise ValueError(f"{path.name} has {array.shape[0]} stimuli, expected {num_stimuli}")
            arrays[name] = array
        features = {name.removeprefix("features-"): a for name, a in arrays.items() if name.startswith("features-")}
        return _Entry(arrays["predictions"], features, int(manifest["num_classes"]))
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as error:
        warnings.warn(f"cache entry {entry} cannot be used ({error}); recomputing model {spec.name!r}",
                      RuntimeWarning, stacklevel=3)
        return None


def _write_entry(entry: Path, spec: ModelSpec, result: _Entry) -> None:
    entry.mkdir(parents=True, exist_ok=True)
    (entry / "entry.json").unlink(missing_ok=True)  # the entry is incomplete until the manifest is back
    arrays = {"predictions": result.predictions, **{f"features-{k}": v for k, v in result.features.items()}}
    files = {}
    for name, array in arrays.items():
        data = _npy_bytes(array)
        _atomic_write(entry / f"{name}.npy", data)
        digest = hashlib.sha256(data).hexdigest()
        files[name] = {"shape": list(array.shape), "dtype": str(array.dtype), "sha256": digest}
    manifest = {"model": _fingerprint(spec), "num_classes": result.num_classes, "files": files}
    _atomic_write(entry / "entry.json", json.dumps(manifest, indent=2).encode())


def _atomic_write(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


__all__ = [
    "DEFAULT_LAYERS", "Extraction", "check_images", "extract", "preprocess_images", "stimulus_set_id",
    "write_extraction",
]
