"""``jaxagree identify``'s files and figures."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jaxagree.analysis import StimulusSetComparison
from jaxagree.io import write_csv, write_json
from jaxagree.report._cka import draw_cka
from jaxagree.report._common import agg_pyplot

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
        image = draw_cka(ax, matrix, names, ordered_families, max_labels=30)
        ax.set_title(f"{name} ({result.num_stimuli} stimuli)\nAUC {float(result.scores.auc):.3f}", fontsize=9)
    for ax in list(axes.flat)[len(comparison.sets):]:
        ax.set_visible(False)
    fig.colorbar(image, ax=axes.ravel().tolist(), label="linear CKA", shrink=0.8)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return Path(path)
