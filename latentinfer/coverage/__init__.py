"""Coverage: are the posteriors calibrated? SBC ranks, TARP and HPD expected coverage over simulated data.

``diagnostics`` computes and judges the statistics from arrays; ``study`` runs an inference method on N
prior-predictive data sets (``latentinfer coverage``) and writes ``coverage.json`` with plots.
"""

from .diagnostics import (
    HPD_LEVELS,
    HPDResult,
    SBCResult,
    TARPResult,
    check_hpd_coverage,
    check_sbc,
    check_tarp,
    run_hpd_coverage,
    run_sbc,
    run_tarp,
)

__all__ = [
    "HPD_LEVELS",
    "HPDResult",
    "SBCResult",
    "TARPResult",
    "check_hpd_coverage",
    "check_sbc",
    "check_tarp",
    "run_hpd_coverage",
    "run_sbc",
    "run_tarp",
]
