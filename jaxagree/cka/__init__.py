"""Linear CKA (Kornblith et al. 2019): one pair, every pair of many models, every pair over
stimuli streamed in batches, or every pair over bootstrap resamples of the stimuli.
:mod:`jaxagree.cka.plan` and :mod:`jaxagree.cka.resample` are the seams tests and benchmarks use."""

from jaxagree.cka import plan, resample
from jaxagree.cka._accumulator import CKAAccumulator
from jaxagree.cka._bootstrap import CKABootstrap, cka_bootstrap, cka_bootstrap_replicates
from jaxagree.cka._checks import check_same_stimuli
from jaxagree.cka._matrix import cka_matrix, linear_cka
from jaxagree.cka._moments import CKAState
from jaxagree.cka._stream import CKAStream, cka_stream
from jaxagree.cka.resample import bootstrap_indices, bootstrap_weights

__all__ = [
    "CKAAccumulator",
    "CKABootstrap",
    "CKAState",
    "CKAStream",
    "bootstrap_indices",
    "bootstrap_weights",
    "check_same_stimuli",
    "cka_bootstrap",
    "cka_bootstrap_replicates",
    "cka_matrix",
    "cka_stream",
    "linear_cka",
    "plan",
    "resample",
]
