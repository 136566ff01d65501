"""Predictions -> counts: one-hot count aggregation, optionally per model subset.

``T[i, j]`` counts the models that predicted category ``j`` for stimulus ``i`` (the paper's
Eq. 1 notation). Two outputs are offered:

* :func:`count_predictions` returns the dense table ``[stimuli, categories]`` (or one per subset).
* :func:`agreement_stats` returns only what agreement and Fleiss' kappa need (raters and sum of
  squared counts per stimulus, totals per category). It never materialises the dense table, so it
  is several times faster and needs ``O(stimuli + categories)`` memory per subset.

Both process stimuli in blocks small enough for the block's work to stay in cache. The stats
have three kernels that give identical results: a dense block table filled by one scatter-add of
the block's ratings (``block_stats``), a per-rating scatter/gather that never sweeps the table
(``sparse_stats``), and a compare-and-sum over the categories that vectorises and has no
scatter (``onehot_stats``, one subset and few categories). :func:`stats_plan` picks one, and
its block size, by a cost model that takes the number of distinct answers per stimulus (estimated
from a sample of stimuli) into account, and splits the stimuli over the CPU's cores. Predictions
``-1`` mean "no response" and are not counted.

The package: ``_checks`` (predictions and masks checked), ``_kernels`` (the block kernels),
``_plan`` (the cost model), ``_run`` (the executables, the cores, the public entry points).
"""

from jaxagree.counts._checks import check_predictions, raise_out_of_range
from jaxagree.counts._plan import StatsPlan, stats_plan
from jaxagree.counts._run import agreement_stats, count_predictions

__all__ = ["StatsPlan", "agreement_stats", "check_predictions", "count_predictions", "raise_out_of_range",
           "stats_plan"]
