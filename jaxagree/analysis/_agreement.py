"""The agreement analysis of the paper (Fig. 3, Fig. 4) on one prediction table.

Overall: per-stimulus agreement, Fleiss' kappa, the ``k`` contrastive (lowest-agreement) stimuli.
With labels: per-model accuracy, models binned by accuracy, and for each bin Fleiss' kappa over
all stimuli and over that bin's own ``k`` contrastive stimuli.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import numpy as np

from jaxagree.accuracy import AccuracyBins, accuracy_bins, check_labels, correct_rate
from jaxagree.agreement import contrastive_stimuli, fleiss_kappa, per_stimulus_agreement
from jaxagree.agreement_bootstrap import AgreementBootstrap, agreement_bootstrap
from jaxagree.counts import agreement_stats, check_predictions


class BinResults(NamedTuple):
    """Agreement within each accuracy bin.

    Attributes:
      bins: the bins (mask and accuracy range).
      agreement: ``float32 [bins, stimuli]`` Eq. 1 over each bin's models.
      kappa_all: ``float32 [bins]`` Fleiss' kappa over all stimuli.
      contrastive: ``int32 [bins, k]`` each bin's k lowest-agreement stimuli.
      kappa_contrastive: ``float32 [bins]`` Fleiss' kappa over those stimuli.
    """

    bins: AccuracyBins
    agreement: np.ndarray
    kappa_all: np.ndarray
    contrastive: np.ndarray
    kappa_contrastive: np.ndarray


class AgreementAnalysis(NamedTuple):
    """Results of :func:`analyse_agreement`.

    Attributes:
      fleiss_kappa: Fleiss' kappa over all models and stimuli.
      randolph_kappa: free-marginal kappa (Randolph 2005).
      agreement: ``float32 [stimuli]`` Eq. 1 (NaN where fewer than 2 models responded).
      n_raters: ``int32 [stimuli]`` models that responded.
      k: number of contrastive stimuli.
      contrastive: ``int32 [k]`` the k lowest-agreement stimuli, lowest first.
      contrastive_kappa: Fleiss' kappa of all models over the contrastive stimuli.
      accuracy: ``float32 [models]`` with labels, else None.
      per_bin: :class:`BinResults` with labels, else None.
      bootstrap: with ``num_bootstrap``, the :class:`~jaxagree.AgreementBootstrap` intervals;
        subset 0 is all models, subset ``1 + b`` accuracy bin ``b``. Else None.
    """

    fleiss_kappa: float
    randolph_kappa: float
    agreement: np.ndarray
    n_raters: np.ndarray
    k: int
    contrastive: np.ndarray
    contrastive_kappa: float
    accuracy: np.ndarray | None
    per_bin: BinResults | None
    bootstrap: AgreementBootstrap | None = None


def default_k(num_with_agreement: int) -> int:
    """2% of the stimuli, at most 1,000 (the paper: 1,000 of ImageNet's 50,000)."""
    return max(1, min(1000, num_with_agreement // 50))


def default_num_bins(num_models: int) -> int:
    """Up to 10 bins with at least 5 models each."""
    return max(1, min(10, num_models // 5))


def _kappa_on(preds: jax.Array, stimuli: np.ndarray, num_categories: int) -> float:
    # Statistics, not the dense [stimuli, categories] table: memory must not grow with the label space.
    return float(fleiss_kappa(agreement_stats(preds[:, stimuli], num_categories=num_categories)))


def analyse_agreement(
    preds: np.ndarray,
    *,
    num_categories: int,
    labels: np.ndarray | None = None,
    k: int | None = None,
    num_bins: int | None = None,
    bin_edges: Sequence[float] | np.ndarray | None = None,
    num_bootstrap: int | None = None,
    seed: int = 0,
    confidence: float = 0.95,
) -> AgreementAnalysis:
    """Agreement, kappa and contrastive stimuli; per accuracy bin too when labels are given.

    Args:
      preds: ``int [models, stimuli]`` (-1 = no response).
      num_categories: number of categories.
      labels: optional ``int [stimuli]`` (-1 = unlabelled); enables accuracy and bins.
      k: contrastive stimuli to select (default :func:`default_k`).
      num_bins: equal-count accuracy bins (default :func:`default_num_bins`); needs labels.
      bin_edges: accuracy bin edges instead of ``num_bins``; needs labels.
      num_bootstrap: adds percentile intervals over stimuli (:func:`~jaxagree.agreement_bootstrap`)
        for kappa over all and contrastive stimuli, overall and per bin, and with labels for
        error consistency; ``seed`` draws the replicates, ``confidence`` is the coverage.
    """
    if labels is None and (num_bins is not None or bin_edges is not None):
        raise ValueError("accuracy bins need labels: give a label column or a labels array")
    # Checked once, and moved to the device once: every step below takes the checked int32 array,
    # on which the kernels' own checks are shape checks and a count fused into their pass.
    preds = check_predictions(preds, num_categories)
    if labels is not None:
        labels = check_labels(labels, preds.shape[1], num_categories)
    stats = agreement_stats(preds, num_categories=num_categories)
    agreement = per_stimulus_agreement(stats)
    defined = int(np.sum(~np.isnan(np.asarray(agreement))))
    if defined == 0:
        raise ValueError("no stimulus has responses from at least 2 models; agreement is undefined")
    k = default_k(defined) if k is None else k
    contrastive = np.asarray(contrastive_stimuli(agreement, k))
    analysis = AgreementAnalysis(
        fleiss_kappa=float(fleiss_kappa(stats)),
        randolph_kappa=float(fleiss_kappa(stats, method="randolph")),
        agreement=np.asarray(agreement),
        n_raters=np.asarray(stats.n_raters),
        k=k,
        contrastive=contrastive,
        contrastive_kappa=_kappa_on(preds, contrastive, num_categories),
        accuracy=None,
        per_bin=None,
    )
    if labels is None:
        return _with_bootstrap(analysis, preds, None, None, num_categories, num_bootstrap, seed, confidence)
    accuracy = np.asarray(correct_rate(preds, labels))
    if bin_edges is None and num_bins is None:
        num_bins = default_num_bins(preds.shape[0])
    bins = accuracy_bins(accuracy, num_bins=num_bins, edges=bin_edges)
    bin_stats = agreement_stats(preds, num_categories=num_categories, model_mask=bins.model_mask)
    bin_agreement = per_stimulus_agreement(bin_stats)
    bin_contrastive = np.asarray(contrastive_stimuli(bin_agreement, k))
    kappa_contrastive = np.array(
        [
            _kappa_on(preds[np.flatnonzero(members)], chosen, num_categories)
            for members, chosen in zip(bins.model_mask, bin_contrastive)
        ],
        np.float32,
    )
    per_bin = BinResults(
        bins=bins,
        agreement=np.asarray(bin_agreement),
        kappa_all=np.asarray(fleiss_kappa(bin_stats)),
        contrastive=bin_contrastive,
        kappa_contrastive=kappa_contrastive,
    )
    analysis = analysis._replace(accuracy=accuracy, per_bin=per_bin)
    return _with_bootstrap(analysis, preds, labels, bins.model_mask, num_categories, num_bootstrap, seed, confidence)


def _with_bootstrap(analysis: AgreementAnalysis, preds, labels, bin_mask, num_categories: int,
                    num_bootstrap: int | None, seed: int, confidence: float) -> AgreementAnalysis:
    if num_bootstrap is None:
        return analysis
    everyone = np.ones((1, preds.shape[0]), bool)
    mask = everyone if bin_mask is None else np.concatenate([everyone, np.asarray(bin_mask, bool)])
    bootstrap = agreement_bootstrap(preds, num_categories=num_categories, k=analysis.k, model_mask=mask,
                                    labels=labels, num_bootstrap=num_bootstrap, seed=seed, confidence=confidence)
    return analysis._replace(bootstrap=bootstrap)
