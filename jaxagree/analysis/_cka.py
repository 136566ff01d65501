"""What ``jaxagree cka`` computes, as one library call: linear CKA of every pair of models over
all stimuli or a chosen subset (e.g. the contrastive stimuli of an agreement analysis), split
over every device, with the similarity summarised within and between model families."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh

from jaxagree._checks import check_stimulus_indices, family_of_each
from jaxagree.cka import check_same_stimuli, cka_matrix
from jaxagree.sharding import stimulus_mesh


class CKAAnalysis(NamedTuple):
    """Results of :func:`analyse_cka`.

    Attributes:
      matrix: ``float32 [models, models]`` linear CKA, symmetric with unit diagonal (NaN row and
        column for a model whose features are constant over the stimuli).
      models: model names, in the matrix's order.
      families: each model's family (same order), or None when none were given.
      stimuli: ``int64 [stimuli]`` the stimuli used, as indices into the features' stimuli.
      debiased: whether the unbiased HSIC estimator was used.
      mean_off_diagonal: mean CKA over pairs of different models (NaN pairs left out).
      family_names: the families, sorted, or None.
      family_means: ``float64 [families, families]`` mean CKA between models of family ``a`` and
        of family ``b`` (a model is not paired with itself; NaN for a family of one model on the
        diagonal), or None.
      within_family: mean CKA over pairs of models of the same family (NaN when every family
        has one model), or None.
      between_family: mean CKA over pairs of models of different families (NaN with one
        family), or None.
    """

    matrix: np.ndarray
    models: list[str]
    families: list[str] | None
    stimuli: np.ndarray
    debiased: bool
    mean_off_diagonal: float
    family_names: list[str] | None
    family_means: np.ndarray | None
    within_family: float | None
    between_family: float | None

    @property
    def title(self) -> str:
        """The estimator in words, for figures and messages."""
        return "debiased linear CKA" if self.debiased else "linear CKA"


def analyse_cka(
    features,
    *,
    stimuli=None,
    families: Mapping[str, str] | Sequence[str] | None = None,
    debiased: bool = False,
    max_bytes: int | None = None,
    mesh: Mesh | str | None = "auto",
    matmul_precision: str = "float32",
) -> CKAAnalysis:
    """Linear CKA of every pair of models, over all stimuli or a subset, summarised by family.

    Args:
      features: a mapping from model name to ``[stimuli, dim_m]`` features (dims may differ), an
        object with ``models`` and ``features`` (:class:`jaxagree.io.FeatureSet`, as
        :func:`jaxagree.io.read_features` returns), or a ``[models, stimuli, dim]`` array or a
        sequence of ``[stimuli, dim_m]`` arrays (models then named ``model_0``, ``model_1``...).
      stimuli: optional ``int [k]`` indices of the stimuli to use (distinct, in range), e.g. the
        ``contrastive`` stimuli of :func:`analyse_agreement`.
      families: optional family of each model: a mapping from model name (every model needs
        one; extra names are ignored) or a sequence in the models' order.
      debiased: use the unbiased HSIC estimator (needs at least 4 stimuli).
      max_bytes: bound on the blocks held at once (see :func:`jaxagree.cka_matrix`).
      mesh: ``"auto"`` (default) splits the work over every device when there are several;
        None keeps it on one device; or a :class:`jax.sharding.Mesh`.
      matmul_precision: see :func:`jaxagree.cka_matrix`.
    """
    models, arrays = _named_features(features)
    family_of = None if families is None else family_of_each(families, models)
    check_same_stimuli([a.shape[0] for a in arrays], [f"model {m!r}" for m in models])
    num_stimuli = arrays[0].shape[0]
    if stimuli is None:
        chosen = np.arange(num_stimuli, dtype=np.int64)
    else:
        chosen = check_stimulus_indices(stimuli, num_stimuli)
        arrays = [a[chosen] for a in arrays]
    if isinstance(mesh, str):
        if mesh != "auto":
            raise ValueError(f"mesh must be 'auto', None or a jax.sharding.Mesh, got {mesh!r}")
        mesh = stimulus_mesh() if len(jax.devices()) > 1 else None
    matrix = np.asarray(cka_matrix(dict(zip(models, arrays)), debiased=debiased, max_bytes=max_bytes,
                                   mesh=mesh, matmul_precision=matmul_precision))
    return summarise_cka(matrix, models, family_of, chosen, debiased)


def summarise_cka(matrix: np.ndarray, models: list[str], families: list[str] | None, stimuli: np.ndarray,
                  debiased: bool) -> CKAAnalysis:
    """:class:`CKAAnalysis` of a matrix computed elsewhere (e.g. by processes that each streamed a
    share of the stimuli), summarised as :func:`analyse_cka` summarises its own."""
    return CKAAnalysis(matrix, models, families, np.asarray(stimuli, np.int64), debiased,
                       _mean_pairs(matrix, _pairs(len(models))), *_family_summary(matrix, families))


def _named_features(features) -> tuple[list[str], list]:
    if isinstance(features, Mapping):
        return [str(m) for m in features], list(features.values())
    if hasattr(features, "models") and hasattr(features, "features"):
        models, arrays = list(features.models), list(features.features)
        if len(models) != len(arrays):
            raise ValueError(f"features names {len(models)} models but holds {len(arrays)} arrays")
        return [str(m) for m in models], arrays
    if hasattr(features, "ndim") or (isinstance(features, Sequence) and not isinstance(features, (str, bytes))):
        arrays = list(features)
        return [f"model_{m}" for m in range(len(arrays))], arrays
    raise ValueError(f"features must be a mapping of name to array, a FeatureSet, an array or a sequence of "
                     f"arrays, got {type(features).__name__}")


def _pairs(num_models: int) -> np.ndarray:
    """``bool [models, models]``: the unordered pairs of different models (upper triangle)."""
    return np.triu(np.ones((num_models, num_models), bool), k=1)


def _mean_pairs(matrix: np.ndarray, pairs: np.ndarray) -> float:
    values = matrix[pairs]
    values = values[~np.isnan(values)]
    return float(values.astype(np.float64).mean()) if values.size else float("nan")


def _family_summary(matrix: np.ndarray, family_of: list[str] | None):
    if family_of is None:
        return None, None, None, None
    names = sorted(set(family_of))
    member = np.array(family_of)
    pairs = _pairs(len(family_of))
    same = member[:, None] == member[None, :]
    means = np.full((len(names), len(names)), np.nan)
    for a, first in enumerate(names):
        for b, second in enumerate(names):
            between = np.outer(member == first, member == second) | np.outer(member == second, member == first)
            means[a, b] = _mean_pairs(matrix, pairs & between)
    return names, means, _mean_pairs(matrix, pairs & same), _mean_pairs(matrix, pairs & ~same)


__all__ = ["CKAAnalysis", "analyse_cka"]
