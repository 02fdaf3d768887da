"""Tension between two experiments in the model's parameter (latent) space.

``latentinfer.tension(post_a, post_b, joint=None)`` (this module is callable) runs every registered metric
(:mod:`.shift`, :mod:`.gaussian`, :mod:`.evidence`; :mod:`.flow_shift` on request) and the attribution (:mod:`.attribution`); new metrics are
small :class:`TensionMetric` plug-ins registered with :func:`register_metric`.
"""

from __future__ import annotations

import sys
import types

from .api import TensionResult, check_tension, tension, write_tension
from .attribution import attribute
from .base import (
    METRICS,
    MetricResult,
    TensionInputs,
    TensionMetric,
    available_metrics,
    get_metric,
    register_metric,
    sigma_from_probability,
    sigma_from_pte,
)
from .inputs import prepare_inputs, prior_covariance

__all__ = [
    "METRICS",
    "MetricResult",
    "TensionInputs",
    "TensionMetric",
    "TensionResult",
    "attribute",
    "available_metrics",
    "check_tension",
    "get_metric",
    "prepare_inputs",
    "prior_covariance",
    "register_metric",
    "sigma_from_probability",
    "sigma_from_pte",
    "tension",
    "write_tension",
]


class _CallableModule(types.ModuleType):
    """Lets ``latentinfer.tension(...)`` call :func:`tension` while ``latentinfer.tension.X`` stays a module."""

    def __call__(self, *args, **kwargs):
        return tension(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
