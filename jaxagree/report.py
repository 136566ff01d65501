"""Report files and figures of the agreement, CKA and identifiability analyses."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from jaxagree.agreement_bootstrap import percentile_interval
from jaxagree.analysis import AgreementAnalysis, CKAAnalysis, StimulusSetComparison
from jaxagree.io import PredictionTable, write_csv, write_json


def short_float(value) -> float:
    """A float32 result as the shortest decimal that round-trips (no spurious digits)."""
    return float(str(np.float32(value)))


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


def agg_pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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


LONG_FORMATS = ("csv", "parquet", "both")


def write_cka_report(
    analysis: CKAAnalysis,
    out_dir: str | os.PathLike,
    *,
    long_format: str = "csv",
    metadata: dict[str, dict] | None = None,
) -> dict[str, Path]:
    """Write ``cka.csv`` (a square table with model names), the same values as a long table with
    one row per unordered pair of models (:func:`jaxagree.io.cka_long_table`: ``model_a, model_b,
    cka``, ``family_a, family_b, same_family`` when the analysis has families, ``<field>_a,
    <field>_b`` per ``metadata`` field) as ``cka_long.csv``, ``cka_long.parquet`` or both
    (``long_format``: ``"csv"``, ``"parquet"`` or ``"both"``), and ``cka.png`` (a heatmap, models
    grouped by family when the analysis has families)."""
    from jaxagree.io.exports import write_cka_long

    if long_format not in LONG_FORMATS:
        raise ValueError(f"long_format must be one of {', '.join(LONG_FORMATS)}, got {long_format!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    models, matrix, families = analysis.models, np.asarray(analysis.matrix), analysis.families
    written = {
        "cka": write_csv(out / "cka.csv", ["model", *models], ([m, *row] for m, row in zip(models, matrix))),
    }
    for suffix in ("csv", "parquet"):
        if long_format in (suffix, "both"):
            written[f"cka_long_{suffix}"] = write_cka_long(out / f"cka_long.{suffix}", matrix, models, metadata,
                                                           families=families)
    order = np.arange(len(models))
    if families:
        order = np.array(sorted(range(len(models)), key=lambda i: (families[i], i)))
    written["heatmap"] = plot_cka(matrix[np.ix_(order, order)], [models[i] for i in order],
                                  out / "cka.png", families=[families[i] for i in order] if families else None,
                                  title=analysis.title)
    return written


def plot_cka(
    matrix: np.ndarray, models: list[str], path: str | os.PathLike, *, families: list[str] | None, title: str
) -> Path:
    """Heatmap of a model-by-model similarity matrix; family boundaries drawn when given."""
    plt = agg_pyplot()
    size = min(12.0, 3.0 + 0.12 * len(models))
    fig, ax = plt.subplots(figsize=(size + 1.5, size), dpi=120)
    image = _draw_cka(ax, matrix, models, families, max_labels=60)
    fig.colorbar(image, ax=ax, label=title)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def _draw_cka(ax, matrix: np.ndarray, models: list[str], families: list[str] | None, *, max_labels: int):
    """One similarity heatmap on ``ax`` (model names up to ``max_labels`` models, family
    boundaries and names when given); returns the image for a colour bar."""
    image = ax.imshow(matrix, cmap="magma", vmin=0, vmax=1, interpolation="nearest")
    if len(models) <= max_labels:
        ax.set_xticks(range(len(models)), models, rotation=90, fontsize=6)
        ax.set_yticks(range(len(models)), models, fontsize=6)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    if families:
        edges = [i for i in range(1, len(families)) if families[i] != families[i - 1]]
        for edge in edges:
            ax.axhline(edge - 0.5, color="white", lw=0.8)
            ax.axvline(edge - 0.5, color="white", lw=0.8)
        starts = [0, *edges]
        ends = [*edges, len(families)]
        for start, end in zip(starts, ends):
            ax.text(len(families) - 0.3, (start + end - 1) / 2, f" {families[start]}", ha="left",
                    va="center", fontsize=8, clip_on=False)
    return image

SCORE_LABELS = {
    "auc": "AUC (within vs between pairs)",
    "knn_accuracy": "1-NN identification rate",
    "silhouette": "silhouette",
    "auprc": "AUPRC",
    "conformity": "conformity",
    "architecture_rate": "architecture identification rate",
}


def _score_rows(comparison: StimulusSetComparison):
    """(set, num_stimuli, score, value, low, high) for every set and score, in the sets' order."""
    for name, result in comparison.sets.items():
        for field in result.replicates._fields:
            yield (name, result.num_stimuli, field, float(getattr(result.scores, field)),
                   getattr(result.low, field), getattr(result.high, field))
        if result.architecture_rate is not None:
            yield (name, result.num_stimuli, "architecture_rate", result.architecture_rate,
                   result.architecture_low, result.architecture_high)


