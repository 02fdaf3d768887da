"""Neural likelihood estimation as a run method: ``inference: {method: nle, num_simulations: ..., num_samples: ...}``.

The program simulates (prior -> forward model -> each likelihood's ``simulate``); sbi trains a conditional density
of the data given the parameters (see :func:`latentinfer.amortized.train`), and the posterior of the config's data is
sampled by sbi's MCMC (``slice_np_vectorized``) on that learned likelihood times the prior. Use it where the
likelihood is not known but the data are low-dimensional; for CMB bandpowers, where the likelihood is known, a
gradient sampler on the program itself is exact and faster.
"""

from __future__ import annotations

import dataclasses

from .base import METHODS, Method, Settings, setting
from ..amortized import train


@dataclasses.dataclass(frozen=True)
class SBISettings(Settings):
    """Settings of the likelihood- and ratio-estimation methods (sampled by MCMC)."""

    num_simulations: int = setting(10000, int, minimum=50, doc="simulations")
    num_samples: int = setting(4000, int, minimum=1, doc="posterior draws (MCMC on the learned density)")


class SBIMethod(Method):
    """A simulation-based method whose estimator is sampled by MCMC (NLE, NRE): ``name`` is the sbi method."""

    Settings = SBISettings

    def _run(self, analysis, **s):
        observed = {lik.name: lik.data for lik in analysis.likelihoods}

        amo = train(analysis, self.name, num_simulations=s["num_simulations"], seed=s["seed"], progress=s["progress"])
        return amo.posterior(observed, num_samples=s["num_samples"], seed=s["seed"])


@METHODS.register("nle")
class NLEMethod(SBIMethod):
    name = "nle"
