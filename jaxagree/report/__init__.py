"""Report files and figures of the agreement, CKA and identifiability analyses (one module each;
``_common``: what they share)."""

from jaxagree.report._agreement import (
    agreement_summary,
    condition_summary,
    error_consistency_by_group,
    plot_kappa_by_bin,
    plot_sorted_agreement,
    write_agreement_report,
)
from jaxagree.report._cka import plot_cka, write_cka_report
from jaxagree.report._common import agg_pyplot, short_float
from jaxagree.report._identify import (
    identify_line,
    identify_summary,
    plot_identify_cka,
    plot_identify_scores,
    write_identify_report,
)

__all__ = [
    "agg_pyplot",
    "agreement_summary",
    "condition_summary",
    "error_consistency_by_group",
    "identify_line",
    "identify_summary",
    "plot_cka",
    "plot_identify_cka",
    "plot_identify_scores",
    "plot_kappa_by_bin",
    "plot_sorted_agreement",
    "short_float",
    "write_agreement_report",
    "write_cka_report",
    "write_identify_report",
]
