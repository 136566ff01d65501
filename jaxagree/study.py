"""The paper's argument, run on one zoo's extraction: agreement by accuracy over all and over
contrastive stimuli (Fig. 3, Fig. 4), accuracy against size and training budget (Fig. 2's
analogue), CKA over ordinary, contrastive, equal-size random and synthetic-probe stimuli (Fig. 1),
and how well each stimulus set tells the model families apart, with bootstrap intervals.

:func:`run_study` takes arrays (predictions, labels, features), so the study runs the same on a
zoo extracted here, on features read from disk, or on another project's outputs; ``jaxagree demo``
feeds it the trained digit zoo (:mod:`jaxagree.demo`). Every claim it checks is stated as a
:class:`Claim`: what the paper says, whether it held here, and the numbers that decide it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from jaxagree.analysis import AgreementAnalysis, StimulusSetComparison, analyse_agreement, compare_stimulus_sets
from jaxagree.search import Persistence, persistence


class Claim(NamedTuple):
    """One of the paper's claims, checked on this study.

    Attributes:
      key: a short name (``summary.json``'s key).
      statement: the claim, as the paper makes it.
      held: whether it held here (None: could not be decided, e.g. one accuracy bin).
      evidence: the numbers that decide it, in words.
      figure: the figure that shows it (a file name of the report).
    """

    key: str
    statement: str
    held: bool | None
    evidence: str
    figure: str


class Study(NamedTuple):
    """Results of :func:`run_study`.

    Attributes:
      models, families: the models and their families, in one order.
      metadata: each model's metadata (parameters, training budget, accuracy...), or empty dicts.
      agreement: the agreement analysis with bootstrap intervals (per accuracy bin).
      sets: stimulus set name -> indices into the pool (None for a probe with its own stimuli).
      comparison: identifiability of the families on each set, with intervals; baseline
        ``random`` (the equal-size random draw).
      persistence: whether each accuracy bin's contrastive stimuli stay contrastive for the others.
      claims: the paper's claims, checked.
    """

    models: list[str]
    families: list[str]
    metadata: list[dict]
    agreement: AgreementAnalysis
    sets: dict[str, np.ndarray | None]
    comparison: StimulusSetComparison
    persistence: Persistence | None
    claims: list[Claim]


def run_study(
    *,
    models: Sequence[str],
    families: Sequence[str],
    predictions: np.ndarray,
    labels: np.ndarray,
    num_categories: int,
    features: Sequence[np.ndarray],
    probes: Mapping[str, Sequence[np.ndarray]] | None = None,
    metadata: Sequence[Mapping] | None = None,
    k: int | None = None,
    num_bins: int | None = None,
    num_bootstrap: int = 200,
    num_permutations: int = 1000,
    architectures: Sequence[str] | None = None,
    seed: int = 0,
) -> Study:
    """The study on one pool of labelled stimuli and, optionally, synthetic probes.

    Args:
      models, families: model names and their families (same order as every array below).
      predictions: ``int [models, stimuli]`` each model's class on the pool (-1: no response).
      labels: ``int [stimuli]`` the pool's labels.
      num_categories: classes.
      features: per model, ``float [stimuli, dim_m]`` features on the pool (e.g. penultimate).
      probes: name -> per model ``[probe_stimuli, dim_m]`` features on a probe of its own (e.g.
        synthetic squares); compared at the contrastive set's size, the first ``k`` stimuli.
      metadata: per model, its zoo metadata (for Fig. 2's analogue).
      k: contrastive stimuli (default: 2% of the pool, as the paper's 1,000 of 50,000).
      num_bins: accuracy bins (default: up to 10 with at least 5 models each).
      num_bootstrap: replicates of every interval.
      num_permutations: label shuffles of each set's AUC p-value.
      architectures: optional per-model architecture (models trained with several seeds): also
        the rate at which a model's nearest model is of its own architecture.
      seed: draws of the random set, the bootstrap and the permutations.
    """
    models, families = list(models), list(families)
    if len(families) != len(models) or len(features) != len(models):
        raise ValueError(f"{len(models)} models, {len(families)} families and {len(features)} feature arrays: "
                         "give one of each per model")
    agreement = analyse_agreement(predictions, num_categories=num_categories, labels=labels, k=k, num_bins=num_bins,
                                  num_bootstrap=num_bootstrap, seed=seed)
    num_stimuli = predictions.shape[1]
    contrastive = np.sort(agreement.contrastive)
    rng = np.random.default_rng(seed)
    others = np.setdiff1d(np.arange(num_stimuli), contrastive)
    sets: dict[str, np.ndarray | None] = {
        "all": np.arange(num_stimuli),
        "contrastive": contrastive,
        "random": np.sort(rng.choice(others, agreement.k, replace=False)),
    }
    chosen = dict(sets)
    for name, probe in (probes or {}).items():
        if len(probe) != len(models):
            raise ValueError(f"probe {name!r} has features of {len(probe)} models, the pool {len(models)}")
        short = min(p.shape[0] for p in probe)
        if short < agreement.k:
            raise ValueError(f"probe {name!r} has {short} stimuli; the study compares sets of k={agreement.k}")
        sets[name] = None
        chosen[name] = [np.asarray(p[: agreement.k]) for p in probe]
    comparison = compare_stimulus_sets(list(features), families, chosen, baseline="random",
                                       num_bootstrap=num_bootstrap, seed=seed, num_permutations=num_permutations,
                                       architectures=architectures)
    bins = agreement.per_bin
    persisted = persistence(bins.agreement, agreement.k) if bins is not None and len(bins.kappa_all) > 1 else None
    meta = [dict(m) for m in metadata] if metadata is not None else [{} for _ in models]
    study = Study(models, families, meta, agreement, sets, comparison, persisted, [])
    return study._replace(claims=check_claims(study))


def _interval(low, high) -> str:
    return f"[{low:.3f}, {high:.3f}]"


def check_claims(study: Study) -> list[Claim]:
    """The paper's claims on this study, each decided by its intervals (never by a point alone)."""
    claims = []
    analysis, boot = study.agreement, study.agreement.bootstrap
    bins = analysis.per_bin
    if bins is not None and len(bins.kappa_all) > 1:
        names = bins.bins.names()
        low, high = boot.kappa_all.low[1:], boot.kappa_all.high[1:]
        rises = bool(low[-1] > high[0])
        claims.append(Claim(
            "agreement_rises_with_accuracy",
            "Over all stimuli, more accurate models agree more (Fleiss' kappa rises with accuracy).",
            rises,
            f"kappa over all stimuli: {bins.kappa_all[0]:.3f} {_interval(low[0], high[0])} in the least accurate "
            f"bin ({names[0]}) against {bins.kappa_all[-1]:.3f} {_interval(low[-1], high[-1])} in the most "
            f"accurate ({names[-1]}); the claim holds when the intervals do not overlap",
            "fig3_kappa_by_accuracy.png",
        ))
        c_high = boot.kappa_contrastive.high[1:]
        below = c_high < low
        claims.append(Claim(
            "contrastive_agreement_is_low",
            "On the contrastive stimuli, models of every accuracy level agree far less than on all stimuli.",
            bool(below.all()),
            f"in {int(below.sum())} of {len(below)} accuracy bins the interval of kappa over the {analysis.k} "
            f"contrastive stimuli lies wholly below that over all stimuli (largest contrastive kappa "
            f"{np.nanmax(bins.kappa_contrastive):.3f}, smallest kappa over all {np.nanmin(bins.kappa_all):.3f})",
            "fig3_kappa_by_accuracy.png",
        ))
    if study.persistence is not None:
        overlap = np.asarray(study.persistence.overlap)
        pairwise = float(overlap[~np.eye(len(overlap), dtype=bool)].mean())
        everywhere = float(np.mean(study.persistence.persistence))
        chance = analysis.k / analysis.agreement.shape[0]  # two random draws of k share k/S of them
        claims.append(Claim(
            "contrastive_stimuli_persist",
            "The stimuli that are contrastive for one accuracy level stay contrastive for the others.",
            bool(pairwise > 2 * chance),
            f"two accuracy bins share on average {pairwise:.1%} of their {analysis.k} contrastive stimuli, against "
            f"{chance:.1%} for random draws of the same size (the claim holds above twice that); {everywhere:.1%} "
            f"are contrastive for every bin",
            "fig4_agreement_sorted.png",
        ))
    comparison = study.comparison
    contrastive, random_ = comparison.sets["contrastive"], comparison.sets["random"]
    versus = comparison.versus_baseline["contrastive"]
    claims.append(Claim(
        "contrastive_separate_families",
        "Contrastive stimuli separate model families better than ordinary stimuli of the same number.",
        bool(versus.low.auc > 0),
        f"family AUC {contrastive.scores.auc:.3f} {_interval(contrastive.low.auc, contrastive.high.auc)} on the "
        f"contrastive stimuli against {random_.scores.auc:.3f} {_interval(random_.low.auc, random_.high.auc)} on "
        f"as many random ones; difference {versus.difference.auc:+.3f} "
        f"{_interval(versus.low.auc, versus.high.auc)}, bootstrap p = {versus.p_value.auc:.3g}",
        "identify_scores.png",
    ))
    everything = comparison.sets["all"]
    # The silhouette, not the AUC: a rank score saturates at 1 as soon as every within-family pair
    # is a little more alike than every other pair, which a large pool shows however converged
    # the models are; how far apart the families' blocks are is what converging changes.
    claims.append(Claim(
        "ordinary_stimuli_converge",
        "Averaged over ordinary stimuli, the families' representations converge: their CKA blocks are less "
        "distinct over the whole pool than over the contrastive stimuli.",
        bool(everything.high.silhouette < contrastive.low.silhouette),
        f"family silhouette (distance 1 - CKA) {everything.scores.silhouette:.3f} "
        f"{_interval(everything.low.silhouette, everything.high.silhouette)} over all {everything.num_stimuli} "
        f"stimuli against {contrastive.scores.silhouette:.3f} "
        f"{_interval(contrastive.low.silhouette, contrastive.high.silhouette)} over the contrastive ones (family "
        f"AUC {everything.scores.auc:.3f} against {contrastive.scores.auc:.3f}); the claim holds when the "
        "silhouette intervals do not overlap",
        "fig1_cka_by_set.png",
    ))
    for name in study.sets:
        if study.sets[name] is not None:
            continue
        probe, diff = comparison.sets[name], comparison.versus_baseline[name]
        claims.append(Claim(
            f"contrastive_beat_{name}",
            f"Contrastive stimuli separate the families better than the synthetic {name} probe of the same size.",
            bool(contrastive.low.auc > probe.high.auc),
            f"family AUC {probe.scores.auc:.3f} {_interval(probe.low.auc, probe.high.auc)} on {name} "
            f"(against random: {diff.difference.auc:+.3f} {_interval(diff.low.auc, diff.high.auc)}) and "
            f"{contrastive.scores.auc:.3f} {_interval(contrastive.low.auc, contrastive.high.auc)} on the "
            "contrastive stimuli; the claim holds when the intervals do not overlap",
            "identify_scores.png",
        ))
    return claims


__all__ = ["Claim", "Study", "check_claims", "run_study"]
