"""``cka --distributed``: each process streams its block of every model's features through the
exact streaming state; the states are summed over processes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxagree.distributed._processes import (
    check_same_input,
    names_checksum,
    process_block,
    process_status,
    process_sum,
)
from jaxagree.distributed._rows import npy_member, npz_members, partial_read, read_rows


class FeatureSource:
    """Features of several models read by rows: the headers only until :meth:`rows` is called.

    Attributes:
      models: model names (an ``.npz``'s keys in file order, or a folder's ``.npy`` stems sorted).
      dims: each model's feature dimension.
      num_stimuli: stimuli (rows) every model has.
      partial: whether reading rows reads only those rows for every model.
    """

    def __init__(self, path: str | os.PathLike):
        from jaxagree.cka import check_same_stimuli
        from jaxagree.io import feature_arrays

        path = Path(path)
        members = feature_arrays(path, npy=npy_member, npz=npz_members)
        check_same_stimuli([m.shape[0] for m in members.values()], [f"model {m!r}" for m in members])
        self.path, self._members = path, members
        self.models = list(members)
        self.dims = [int(m.shape[1]) for m in members.values()]
        self.num_stimuli = int(next(iter(members.values())).shape[0])
        self.partial = all(partial_read(m) for m in members.values())

    def rows(self, rows: np.ndarray) -> list[np.ndarray]:
        """Every model's features at ``rows`` (sorted, distinct), float32 ``[len(rows), dim_m]``."""
        return [read_rows(member, rows).astype(np.float32, copy=False) for member in self._members.values()]


def local_max_bytes() -> int:
    """A quarter of this process's first device's memory (of the host's RAM on a CPU), as
    ``cka_matrix``'s default."""
    import jax

    stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"]) // 4
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4


def state_bytes(dims: Sequence[int], debiased: bool) -> int:
    """Bytes of the exact streaming state (float32): ``4 (D^2 + D)`` plus ``4 (M^2 + M D)`` debiased."""
    total, models = sum(dims), len(dims)
    return 4 * (total * total + total + (models * models + models * total if debiased else 0))


def cka_distributed(source: FeatureSource, stimuli: np.ndarray, *, debiased: bool, max_bytes: int | None,
                    error: BaseException | None = None, seconds: dict | None = None) -> np.ndarray:
    """``[models, models]`` CKA of ``stimuli`` (sorted or not; any order gives the same CKA) of
    ``source``, each process streaming its contiguous block of them; the same on every process.
    ``error``: this process's failure so far (raised after every process has said how it went).
    ``seconds``: filled with this process's time per step (read, stream, combine, compute)."""
    import time

    import jax

    import jaxagree as ja
    try:
        if error is not None:
            raise error
        budget = local_max_bytes() if max_bytes is None else max_bytes
        need = 2 * state_bytes(source.dims, debiased)  # the state and its all-reduce
        if need > budget:
            raise ValueError(
                f"--distributed keeps feature-space sums of {need / 1e9:.2f} GB (the state and its sum over "
                f"processes, 4 D^2 bytes each, D = {sum(source.dims):,} "
                f"summed dims of {len(source.dims)} models), more than --max-bytes {budget / 1e9:.2f} GB: raise "
                "--max-bytes, or run without --distributed (the Gram path holds stimuli x stimuli blocks instead: "
                "the cheaper one when the stimuli are fewer than the summed dims; see docs/capacity.md)")
        if len(stimuli) < (4 if debiased else 2):
            raise ValueError(f"{len(stimuli)} stimuli; {'debiased ' if debiased else ''}CKA needs at least "
                             f"{4 if debiased else 2}")
        block = process_block(len(stimuli), jax.process_index(), jax.process_count())
        mine = np.sort(np.asarray(stimuli[block.start : block.stop], np.int64))
        estimator = "exact-debiased" if debiased else "exact"
        # The same reference stimulus on every process: the set's first.
        stream = ja.cka_stream(source.rows(np.asarray(stimuli[:1], np.int64)), estimator=estimator)
        state = stream.init()
        # Rows per step: the features of one step within an eighth of the budget, at most 4,096.
        step = int(max(1, min(4096, budget // 8 // max(1, 4 * sum(source.dims)))))
        times = {"read": 0.0, "stream": 0.0}
        for start in range(0, len(mine), step):
            began = time.perf_counter()
            rows = source.rows(mine[start : start + step])
            read = time.perf_counter()
            state = jax.block_until_ready(stream.update(state, rows))
            times["read"] += read - began
            times["stream"] += time.perf_counter() - read
        state = jax.tree.map(np.asarray, state)
    except Exception as failure:  # noqa: BLE001 - every process must hear of any failure
        process_status(failure)
        raise
    process_status(None)
    check_same_input([source.num_stimuli, len(stimuli), names_checksum(source.models), *source.dims],
                     "FEATURES (stimuli, chosen stimuli, model names' checksum, dims)")
    began = time.perf_counter()
    total = ja.CKAState(*process_sum(tuple(state)))
    combined = time.perf_counter()
    matrix = np.asarray(stream.compute(total))
    if seconds is not None:
        seconds.update(times, combine=combined - began, compute=time.perf_counter() - combined,
                       stimuli=len(mine), step=step)
    return matrix
