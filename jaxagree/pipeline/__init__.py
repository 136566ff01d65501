"""Extraction: every model of a zoo over a stimulus set, under ``jit`` across every device,
cached per model and resumable.

For each model the images go through the model's own preprocessing on the device (resize, centre
crop, normalise), then the model; batches are split over the devices of a mesh (data parallel,
``NamedSharding``, :func:`jaxagree.sharding.stimulus_mesh` by default), the last batch padded
and its padding dropped. Each finished model is written to the cache at once, so a run that is
killed loses at most the model in progress.

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
the model's outputs (:mod:`jaxagree.pipeline.keys`): its source and options, the files its
weights and configuration come from, and jaxagree's preprocessing code. Files are written to a
temporary name and renamed into place, ``entry.json`` last: an entry is either complete or
absent. An entry whose files do not match ``entry.json`` (truncated, corrupted), or whose key
changed (a checkpoint saved again, other options), is recomputed with a warning saying why.

Why plain ``.npy`` files and not orbax-checkpoint: :mod:`jaxagree.pipeline.cache`.

Modules: :mod:`~jaxagree.pipeline.loop` (:func:`extract`: each model from the cache or run),
:mod:`~jaxagree.pipeline.runner` (the jitted forward over batches, resumable),
:mod:`~jaxagree.pipeline.cache` (entries, partial results, locks), :mod:`~jaxagree.pipeline.keys`
(what an entry is keyed on) and :mod:`~jaxagree.pipeline.outputs` (:func:`write_extraction`).
"""

from jaxagree.models.preprocess import preprocess_images
from jaxagree.pipeline.loop import DEFAULT_LAYERS, Extraction, extract
from jaxagree.pipeline.outputs import write_extraction

__all__ = ["DEFAULT_LAYERS", "Extraction", "extract", "preprocess_images", "write_extraction"]
