"""The study's report (:mod:`jaxagree.study`): ``report.html`` (self-contained: figures inline as
data URIs, opens with no server), ``report.md``, the PNG figures, a gallery of the most
contrastive stimuli with each family's votes, and ``summary.json`` holding every number the
report states."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from jaxagree.io import PredictionTable, write_json
from jaxagree.report import (
    agg_pyplot,
    agreement_summary,
    identify_summary,
    plot_identify_cka,
    plot_identify_scores,
    plot_kappa_by_bin,
    plot_sorted_agreement,
    short_float,
)
from jaxagree.study import Study

FAMILY_COLOURS = {"conv": "tab:blue", "attention": "tab:orange", "mlp": "tab:green", "hybrid": "tab:purple"}
GALLERY_SIZE = 12


def study_summary(study: Study, table: PredictionTable, *, extra: Mapping | None = None) -> dict:
    """Every number of the report: the zoo, agreement per accuracy bin with intervals,
    identifiability per stimulus set with intervals, and each claim with its verdict."""
    agreement = agreement_summary(study.agreement, table)
    accuracy = study.agreement.accuracy
    summary = {
        "num_models": len(study.models),
        "num_stimuli": agreement["num_stimuli"],
        "k": study.agreement.k,
        "families": sorted(set(study.families)),
        "models": [{"name": m, "family": f, "accuracy": short_float(a), **{key: meta[key] for key in sorted(meta)}}
                   for m, f, a, meta in zip(study.models, study.families, accuracy, study.metadata)],
        "accuracy_range": [short_float(np.min(accuracy)), short_float(np.max(accuracy))],
        "kappa_all": [b["fleiss_kappa_all"] for b in agreement.get("accuracy_bins", [])],
        "kappa_contrastive": [b["fleiss_kappa_contrastive"] for b in agreement.get("accuracy_bins", [])],
        "agreement": agreement,
        "identifiability": identify_summary(study.comparison, study.models, study.families),
        "claims": {c.key: {"statement": c.statement, "held": c.held, "evidence": c.evidence, "figure": c.figure}
                   for c in study.claims},
    }
    if study.persistence is not None:
        summary["persistence"] = [short_float(p) for p in np.asarray(study.persistence.persistence)]
    return {**summary, **(extra or {})}


def plot_accuracy_by_budget(study: Study, path: str | os.PathLike) -> Path:
    """Fig. 2's analogue: each model's accuracy on the pool against its parameter count and its
    training steps (from the zoo's metadata), by family."""
    plt = agg_pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    accuracy = study.agreement.accuracy
    for ax, key, label in ((axes[0], "parameters", "parameters"), (axes[1], "steps", "training steps")):
        for family in sorted(set(study.families)):
            members = [i for i, f in enumerate(study.families) if f == family and key in study.metadata[i]]
            if members:
                ax.scatter([study.metadata[i][key] for i in members], accuracy[members], label=family,
                           color=FAMILY_COLOURS.get(family), alpha=0.8)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy on the stimulus pool")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Accuracy against model size and training budget")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_gallery(study: Study, images: np.ndarray, labels: np.ndarray, predictions: np.ndarray,
                 categories: list[str], path: str | os.PathLike) -> Path:
    """The most contrastive stimuli (lowest agreement first), each with its label and each
    family's most common answer and its share of the family's votes."""
    plt = agg_pyplot()
    chosen = study.agreement.contrastive[: len(images)]
    columns = 6
    rows = -(-len(chosen) // columns)
    families = sorted(set(study.families))
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 3.1 * rows), dpi=120, squeeze=False)
    for ax, index, image in zip(axes.flat, chosen, images):
        ax.imshow(image, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        lines = [f"label {categories[labels[index]]}, agreement {study.agreement.agreement[index]:.2f}"]
        for family in families:
            votes = predictions[[i for i, f in enumerate(study.families) if f == family], index]
            votes = votes[votes >= 0]
            if votes.size:
                values, counts = np.unique(votes, return_counts=True)
                top = int(np.argmax(counts))
                lines.append(f"{family}: {categories[values[top]]} ({counts[top] / votes.size:.0%})")
        ax.set_title("\n".join(lines), fontsize=6)
    for ax in list(axes.flat)[len(chosen):]:
        ax.set_visible(False)
    fig.suptitle("Most contrastive stimuli: each family's most common answer and its share of the family's votes")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


FIGURES = [
    ("fig1_cka_by_set.png", "CKA matrices, models ordered by family, on each stimulus set (Fig. 1)."),
    ("identify_scores.png", "How well each stimulus set separates the families, with bootstrap intervals."),
    ("fig2_accuracy_by_budget.png", "Accuracy against parameter count and training steps (Fig. 2's analogue)."),
    ("fig3_kappa_by_accuracy.png", "Fleiss' kappa per accuracy bin over all and over the contrastive stimuli, "
                                   "with bootstrap bands (Fig. 3)."),
    ("fig4_agreement_sorted.png", "Per-stimulus agreement of each accuracy bin, sorted (Fig. 4)."),
    ("gallery.png", "The most contrastive stimuli and each family's votes."),
]


def write_study_report(study: Study, out_dir: str | os.PathLike, *, images: np.ndarray, labels: np.ndarray,
                       predictions: np.ndarray, categories: list[str], title: str,
                       extra: Mapping | None = None, notes: list[str] | None = None) -> dict[str, Path]:
    """Write the report files into ``out_dir``; returns their paths by name.

    Args:
      images: ``uint8 [n, h, w, 3]`` the first ``n`` contrastive stimuli, for the gallery.
      labels, predictions: the pool's labels and the models' predictions (for the gallery's votes).
      categories: class names.
      title: the report's title.
      extra: more entries for ``summary.json`` (e.g. wall times, the zoo's training).
      notes: lines the report adds under "How this was run".
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = PredictionTable(predictions, labels, study.models, [str(i) for i in range(predictions.shape[1])],
                            list(categories))
    summary = study_summary(study, table, extra=extra)
    written = {
        "summary": write_json(out / "summary.json", summary),
        "fig1_cka_by_set.png": plot_identify_cka(study.comparison, study.models, study.families,
                                                 out / "fig1_cka_by_set.png"),
        "identify_scores.png": plot_identify_scores(study.comparison, out / "identify_scores.png"),
        "fig2_accuracy_by_budget.png": plot_accuracy_by_budget(study, out / "fig2_accuracy_by_budget.png"),
        "fig4_agreement_sorted.png": plot_sorted_agreement(study.agreement, out / "fig4_agreement_sorted.png"),
        "gallery.png": plot_gallery(study, images, labels, predictions, categories, out / "gallery.png"),
    }
    if study.agreement.per_bin is not None:
        written["fig3_kappa_by_accuracy.png"] = plot_kappa_by_bin(study.agreement, out / "fig3_kappa_by_accuracy.png")
    sections = _sections(study, summary, notes or [])
    written["report.md"] = _write_text(out / "report.md", _markdown(title, sections, written))
    written["report.html"] = _write_text(out / "report.html", _html(title, sections, written))
    return written


def _sections(study: Study, summary: dict, notes: list[str]) -> list[tuple[str, list[str]]]:
    """(heading, paragraphs) of the report; the figures follow the sections."""
    verdict = {True: "held", False: "did NOT hold", None: "could not be decided"}
    claims = [f"**{verdict[c.held]}**: {c.statement} {c.evidence[0].upper() + c.evidence[1:]}. (Figure: {c.figure})"
              for c in study.claims]
    low, high = summary["accuracy_range"]
    zoo = (f"{summary['num_models']} models in {len(summary['families'])} families "
           f"({', '.join(summary['families'])}), accuracy {low:.1%} to {high:.1%} on {summary['num_stimuli']:,} "
           f"stimuli; k = {summary['k']} contrastive stimuli (the lowest agreement of all models).")
    rows = ["| set | stimuli | family AUC | 1-NN family rate | silhouette |", "|---|---|---|---|---|"]
    for name, entry in summary["identifiability"]["sets"].items():
        s = entry["scores"]
        rows.append(f"| {name} | {entry['num_stimuli']} | " + " | ".join(
            f"{s[f]['value']:.3f} [{s[f]['low']:.3f}, {s[f]['high']:.3f}]"
            for f in ("auc", "knn_accuracy", "silhouette")) + " |")
    bins = summary["agreement"].get("accuracy_bins", [])
    kappa = ["| accuracy bin | models | kappa, all stimuli | kappa, contrastive |", "|---|---|---|---|"]
    for b in bins:
        a = b.get("fleiss_kappa_all_interval", [np.nan] * 2)
        c = b.get("fleiss_kappa_contrastive_interval", [np.nan] * 2)
        kappa.append(f"| {b['accuracy_lower']:.3f}-{b['accuracy_upper']:.3f} | {b['num_models']} | "
                     f"{b['fleiss_kappa_all']:.3f} [{a[0]:.3f}, {a[1]:.3f}] | "
                     f"{b['fleiss_kappa_contrastive']:.3f} [{c[0]:.3f}, {c[1]:.3f}] |")
    confidence = summary["identifiability"]["confidence"]
    meaning = [
        "Each interval is for a set's score at its own size (what another draw of as many stimuli like these "
        "would score): the bootstrap replicates' spread about their median, placed at the estimate. A resample "
        "repeats some stimuli, which blurs every CKA value and pulls rank scores such as the AUC towards chance, "
        "so the plain percentile interval of a small set sits below its estimate. The score of a small set is "
        "also below that of unlimited stimuli: compare sets of one size."]
    return [
        ("The paper's claims, checked here", claims),
        ("The zoo", [zoo]),
        (f"Agreement per accuracy bin ({confidence:.0%} bootstrap intervals over stimuli)", ["\n".join(kappa)]),
        (f"Identifiability of the families per stimulus set ({confidence:.0%} bootstrap intervals)",
         ["\n".join(rows), *meaning]),
        ("How this was run", notes),
    ]


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _markdown(title: str, sections, written: dict[str, Path]) -> str:
    lines = [f"# {title}", ""]
    for heading, paragraphs in sections:
        lines += [f"## {heading}", ""]
        lines += [("- " + p) if heading.startswith("The paper") or heading.startswith("How") else p for p in paragraphs]
        lines.append("")
    lines += ["## Figures", ""]
    for name, caption in FIGURES:
        if name in written:
            lines += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    return "\n".join(lines)


def _html_paragraph(text: str) -> str:
    if text.startswith("|"):  # a markdown table
        rows = [r.strip("|").split("|") for r in text.splitlines() if not set(r) <= set("|-")]
        head, *body = rows
        cells = "".join(f"<th>{html.escape(c.strip())}</th>" for c in head)
        body_html = "".join("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in r) + "</tr>" for r in body)
        return f"<table><tr>{cells}</tr>{body_html}</table>"
    escaped = html.escape(text)
    while "**" in escaped:
        escaped = escaped.replace("**", "<strong>", 1).replace("**", "</strong>", 1)
    return f"<p>{escaped}</p>"


def _html(title: str, sections, written: dict[str, Path]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for heading, paragraphs in sections:
        body.append(f"<h2>{html.escape(heading)}</h2>")
        body += [_html_paragraph(p) for p in paragraphs]
    body.append("<h2>Figures</h2>")
    for name, caption in FIGURES:
        if name in written:
            data = base64.b64encode(Path(written[name]).read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.45}"
             "img{max-width:100%}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}"
             "figcaption{font-style:italic;color:#444}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>")


__all__ = ["FIGURES", "plot_accuracy_by_budget", "plot_gallery", "study_summary", "write_study_report"]
