"""Neural ratio estimation as a run method: ``inference: {method: nre, num_simulations: ..., num_samples: ...}``.

sbi trains a classifier between joint and marginal (parameter, data) pairs, whose logit is the likelihood-to-evidence
ratio; the posterior of the config's data is sampled by sbi's MCMC on it. Settings as for ``nle``
(:class:`~latentinfer.methods.nle.SBISettings`).
"""

from __future__ import annotations

from .base import METHODS
from .nle import SBIMethod


@METHODS.register("nre")
class NREMethod(SBIMethod):
    name = "nre"
