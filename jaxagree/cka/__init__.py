"""Linear CKA (Kornblith et al. 2019): one pair, every pair of many models, or every pair over
stimuli streamed in batches. :mod:`jaxagree.cka.plan` is the planning seam for tests and
benchmarks."""

from jaxagree.cka import plan
from jaxagree.cka._accumulator import CKAAccumulator
from jaxagree.cka._checks import check_same_stimuli
from jaxagree.cka._matrix import cka_matrix, linear_cka
from jaxagree.cka._moments import CKAState
from jaxagree.cka._stream import CKAStream, cka_stream

__all__ = [
    "CKAAccumulator",
    "CKAState",
    "CKAStream",
    "check_same_stimuli",
    "cka_matrix",
    "cka_stream",
    "linear_cka",
    "plan",
]
