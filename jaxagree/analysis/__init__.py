"""The paper's analyses as library calls: what ``jaxagree agreement`` and ``jaxagree cka``
compute, stimulus sets compared by how well they tell models apart, and how many stimuli a
study needs to tell them apart; for the CLI, the report, the demo and notebooks alike."""

from jaxagree.analysis._agreement import (
    AgreementAnalysis,
    BinResults,
    ConditionResults,
    agreement_from_stats,
    analyse_agreement,
    default_k,
    default_num_bins,
)
from jaxagree.analysis._cka import CKAAnalysis, analyse_cka, summarise_cka
from jaxagree.analysis._planning import StimulusPlan, stimuli_needed
from jaxagree.analysis._sets import (
    SetDifference,
    SetScores,
    StimulusSetComparison,
    compare_stimulus_sets,
    random_sets,
)

__all__ = [
    "AgreementAnalysis",
    "BinResults",
    "CKAAnalysis",
    "ConditionResults",
    "SetDifference",
    "SetScores",
    "StimulusPlan",
    "StimulusSetComparison",
    "agreement_from_stats",
    "analyse_agreement",
    "analyse_cka",
    "compare_stimulus_sets",
    "default_k",
    "default_num_bins",
    "random_sets",
    "stimuli_needed",
    "summarise_cka",
]
