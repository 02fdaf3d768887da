"""emcee's affine-invariant ensemble sampler on the program's unconstrained log density (vectorised)."""

from __future__ import annotations

import dataclasses

import emcee
import numpy as np
import torch

from ..posterior import build_posterior
from .base import METHODS, Method, Settings, setting
from ..program import LogDensity

__all__ = ["EmceeMethod", "laplace_start"]


def laplace_start(analysis, n: int, seed: int) -> np.ndarray:
    """``n`` starting points drawn from the Laplace approximation at the MAP, in unconstrained space."""
    rng = np.random.default_rng(seed)
    u0, cov = analysis.laplace(seed=seed)
    if cov is not None:
        return rng.multivariate_normal(u0.numpy(), cov.numpy(), size=n)
    return u0.numpy() + 1e-3 * rng.standard_normal((n, u0.shape[0]))


@dataclasses.dataclass(frozen=True)
class EmceeSettings(Settings):
    """emcee's affine-invariant ensemble with vectorised walkers (walkers become arviz chains)."""

    walkers: int = setting(32, int, minimum=1, doc="walkers (at least 2 d + 2 are used)")
    warmup: int = setting(500, int, minimum=0, doc="discarded steps")
    draws: int = setting(1000, int, minimum=1, doc="kept steps per walker (after thinning)")
    thin: int = setting(1, int, minimum=1)


@METHODS.register("emcee")
class EmceeMethod(Method):
    name = "emcee"
    Settings = EmceeSettings

    def _run(self, analysis, **s):

        transforms = analysis.transforms()
        ndim = len(analysis.parameter_names)
        walkers = max(s["walkers"], 2 * ndim + 2)
        ld = LogDensity(analysis)  # the program's density without a Pyro trace per call (same numbers)

        def log_prob(u: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                lp = ld(torch.as_tensor(u, dtype=analysis.dtype))
            lp = lp.numpy().astype(np.float64)
            return np.where(np.isfinite(lp), lp, -np.inf)

        p0 = laplace_start(analysis, walkers, s["seed"])
        sampler = emcee.EnsembleSampler(walkers, ndim, log_prob, vectorize=True)
        sampler.random_state = np.random.RandomState(s["seed"]).get_state()
        sampler.run_mcmc(p0, s["warmup"] + s["draws"] * s["thin"], progress=s["progress"])
        chain = sampler.get_chain(discard=s["warmup"], thin=s["thin"])  # (draws, walkers, ndim)
        u = torch.as_tensor(np.transpose(chain, (1, 0, 2)), dtype=analysis.dtype)  # walkers as arviz chains
        with torch.no_grad():
            values, _ = analysis.constrain(u, transforms)
        samples = {n: v.numpy() for n, v in values.items()}
        stats = {"acceptance_rate": np.broadcast_to(sampler.acceptance_fraction[:, None], u.shape[:2]).copy()}
        return build_posterior(analysis, samples, method=self.name, settings={**s, "walkers": walkers}, sample_stats=stats, log_density=ld)
