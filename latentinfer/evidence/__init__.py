"""Bayesian evidence (marginal likelihood) ln Z of an analysis, from its posterior samples.

Methods are plug-ins registered by name (:func:`register_evidence`); ``"harmonic"`` is the learned harmonic
mean estimator (McEwen et al. 2021, Polanska et al. 2023) and ``"dynesty"`` is nested sampling, kept as an
independent cross-check (it needs the optional ``dynesty`` package).

>>> from latentinfer.evidence import available_evidence_methods
>>> sorted(available_evidence_methods())
['dynesty', 'harmonic']
"""

from .base import (
    EVIDENCE,
    EvidenceResult,
    available_evidence_methods,
    bayes_factor,
    compute_evidence,
    get_evidence_method,
    jeffreys_reading,
    register_evidence,
)

__all__ = [
    "EVIDENCE",
    "EvidenceResult",
    "available_evidence_methods",
    "bayes_factor",
    "compute_evidence",
    "get_evidence_method",
    "jeffreys_reading",
    "register_evidence",
]
