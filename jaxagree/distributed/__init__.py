"""``jaxagree cka --distributed`` and ``jaxagree agreement --distributed``: several processes
(``jax.distributed``, see :func:`jaxagree.sharding.start_distributed`) each read a contiguous
block of the stimuli, reduce it to a mergeable state, and the states are combined across
processes; every process then holds the result of one process over all stimuli.

* CKA: each process streams its block of every model's features through the exact streaming
  state (:func:`jaxagree.cka_stream`, ``"exact"`` or ``"exact-debiased"``: the CKA of all stimuli
  at once, not an estimate), about stimulus 0 of the set on every process; the states are summed
  over processes (an all-reduce over one device per process).
* Agreement: each process computes the agreement statistics of its block of the prediction
  table (:class:`jaxagree.AgreementStats`); the per-stimulus fields are gathered in stimulus
  order and the category totals summed, so agreement, kappa and the contrastive stimuli are
  those of one process, exactly.

Partial reads: features in a folder of ``.npy`` files or an ``.npz`` written uncompressed
(``np.savez``) are memory-mapped and only the block's rows are read; a compressed ``.npz``
(``np.savez_compressed``) is decompressed up to the block's end (the rows before it are read and
dropped, never held). Predictions in an ``.npy`` or uncompressed ``.npz`` are memory-mapped and
only the block's columns read; other prediction inputs (compressed ``.npz``, CSV/Parquet tables,
folders) are read whole by every process, which then keeps its block.

Every process checks its input before any collective: when one fails, all stop with an error
(``process_status``), none waits for the others forever; inputs that differ between processes
are an error on every process (``check_same_input``).
"""

from jaxagree.distributed._agreement import PredictionBlock, agreement_distributed, read_prediction_block
from jaxagree.distributed._cka import FeatureSource, cka_distributed, state_bytes
from jaxagree.distributed._processes import (
    OtherProcessFailed,
    ProcessBlock,
    check_environment,
    check_same_input,
    process_block,
    process_concat,
    process_max,
    process_status,
    process_sum,
)

__all__ = [
    "FeatureSource",
    "OtherProcessFailed",
    "PredictionBlock",
    "ProcessBlock",
    "agreement_distributed",
    "check_environment",
    "check_same_input",
    "cka_distributed",
    "process_block",
    "process_concat",
    "process_max",
    "process_status",
    "process_sum",
    "read_prediction_block",
    "state_bytes",
]