def identify_summary(comparison: StimulusSetComparison, models: list[str], families: list[str], *,
                     parameters: dict | None = None) -> dict:
    """What ``identify.json`` holds: the groups, ``num_bootstrap``, ``confidence`` (and the run's
    ``parameters``); per set its ``num_stimuli``, each score as ``{value, low, high}`` (the AUC with
    its label-permutation ``p_value``) and, against the baseline, each score's ``{difference, low,
    high, p_value}`` (two-sided bootstrap) and ``common_draws``."""
    sets = {}
    for name, result in comparison.sets.items():
        scores = {}
        for set_name, _, field, value, low, high in _score_rows(comparison):
            if set_name == name:
                scores[field] = {"value": value, "low": low, "high": high}
        scores["auc"]["p_value"] = float(result.scores.p_value)
        entry = {"num_stimuli": result.num_stimuli, "scores": scores}
        versus = comparison.versus_baseline.get(name)
        if versus is not None:
            entry["versus_baseline"] = {
                "baseline": comparison.baseline,
                "common_draws": bool(versus.common_draws),
                **{field: {"difference": float(getattr(versus.difference, field)),
                           "low": getattr(versus.low, field), "high": getattr(versus.high, field),
                           "p_value": getattr(versus.p_value, field)}
                   for field in versus.difference._fields},
            }
        sets[name] = entry
    return {
        "num_models": len(models),
        "groups": list(comparison.groups),
        "families": dict(zip(models, families)),
        "num_bootstrap": comparison.num_bootstrap,
        "confidence": comparison.confidence,
        "baseline": comparison.baseline,
        **(parameters or {}),
        "sets": sets,
    }


