"""``agreement --distributed``: each process's block of the prediction table reduced to agreement
statistics, gathered in stimulus order, totals summed."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxagree.distributed._processes import (
    ProcessBlock,
    check_same_input,
    names_checksum,
    process_block,
    process_concat,
    process_max,
    process_status,
    process_sum,
)
from jaxagree.distributed._rows import mapped_array, npy_member, npz_members, partial_read, whole_array


class PredictionBlock(NamedTuple):
    """This process's block of a prediction table, with the names of the whole table.

    Attributes:
      table: a :class:`~jaxagree.io.PredictionTable` whose ``predictions`` are ``[models, block]``
        (the block's columns) and whose other fields describe the whole table.
      block: which stimuli.
      partial: whether only the block's columns were read from the file.
    """

    table: object
    block: ProcessBlock
    partial: bool


def read_prediction_block(path: Path, index: int, count: int, *, categories=None,
                          num_categories: int | None = None, read_whole=None) -> PredictionBlock:
    """Process ``index`` of ``count``'s block of the predictions in ``path``: columns of an
    ``.npy`` or uncompressed ``.npz`` memory-mapped, any other input read whole by ``read_whole()``
    and cut. Without ``categories`` or ``num_categories`` (and none in the file) the block's table
    has no categories: :func:`agreement_distributed` learns them over every process's block."""
    from jaxagree.io import PredictionTable
    from jaxagree.io.arrays import check_prediction_array
    from jaxagree.io.predictions import check_table_values, optional_fields, table_fields

    suffix = path.suffix.lower()
    member = None
    if path.is_file() and suffix == ".npy":
        member, others = npy_member(path), {}
    elif path.is_file() and suffix == ".npz":
        members = npz_members(path)
        if "predictions" in members and partial_read(members["predictions"]):
            member = members.pop("predictions")
            others = {name: whole_array(m) for name, m in members.items()}
    if member is None or not partial_read(member) or member.fortran:
        table = read_whole()
        block = process_block(table.predictions.shape[1], index, count)
        return PredictionBlock(table._replace(predictions=table.predictions[:, block.start : block.stop]), block,
                               False)
    num_models, num_stimuli = check_prediction_array(path, member.shape, member.dtype)
    block = process_block(num_stimuli, index, count)
    preds = np.array(mapped_array(member)[:, block.start : block.stop])
    models, stimuli, labels, categories, num_categories = table_fields(path, others, num_models, num_stimuli,
                                                                       categories, num_categories)
    # Labels are whole on every process: checked as one process checks them.
    check_table_values(path, preds, labels, models, stimuli, num_categories, first_stimulus=block.start)
    groups, conditions, observed = optional_fields(others, num_models, num_stimuli, path)
    table = PredictionTable(preds.astype(np.int32), None if labels is None else labels.astype(np.int32), models,
                            stimuli, list(categories) if categories is not None else [], groups, conditions,
                            observed)
    return PredictionBlock(table, block, True)


UNSUPPORTED_AGREEMENT = {
    "conditions": "per-condition results",
    "observed": "which rater saw which stimulus (folders of CSV files)",
}


def agreement_distributed(table, block: ProcessBlock, *, k: int | None, num_bins: int | None = None,
                          bin_edges=None, error: BaseException | None = None):
    """``(analysis, table)``: the :class:`~jaxagree.analysis.AgreementAnalysis` of the whole table from every process's
    block (``table.predictions`` is this process's ``[models, block]``): agreement, Fleiss' and
    Randolph's kappa, the contrastive stimuli and their kappa; the same on every process and
    equal, value for value, to one process's :func:`~jaxagree.analysis.analyse_agreement`; the
    table with its categories (learnt over every process's block when the input named none).
    With labels (whole on every process), also each model's accuracy, the accuracy bins
    (``num_bins`` / ``bin_edges``) with their kappa over all and over their own contrastive
    stimuli, and error consistency: all from integer counts summed over the processes."""
    import jax.numpy as jnp

    from jaxagree.agreement import fleiss_kappa
    from jaxagree.analysis import agreement_from_stats
    from jaxagree.counts import agreement_stats, check_predictions
    from jaxagree.stats import INT32_LIMIT, AgreementStats

    try:
        if error is not None:
            raise error
        for field, what in UNSUPPORTED_AGREEMENT.items():
            if getattr(table, field) is not None:
                raise ValueError(f"--distributed does not support {what} yet: the table has {field}; run "
                                 "without --distributed")
        if table.labels is None and (num_bins is not None or bin_edges is not None):
            raise ValueError("accuracy bins need labels: give a label column or a labels array")
        largest = int(max(table.predictions.max(initial=-1),
                          table.labels.max(initial=-1) if table.labels is not None else -1))
    except Exception as failure:  # noqa: BLE001 - every process must hear of any failure
        process_status(failure)
        raise
    process_status(None)
    check_same_input([len(table.models), len(table.stimuli), len(table.categories), names_checksum(table.models),
                      names_checksum(table.stimuli), table.labels is not None],
                     "PREDICTIONS (models, stimuli, categories, names' checksums, labels)")
    if not table.categories:  # learnt from the values, as one process learns them from all of its
        largest = process_max(largest)
        if largest < 0:
            raise ValueError("no model gave any response")
        table = table._replace(categories=[str(i) for i in range(largest + 1)])
    num_categories = len(table.categories)
    preds = check_predictions(table.predictions, num_categories)
    if preds.shape[1] > 0:
        local = agreement_stats(preds, num_categories=num_categories)
    else:  # more processes than stimuli
        local = AgreementStats(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(num_categories, np.int64))
    n_raters, squares = np.asarray(local.n_raters), np.asarray(local.sum_squares)
    totals = np.asarray(local.category_totals, np.int64)
    # The wide form (float sums of squares) is chosen by the number of models: the same everywhere.
    n_raters, squares = process_concat(n_raters), process_concat(squares)
    totals = process_sum(totals)
    stats = stats_from_sums(AgreementStats, n_raters, squares, totals, INT32_LIMIT, jnp)

    def contrastive_kappa(contrastive):
        # The contrastive stimuli's category totals: each process counts those in its block.
        mine = contrastive[(contrastive >= block.start) & (contrastive < block.stop)] - block.start
        chosen = np.zeros(num_categories, np.int64)
        if mine.size:
            chosen = np.asarray(agreement_stats(preds[:, np.sort(mine)], num_categories=num_categories)
                                .category_totals, np.int64)
        chosen = process_sum(chosen)
        return fleiss_kappa(stats_from_sums(AgreementStats, n_raters[contrastive], squares[contrastive], chosen,
                                            INT32_LIMIT, jnp))

    analysis = agreement_from_stats(stats, k=k, contrastive_kappa=contrastive_kappa)
    if table.labels is not None:
        analysis = with_labels(analysis, table, preds, block, num_bins, bin_edges)
    return analysis, table


def with_labels(analysis, table, preds, block: ProcessBlock, num_bins, bin_edges):
    """Accuracy, accuracy bins and error consistency, as :func:`~jaxagree.analysis.analyse_agreement`
    computes them with labels and no ``observed`` mask, from counts summed over the processes."""
    import jax
    import jax.numpy as jnp

    from jaxagree.accuracy import accuracy_bins, check_labels
    from jaxagree.agreement import consistency_of_pair_counts, contrastive_stimuli, fleiss_kappa, per_stimulus_agreement
    from jaxagree.analysis import BinResults, default_num_bins
    from jaxagree.counts import agreement_stats
    from jaxagree.stats import INT32_LIMIT, AgreementStats

    num_categories = len(table.categories)
    labels = np.asarray(check_labels(table.labels, len(table.stimuli), num_categories))
    mine = labels[block.start : block.stop]
    host = np.asarray(preds)
    marked = np.broadcast_to(mine >= 0, host.shape)
    right = (host == mine[None, :]) & marked
    # Per-block counts are exact in float32 (0/1 products, fewer than 2**24 stimuli); summed as integers.
    highest = jax.lax.Precision.HIGHEST
    r, seen = jnp.asarray(right, jnp.float32), jnp.asarray(marked, jnp.float32)
    counts = [np.asarray(jnp.matmul(a, b.T, precision=highest)).astype(np.int32) for a, b in
              ((seen, seen), (r, r), (r, seen))] if host.shape[0] >= 2 else []
    summed = process_sum([right.sum(1).astype(np.int32), *counts])
    accuracy = np.asarray(jnp.asarray(summed[0]).astype(jnp.float32)
                          / jnp.asarray(int((labels >= 0).sum())).astype(jnp.float32))
    consistency = None
    if counts:
        pairs = jax.jit(consistency_of_pair_counts)
        consistency = np.asarray(pairs(*(jnp.asarray(c).astype(jnp.float32) for c in summed[1:])))
    if bin_edges is None and num_bins is None:
        num_bins = default_num_bins(host.shape[0])
    bins = accuracy_bins(accuracy, num_bins=num_bins, edges=bin_edges)
    local = agreement_stats(preds, num_categories=num_categories, model_mask=bins.model_mask) \
        if host.shape[1] else AgreementStats(np.zeros((len(bins.model_mask), 0), np.int32),
                                             np.zeros((len(bins.model_mask), 0), np.int32),
                                             np.zeros((len(bins.model_mask), num_categories), np.int64))
    n_raters = process_concat(np.asarray(local.n_raters).T).T  # [bins, stimuli]
    squares = process_concat(np.asarray(local.sum_squares).T).T
    totals = process_sum(np.asarray(local.category_totals, np.int64))
    bin_stats = stats_from_sums(AgreementStats, n_raters, squares, totals, INT32_LIMIT, jnp)
    bin_agreement = per_stimulus_agreement(bin_stats)
    bin_contrastive = np.asarray(contrastive_stimuli(bin_agreement, analysis.k))
    chosen_totals = []
    for members, chosen in zip(bins.model_mask, bin_contrastive):
        inside = chosen[(chosen >= block.start) & (chosen < block.stop)] - block.start
        part = np.zeros(num_categories, np.int64)
        if inside.size:
            part = np.asarray(agreement_stats(preds[np.flatnonzero(members)][:, np.sort(inside)],
                                              num_categories=num_categories).category_totals, np.int64)
        chosen_totals.append(part)
    chosen_totals = process_sum(np.stack(chosen_totals))
    kappa_contrastive = np.array(
        [float(fleiss_kappa(stats_from_sums(AgreementStats, n_raters[b, chosen], squares[b, chosen], chosen_totals[b],
                                   INT32_LIMIT, jnp)))
         for b, chosen in enumerate(bin_contrastive)], np.float32)
    per_bin = BinResults(bins=bins, agreement=np.asarray(bin_agreement), kappa_all=np.asarray(fleiss_kappa(bin_stats)),
                         contrastive=bin_contrastive, kappa_contrastive=kappa_contrastive)
    return analysis._replace(accuracy=accuracy, per_bin=per_bin, error_consistency=consistency)


def stats_from_sums(kind, n_raters, squares, totals, limit, jnp):
    """AgreementStats as one process holds them: int32 totals on the device within int32's range."""
    totals = np.asarray(totals, np.int64)
    totals = jnp.asarray(totals.astype(np.int32)) if totals.max(initial=0) <= limit else totals
    return kind(jnp.asarray(n_raters), jnp.asarray(squares), totals)
