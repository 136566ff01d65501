"""``jaxagree agreement``'s files and figures."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from jaxagree.agreement_bootstrap import percentile_interval
from jaxagree.analysis import AgreementAnalysis
from jaxagree.io import PredictionTable, write_csv, write_json
from jaxagree.report._common import agg_pyplot, short_float


def agreement_summary(analysis: AgreementAnalysis, table: PredictionTable) -> dict:
    """The summary written to ``summary.json`` (and printed by the CLI)."""
    agreement = analysis.agreement
    summary = {
        "fleiss_kappa": short_float(analysis.fleiss_kappa),
        "randolph_kappa": short_float(analysis.randolph_kappa),
        "num_models": len(table.models),
        "num_stimuli": len(table.stimuli),
        "num_categories": table.num_categories,
        "stimuli_with_agreement": int(np.sum(~np.isnan(agreement))),
        "mean_agreement": short_float(np.nanmean(agreement)),
        "k": analysis.k,
        "contrastive_fleiss_kappa": short_float(analysis.contrastive_kappa),
        "contrastive_max_agreement": short_float(agreement[analysis.contrastive].max()),
    }
    if analysis.accuracy is not None:
        summary["mean_accuracy"] = short_float(np.mean(analysis.accuracy))
    if analysis.error_consistency is not None:
        summary["mean_error_consistency"] = error_consistency_by_group(analysis.error_consistency, table.rater_groups)
    if analysis.per_condition is not None:
        summary["conditions"] = condition_summary(analysis.per_condition, table.models, table.rater_groups)
    boot = analysis.bootstrap
    if analysis.per_bin is not None:
        per_bin = analysis.per_bin
        summary["accuracy_bins"] = [
            {
                "bin": b,
                "accuracy_lower": short_float(per_bin.bins.lower[b]),
                "accuracy_upper": short_float(per_bin.bins.upper[b]),
                "num_models": int(per_bin.bins.model_mask[b].sum()),
                "fleiss_kappa_all": short_float(per_bin.kappa_all[b]),
                "fleiss_kappa_contrastive": short_float(per_bin.kappa_contrastive[b]),
                **({} if boot is None else {
                    "fleiss_kappa_all_interval": _interval_of(boot.kappa_all, 1 + b),
                    "fleiss_kappa_contrastive_interval": _interval_of(boot.kappa_contrastive, 1 + b),
                }),
            }
            for b in range(per_bin.kappa_all.shape[0])
        ]
    if boot is not None:
        summary["bootstrap"] = {
            "num_bootstrap": boot.num_bootstrap,
            "confidence": boot.confidence,
            "fleiss_kappa_interval": _interval_of(boot.kappa_all, 0),
            "contrastive_fleiss_kappa_interval": _interval_of(boot.kappa_contrastive, 0),
        }
        if boot.error_consistency is not None:
            mean, low, high = mean_error_consistency(boot)
            summary["bootstrap"]["mean_error_consistency"] = short_float(mean)
            summary["bootstrap"]["mean_error_consistency_interval"] = [short_float(low), short_float(high)]
    return summary


def error_consistency_by_group(matrix, groups: list[str] | None) -> dict:
    """Mean error consistency over pairs of distinct raters (NaN pairs left out; None where no
    pair is defined): ``all`` pairs, then within each group (``"human-human"``) and between two
    groups (``"human-model"``, the two names in alphabetical order). Without groups every rater
    is in one group, ``models``."""
    matrix = np.asarray(matrix, np.float64)
    groups = np.array(groups if groups is not None else ["models"] * matrix.shape[0])
    upper = np.triu(np.ones(matrix.shape, bool), 1)

    def mean(mask) -> float | None:
        values = matrix[mask & upper & ~np.isnan(matrix)]
        return short_float(values.mean()) if values.size else None

    result = {"all": mean(np.ones(matrix.shape, bool))}
    names = sorted(set(groups.tolist()))
    for i, a in enumerate(names):
        for b in names[i:]:
            # Both orders of a pair: the upper triangle holds each pair once, whichever group comes first.
            mask = (groups[:, None] == a) & (groups[None, :] == b) | (groups[:, None] == b) & (groups[None, :] == a)
            result[f"{a}-{b}"] = mean(mask)
    return result


def condition_summary(per_condition, models: list[str], groups: list[str] | None = None) -> list[dict]:
    """Per condition: its stimuli, Fleiss' kappa, mean agreement and, with labels, each rater's
    accuracy and the mean error consistency within the condition (:func:`error_consistency_by_group`)."""
    rows = []
    for c, name in enumerate(per_condition.names):
        row = {
            "condition": name,
            "num_stimuli": int(per_condition.num_stimuli[c]),
            "fleiss_kappa": short_float(per_condition.fleiss_kappa[c]),
            "mean_agreement": short_float(per_condition.mean_agreement[c]),
        }
        if per_condition.accuracy is not None:
            row["accuracy"] = {m: short_float(a) for m, a in zip(models, per_condition.accuracy[c])}
        if per_condition.error_consistency is not None:
            row["mean_error_consistency"] = error_consistency_by_group(per_condition.error_consistency[c], groups)
        rows.append(row)
    return rows


def _interval_of(interval, index: int) -> list[float]:
    return [short_float(interval.low[index]), short_float(interval.high[index])]


def mean_error_consistency(boot) -> tuple[float, float, float]:
    """The mean error consistency over model pairs (NaN pairs left out), and its percentile
    interval: the mean of each replicate's pairs, so the interval keeps their covariance."""
    upper = np.triu_indices(boot.error_consistency.estimate.shape[0], 1)
    with warnings.catch_warnings():  # a replicate with no defined pair has a NaN mean, left out
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(boot.error_consistency.replicates[:, upper[0], upper[1]], axis=1)
        estimate = np.nanmean(boot.error_consistency.estimate[upper])
    low, high = percentile_interval(means[:, None], boot.confidence)
    return float(estimate), float(low[0]), float(high[0])