def write_identify_report(comparison: StimulusSetComparison, models: list[str], families: list[str],
                          out_dir: str | os.PathLike, *, parameters: dict | None = None) -> dict[str, Path]:
    """Write ``identify.json`` (:func:`identify_summary`), ``identify.csv`` (set, num_stimuli,
    score, value, low, high), ``identify_scores.png`` (each score per set with its interval) and
    ``identify_cka.png`` (each set's CKA matrix, models ordered by family); returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return {
        "json": write_json(out / "identify.json",
                           identify_summary(comparison, models, families, parameters=parameters)),
        "csv": write_csv(out / "identify.csv", ["set", "num_stimuli", "score", "value", "low", "high"],
                         _score_rows(comparison)),
        "scores": plot_identify_scores(comparison, out / "identify_scores.png"),
        "cka": plot_identify_cka(comparison, models, families, out / "identify_cka.png"),
    }


def identify_line(name: str, comparison: StimulusSetComparison) -> str:
    """One line on a set: its size, AUC (interval, permutation p), 1-NN rate, silhouette, and its
    AUC against the baseline."""
    result = comparison.sets[name]
    scores, low, high = result.scores, result.low, result.high
    line = (f"{name}: {result.num_stimuli} stimuli, auc {float(scores.auc):.3f} [{low.auc:.3f}, {high.auc:.3f}] "
            f"p={float(scores.p_value):.3g}, knn {float(scores.knn_accuracy):.3f} "
            f"[{low.knn_accuracy:.3f}, {high.knn_accuracy:.3f}], silhouette {float(scores.silhouette):.3f} "
            f"[{low.silhouette:.3f}, {high.silhouette:.3f}]")
    if result.architecture_rate is not None:
        line += f", architecture {result.architecture_rate:.3f}"
    versus = comparison.versus_baseline.get(name)
    if versus is not None:
        line += (f"; vs {comparison.baseline}: auc {float(versus.difference.auc):+.3f} "
                 f"[{versus.low.auc:+.3f}, {versus.high.auc:+.3f}] p={versus.p_value.auc:.3g}")
    elif name == comparison.baseline:
        line += " (baseline)"
    return line


def plot_identify_scores(comparison: StimulusSetComparison, path: str | os.PathLike) -> Path:
    """Each score per stimulus set, with its percentile bootstrap interval; one panel per score."""
    plt = agg_pyplot()
    rows = list(_score_rows(comparison))
    fields = list(dict.fromkeys(row[2] for row in rows))
    names = list(comparison.sets)
    columns = min(3, len(fields))
    lines = -(-len(fields) // columns)
    width = max(3.2, 0.5 * len(names) + 1.5)
    fig, axes = plt.subplots(lines, columns, figsize=(width * columns, 3.2 * lines), dpi=120, squeeze=False)
    for ax, field in zip(axes.flat, fields):
        values = np.array([[r[3], r[4], r[5]] for r in rows if r[2] == field], np.float64)
        value, low, high = values.T
        x = np.arange(len(names))
        error = np.stack([np.clip(value - low, 0, None), np.clip(high - value, 0, None)])
        error = np.where(np.isfinite(error), error, 0.0)
        colours = ["tab:grey" if n == comparison.baseline else "tab:blue" for n in names]
        for i in x:
            ax.errorbar(x[i], value[i], yerr=error[:, i : i + 1], fmt="o", color=colours[i], capsize=3)
        ax.set_xticks(x, names, rotation=45, ha="right", fontsize=7)
        ax.set_title(SCORE_LABELS.get(field, field), fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(fields):]:
        ax.set_visible(False)
    fig.suptitle(f"Identifiability per stimulus set ({100 * comparison.confidence:g}% bootstrap intervals, "
                 f"{comparison.num_bootstrap} resamples)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_identify_cka(comparison: StimulusSetComparison, models: list[str], families: list[str],
                      path: str | os.PathLike) -> Path:
    """Each set's CKA matrix side by side (up to four a row), models ordered by family."""
    plt = agg_pyplot()
    order = np.array(sorted(range(len(models)), key=lambda i: (families[i], i)))
    names = [models[i] for i in order]
    ordered_families = [families[i] for i in order]
    columns = min(4, len(comparison.sets))
    lines = -(-len(comparison.sets) // columns)
    panel = min(6.0, 2.5 + 0.08 * len(models))
    fig, axes = plt.subplots(lines, columns, figsize=(panel * columns + 1.5, panel * lines + 0.5), dpi=120,
                             squeeze=False, gridspec_kw={"wspace": 0.5, "hspace": 0.4})
    image = None
    for ax, (name, result) in zip(axes.flat, comparison.sets.items()):
        matrix = np.asarray(result.similarity)[np.ix_(order, order)]
        image = _draw_cka(ax, matrix, names, ordered_families, max_labels=30)
        ax.set_title(f"{name} ({result.num_stimuli} stimuli)\nAUC {float(result.scores.auc):.3f}", fontsize=9)
    for ax in list(axes.flat)[len(comparison.sets):]:
        ax.set_visible(False)
    fig.colorbar(image, ax=axes.ravel().tolist(), label="linear CKA", shrink=0.8)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return Path(path)



__all__ = [
    "agreement_summary",
    "condition_summary",
    "error_consistency_by_group",
    "identify_line",
    "identify_summary",
    "plot_cka",
    "plot_identify_cka",
    "plot_identify_scores",
    "plot_kappa_by_bin",
    "plot_sorted_agreement",
    "write_agreement_report",
    "write_cka_report",
    "write_identify_report",
]
