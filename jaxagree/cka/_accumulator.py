"""``CKAAccumulator``: a mutable convenience object over :func:`~jaxagree.cka_stream` and its
:class:`~jaxagree.CKAState` (the reference stimulus taken from its first batch)."""

from __future__ import annotations

from jaxtyping import Array, Float

from jaxagree.cka._moments import CKAState
from jaxagree.cka._stream import ESTIMATORS, CKAStream, apply_update, check_batch, rebase, stream_from


class CKAAccumulator:
    """All-pairs linear CKA over a stimulus set streamed in batches (too many stimuli for
    ``n x n`` Grams). ``update`` with each batch, ``merge`` accumulators from other devices or
    processes, ``compute`` at the end. It holds a :func:`~jaxagree.cka_stream` (``stream``, made
    from its first batch) and that stream's state (``state``); use those directly under ``jit``
    or ``shard_map``.

    Three estimators:

    * ``"exact"`` and ``"exact-debiased"``: the biased (Kornblith et al. 2019) or debiased
      (unbiased HSIC) CKA of all stimuli at once, exactly (up to float32): the same numbers as
      ``cka_matrix(all_features, debiased=...)``. They accumulate feature-space sums of all
      models side by side about a reference stimulus (the first of the first batch), each batch
      centred on its own mean before its products, so large feature means cost no accuracy: the
      ``[D, D]`` cross-products (``D`` = summed dims), plus for the debiased estimator the
      per-stimulus squared norms' products ``[M, M]`` and ``[M, D]``. Memory ``~4 D^2`` bytes:
      these suit modest dims (a few thousand summed). Batches may have any size (even 1 stimulus).
    * ``"minibatch"``: Nguyen, Raghu & Kornblith (2021): the unbiased HSIC of each batch (U-centred
      Grams of the batch, or the same from its cross-products when those are cheaper), averaged
      over batches, then normalised. Memory ``M^2`` whatever the dims; every batch needs at least
      4 stimuli and the same size gives the estimate its usual meaning. It estimates the
      population CKA, not the CKA of these stimuli: with batches of ``b`` stimuli it differs from
      ``"exact-debiased"`` by terms that shrink like ``1/b`` (0.02 at most with 500-stimulus
      batches in our tests), and it is the choice when dims are large.
    """

    def __init__(self, num_models: int, *, estimator: str = "minibatch"):
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        if num_models < 2:
            raise ValueError(f"num_models={num_models}; CKA needs at least 2")
        self.num_models = num_models
        self.estimator = estimator
        self.stream: CKAStream | None = None
        self.state: CKAState | None = None

    @property
    def dims(self) -> list[int] | None:
        return None if self.stream is None else list(self.stream.dims)

    @property
    def num_stimuli(self) -> int:
        return 0 if self.state is None else int(self.state.count)

    @property
    def num_batches(self) -> int:
        return 0 if self.state is None else int(self.state.batches)

    def update(self, batch) -> CKAAccumulator:
        """Add one batch: ``[models, batch, dim]`` or a sequence of ``[batch, dim_m]`` arrays."""
        models = check_batch(batch, self.num_models, self.dims, self.estimator, "accumulator", "first batch")
        if self.stream is None:
            self.stream = stream_from(models, self.estimator)
            self.state = self.stream.init()
        self.state = apply_update(self.stream, self.state, models)
        return self

    def merge(self, other: CKAAccumulator) -> CKAAccumulator:
        """Add another accumulator's batches (same models, dims and estimator)."""
        if (other.num_models, other.estimator) != (self.num_models, self.estimator):
            raise ValueError("merge needs accumulators with the same number of models and estimator")
        if other.state is None:
            return self
        if self.dims is not None and other.dims != self.dims:
            raise ValueError(f"dims {other.dims} differ from {self.dims}")
        if self.state is None:
            self.stream, self.state = other.stream, other.state
        else:  # the other's sums were taken about its own first stimulus
            self.state = self.stream.merge(self.state, rebase(self.stream, other.state, other.stream.reference))
        return self

    def compute(self) -> Float[Array, "models models"]:
        """``float32 [models, models]``; NaN rows and columns for models with no variance."""
        if self.state is None:
            raise ValueError("no batches were added")
        return self.stream.compute(self.state)


__all__ = ["CKAAccumulator"]
