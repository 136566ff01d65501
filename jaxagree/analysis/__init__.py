"""The paper's analyses as library calls: what ``jaxagree agreement`` and ``jaxagree cka``
compute, for the CLI, the report, the demo and notebooks alike."""

from jaxagree.analysis._agreement import (
    AgreementAnalysis,
    BinResults,
    analyse_agreement,
    default_k,
    default_num_bins,
)
from jaxagree.analysis._cka import CKAAnalysis, analyse_cka

__all__ = [
    "AgreementAnalysis",
    "BinResults",
    "CKAAnalysis",
    "analyse_agreement",
    "analyse_cka",
    "default_k",
    "default_num_bins",
]
