"""jaxagree: find the stimuli on which many vision models disagree, and use them to tell models apart."""

from jaxagree.accuracy import AccuracyBins, accuracy_bins, model_accuracy
from jaxagree.agreement import (
    contrastive_stimuli,
    error_consistency,
    fleiss_kappa,
    per_stimulus_agreement,
)
from jaxagree.agreement_bootstrap import AgreementBootstrap, agreement_bootstrap
from jaxagree.analysis import (
    StimulusPlan,
    StimulusSetComparison,
    compare_stimulus_sets,
    random_sets,
    stimuli_needed,
)
from jaxagree.cka import (
    CKAAccumulator,
    CKABootstrap,
    CKAState,
    CKAStream,
    bootstrap_indices,
    bootstrap_weights,
    cka_bootstrap,
    cka_matrix,
    cka_stream,
    linear_cka,
)
from jaxagree.counts import agreement_stats, count_predictions
from jaxagree.identify import (
    Identifiability,
    IdentifiabilityScores,
    ModelIdentification,
    identifiability,
    identifiability_scores,
    identify_models,
)
from jaxagree.io import read_model_vs_human, read_per_image_predictions, read_prediction_folder
from jaxagree.io.exports import cka_long_table, count_table, write_cka_long, write_count_table
from jaxagree.search import (
    CandidateRanking,
    Persistence,
    StimulusSelection,
    persistence,
    rank_candidates,
    select_stimuli,
)
from jaxagree.sharding import stimulus_mesh
from jaxagree.stats import AgreementStats, merge_stats

__version__ = "0.1.0"

__all__ = [
    "AccuracyBins",
    "AgreementBootstrap",
    "AgreementStats",
    "CKAAccumulator",
    "CKABootstrap",
    "CKAState",
    "CKAStream",
    "CandidateRanking",
    "Identifiability",
    "IdentifiabilityScores",
    "ModelIdentification",
    "Persistence",
    "StimulusSelection",
    "StimulusPlan",
    "StimulusSetComparison",
    "accuracy_bins",
    "agreement_bootstrap",
    "agreement_stats",
    "bootstrap_indices",
    "bootstrap_weights",
    "cka_bootstrap",
    "cka_long_table",
    "cka_matrix",
    "cka_stream",
    "compare_stimulus_sets",
    "contrastive_stimuli",
    "count_predictions",
    "count_table",
    "error_consistency",
    "fleiss_kappa",
    "identifiability",
    "identifiability_scores",
    "identify_models",
    "linear_cka",
    "merge_stats",
    "model_accuracy",
    "per_stimulus_agreement",
    "persistence",
    "random_sets",
    "rank_candidates",
    "select_stimuli",
    "stimuli_needed",
    "stimulus_mesh",
    "write_cka_long",
    "write_count_table",
    "read_model_vs_human",
    "read_per_image_predictions",
    "read_prediction_folder",
]
