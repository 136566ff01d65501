"""The agreement analysis of the paper (Fig. 3, Fig. 4) on one prediction table.

Overall: per-stimulus agreement, Fleiss' kappa, the ``k`` contrastive (lowest-agreement) stimuli.
With labels: per-model accuracy, models binned by accuracy, and for each bin Fleiss' kappa over
all stimuli and over that bin's own ``k`` contrastive stimuli.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import numpy as np

from jaxagree.accuracy import AccuracyBins, accuracy_bins, check_labels, correct_rate
from jaxagree.agreement import contrastive_stimuli, error_consistency, fleiss_kappa, per_stimulus_agreement
from jaxagree.agreement_bootstrap import AgreementBootstrap, agreement_bootstrap
from jaxagree.counts import agreement_stats, check_predictions
from jaxagree.stats import AgreementStats


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


class ConditionResults(NamedTuple):
    """Agreement within each experimental condition (e.g. a noise level of a model-vs-human experiment).

    Attributes:
      names: the conditions, in order of first appearance among the stimuli.
      num_stimuli: ``int [conditions]`` stimuli per condition.
      fleiss_kappa: ``float [conditions]`` Fleiss' kappa of all models over the condition's stimuli.
      mean_agreement: ``float [conditions]`` mean Eq. 1 agreement over them (NaN where none has 2 raters).
      accuracy: ``float [conditions, models]`` with labels (over the labelled stimuli each model
        was shown), else None.
      error_consistency: ``float32 [conditions, models, models]`` with labels and 2 or more
        models, within each condition (as model-vs-human computes it), else None.
    """

    names: list[str]
    num_stimuli: np.ndarray
    fleiss_kappa: np.ndarray
    mean_agreement: np.ndarray
    accuracy: np.ndarray | None
    error_consistency: np.ndarray | None = None


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
      error_consistency: ``float32 [models, models]`` with labels and 2 or more models
        (:func:`~jaxagree.error_consistency` over the labelled stimuli each pair was shown), else None.
      per_condition: :class:`ConditionResults` when conditions are given, else None.
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
    error_consistency: np.ndarray | None = None
    per_condition: ConditionResults | None = None


def default_k(num_with_agreement: int) -> int:
    """2% of the stimuli, at most 1,000 (the paper: 1,000 of ImageNet's 50,000)."""
    return max(1, min(1000, num_with_agreement // 50))


def default_num_bins(num_models: int) -> int:
    """Up to 10 bins with at least 5 models each."""
    return max(1, min(10, num_models // 5))


def _kappa_on(preds: jax.Array, stimuli: np.ndarray, num_categories: int) -> float:
    # Statistics, not the dense [stimuli, categories] table: memory must not grow with the label space.
    return float(fleiss_kappa(agreement_stats(preds[:, stimuli], num_categories=num_categories)))


def agreement_from_stats(
    stats: AgreementStats, *, k: int | None, contrastive_kappa: Callable[[np.ndarray], float]
) -> AgreementAnalysis:
    """The label-free part of :func:`analyse_agreement` from the statistics of all stimuli: kappa,
    Eq. 1 per stimulus, the ``k`` contrastive stimuli (:func:`default_k` of the stimuli with
    agreement defined when ``k`` is None) and ``contrastive_kappa(contrastive)``, the kappa over
    them (its statistics may live elsewhere, as on other processes). No accuracy or bins."""
    agreement = per_stimulus_agreement(stats)
    defined = int(np.sum(~np.isnan(np.asarray(agreement))))
    if defined == 0:
        raise ValueError("no stimulus has responses from at least 2 models; agreement is undefined")
    k = default_k(defined) if k is None else k
    contrastive = np.asarray(contrastive_stimuli(agreement, k))
    return AgreementAnalysis(
        fleiss_kappa=float(fleiss_kappa(stats)),
        randolph_kappa=float(fleiss_kappa(stats, method="randolph")),
        agreement=np.asarray(agreement),
        n_raters=np.asarray(stats.n_raters),
        k=k,
        contrastive=contrastive,
        contrastive_kappa=float(contrastive_kappa(contrastive)),
        accuracy=None,
        per_bin=None,
    )


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
    observed: np.ndarray | None = None,
    conditions: Sequence[str] | None = None,
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
      observed: optional ``bool [models, stimuli]``, whether each model was shown each stimulus
        (:attr:`~jaxagree.io.PredictionTable.observed`); with labels, accuracy and error consistency
        are then over the stimuli a model was shown (a shown stimulus without response is wrong).
      conditions: optional condition of each stimulus: adds :class:`ConditionResults`.
    """
    if labels is None and (num_bins is not None or bin_edges is not None):
        raise ValueError("accuracy bins need labels: give a label column or a labels array")
    # Checked once, and moved to the device once: every step below takes the checked int32 array,
    # on which the kernels' own checks are shape checks and a count fused into their pass.
    preds = check_predictions(preds, num_categories)
    if labels is not None:
        labels = check_labels(labels, preds.shape[1], num_categories)
    analysis = agreement_from_stats(agreement_stats(preds, num_categories=num_categories), k=k,
                                    contrastive_kappa=lambda chosen: _kappa_on(preds, chosen, num_categories))
    k = analysis.k  # the default, when none was given: every bin below takes as many
    shown = _check_observed(observed, preds.shape)
    if conditions is not None:
        analysis = analysis._replace(per_condition=_per_condition(analysis, preds, labels, shown, conditions,
                                                                  num_categories))
    if labels is None:
        return _with_bootstrap(analysis, preds, None, None, num_categories, num_bootstrap, seed, confidence)
    accuracy = _accuracy(preds, labels, shown)
    if preds.shape[0] >= 2:
        right = np.asarray(preds) == np.asarray(labels)[None, :]
        marked = shown & (np.asarray(labels) >= 0)[None, :]
        analysis = analysis._replace(error_consistency=np.asarray(error_consistency(right, observed=marked)))
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
    return _with_bootstrap(analysis, preds, labels, bins.model_mask, num_categories, num_bootstrap, seed, confidence,
                           None if observed is None else shown)


def _check_observed(observed, shape: tuple[int, int]) -> np.ndarray:
    if observed is None:
        return np.ones(shape, bool)
    observed = np.asarray(observed)
    if observed.dtype != bool or observed.shape != tuple(shape):
        raise ValueError(f"observed must be bool [models, stimuli] {tuple(shape)}, got {observed.dtype} "
                         f"{observed.shape}")
    return observed


def _accuracy(preds, labels, shown: np.ndarray) -> np.ndarray:
    """Each model's share of right answers over the labelled stimuli it was shown (all of them
    when every model saw every stimulus: then exactly :func:`correct_rate`)."""
    if shown.all():
        return np.asarray(correct_rate(preds, labels))
    labels = np.asarray(labels)
    marked = shown & (labels >= 0)[None, :]
    trials = marked.sum(1)
    if not trials.all():
        raise ValueError(f"model {int(np.argmin(trials))} was shown no labelled stimulus; its accuracy is undefined")
    right = (np.asarray(preds) == labels[None, :]) & marked
    return (right.sum(1) / trials).astype(np.float32)


def _per_condition(analysis: AgreementAnalysis, preds, labels, shown: np.ndarray, conditions: Sequence[str],
                   num_categories: int) -> ConditionResults:
    conditions = [str(c) for c in conditions]
    if len(conditions) != preds.shape[1]:
        raise ValueError(f"conditions has {len(conditions)} entries but predictions has {preds.shape[1]} stimuli")
    names = list(dict.fromkeys(conditions))
    members = [np.flatnonzero(np.array(conditions) == name) for name in names]
    kappa = np.array([_kappa_on(preds, idx, num_categories) for idx in members], np.float32)
    with warnings.catch_warnings():  # a condition without a defined agreement has a NaN mean
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.array([np.nanmean(analysis.agreement[idx]) for idx in members], np.float32)
        accuracy = consistency = None
        if labels is not None:
            labels = np.asarray(labels)
            right = (np.asarray(preds) == labels[None, :]) & shown & (labels >= 0)[None, :]
            marked = shown & (labels >= 0)[None, :]
            accuracy = np.stack([right[:, idx].sum(1) / marked[:, idx].sum(1) for idx in members]).astype(np.float32)
            if preds.shape[0] >= 2:
                consistency = np.stack([np.asarray(error_consistency(right[:, idx], observed=marked[:, idx]))
                                        for idx in members])
    return ConditionResults(names, np.array([len(idx) for idx in members]), kappa, mean, accuracy, consistency)


def _with_bootstrap(analysis: AgreementAnalysis, preds, labels, bin_mask, num_categories: int,
                    num_bootstrap: int | None, seed: int, confidence: float, observed=None) -> AgreementAnalysis:
    if num_bootstrap is None:
        return analysis
    everyone = np.ones((1, preds.shape[0]), bool)
    mask = everyone if bin_mask is None else np.concatenate([everyone, np.asarray(bin_mask, bool)])
    bootstrap = agreement_bootstrap(preds, num_categories=num_categories, k=analysis.k, model_mask=mask,
                                    labels=labels, num_bootstrap=num_bootstrap, seed=seed, confidence=confidence,
                                    observed=observed)
    return analysis._replace(bootstrap=bootstrap)