def write_agreement_report(
    analysis: AgreementAnalysis, table: PredictionTable, out_dir: str | os.PathLike
) -> dict[str, Path]:
    """Write summary.json, agreement.csv, contrastive.csv (and with labels accuracy.csv,
    bins.csv and error_consistency.csv, a square table over all raters with their names as
    header and first column) plus the figures; returns the written paths by name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stimuli = table.stimuli
    written = {
        "summary": write_json(out / "summary.json", agreement_summary(analysis, table)),
        "agreement": write_csv(
            out / "agreement.csv",
            ["index", "stimulus", "agreement", "n_raters"],
            zip(range(len(stimuli)), stimuli, analysis.agreement, analysis.n_raters),
        ),
        "contrastive": write_csv(
            out / "contrastive.csv",
            ["rank", "index", "stimulus", "agreement", "n_raters"],
            (
                (rank, i, stimuli[i], analysis.agreement[i], analysis.n_raters[i])
                for rank, i in enumerate(analysis.contrastive)
            ),
        ),
    }
    if analysis.per_bin is not None:
        per_bin = analysis.per_bin
        names = per_bin.bins.names()
        model_bin = np.full(len(table.models), -1)
        for b, members in enumerate(per_bin.bins.model_mask):
            model_bin[members] = b
        written["accuracy"] = write_csv(
            out / "accuracy.csv",
            ["model", "accuracy", "bin"],
            zip(table.models, analysis.accuracy, model_bin),
        )
        columns = [range(len(names)), names, per_bin.bins.model_mask.sum(1), per_bin.kappa_all,
                   per_bin.kappa_contrastive]
        header = ["bin", "accuracy_range", "num_models", "fleiss_kappa_all", "fleiss_kappa_contrastive"]
        boot = analysis.bootstrap
        if boot is not None:
            header += ["fleiss_kappa_all_low", "fleiss_kappa_all_high", "fleiss_kappa_contrastive_low",
                       "fleiss_kappa_contrastive_high"]
            columns += [boot.kappa_all.low[1:], boot.kappa_all.high[1:], boot.kappa_contrastive.low[1:],
                        boot.kappa_contrastive.high[1:]]
        written["bins"] = write_csv(out / "bins.csv", header, zip(*columns))
        written["fig3"] = plot_kappa_by_bin(analysis, out / "fig3_kappa_by_accuracy.png")
    written["fig4"] = plot_sorted_agreement(analysis, out / "fig4_agreement_sorted.png")
    if analysis.error_consistency is not None:
        matrix = np.asarray(analysis.error_consistency)
        written["error_consistency"] = write_csv(
            out / "error_consistency.csv", ["rater", *table.models],
            ([name, *row] for name, row in zip(table.models, matrix)),
        )
    if analysis.bootstrap is not None and analysis.bootstrap.error_consistency is not None:
        ec = analysis.bootstrap.error_consistency
        pairs = zip(*np.triu_indices(len(table.models), 1))
        written["error_consistency_intervals"] = write_csv(
            out / "error_consistency_intervals.csv",
            ["model_a", "model_b", "error_consistency", "low", "high"],
            ((table.models[a], table.models[b], ec.estimate[a, b], ec.low[a, b], ec.high[a, b]) for a, b in pairs),
        )
    return written




def plot_kappa_by_bin(analysis: AgreementAnalysis, path: str | os.PathLike) -> Path:
    """Fig. 3: Fleiss' kappa per accuracy bin, over all stimuli vs the contrastive stimuli."""
    plt = agg_pyplot()
    per_bin = analysis.per_bin
    centre = (per_bin.bins.lower + per_bin.bins.upper) / 2
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    boot = analysis.bootstrap
    for values, marker, label, interval in (
        (per_bin.kappa_all, "o-", "all stimuli", None if boot is None else boot.kappa_all),
        (per_bin.kappa_contrastive, "s-", f"contrastive (k={analysis.k})",
         None if boot is None else boot.kappa_contrastive),
    ):
        line = ax.plot(centre, values, marker, label=label)[0]
        if interval is not None:  # the bins are subsets 1.. of the bootstrap
            ax.fill_between(centre, interval.low[1:], interval.high[1:], color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("accuracy bin (centre)")
    ax.set_ylabel("Fleiss' kappa")
    ax.set_title("Agreement by accuracy: all vs contrastive stimuli"
                 + ("" if boot is None else f"\n(bands: {boot.confidence:.0%} bootstrap intervals over stimuli)"))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_sorted_agreement(analysis: AgreementAnalysis, path: str | os.PathLike) -> Path:
    """Fig. 4: per-stimulus agreement of each model set, stimuli in one common order.

    Left: one row per accuracy bin (or one for all models), stimuli sorted by the agreement of all
    models, so a column is the same stimulus in every row. Right: each row's agreement sorted on
    its own.
    """
    plt = agg_pyplot()
    if analysis.per_bin is not None:
        rows = analysis.per_bin.agreement
        names = analysis.per_bin.bins.names()
    else:
        rows = analysis.agreement[None, :]
        names = ["all models"]
    order = np.argsort(np.where(np.isnan(analysis.agreement), np.inf, analysis.agreement), kind="stable")
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(11, 1.2 + 0.45 * len(names)), dpi=120, gridspec_kw={"width_ratios": [3, 2]}
    )
    image = left.imshow(rows[:, order], aspect="auto", interpolation="nearest", cmap="viridis", vmin=0, vmax=1)
    left.set_yticks(range(len(names)), names)
    left.set_xlabel("stimuli, sorted by agreement of all models (low to high)")
    left.set_ylabel("model set (accuracy)")
    fig.colorbar(image, ax=left, label="agreement (Eq. 1)")
    for row, name in zip(rows, names):
        right.plot(np.sort(row[~np.isnan(row)]), label=name, lw=1)
    right.set_xlabel("stimulus rank within model set")
    right.set_ylabel("agreement")
    right.grid(alpha=0.3)
    if len(names) <= 10:
        right.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
