"""``jaxagree cka``'s files and figure."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jaxagree.analysis import CKAAnalysis
from jaxagree.io import write_csv
from jaxagree.report._common import agg_pyplot

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
    image = draw_cka(ax, matrix, models, families, max_labels=60)
    fig.colorbar(image, ax=ax, label=title)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def draw_cka(ax, matrix: np.ndarray, models: list[str], families: list[str] | None, *, max_labels: int):
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
