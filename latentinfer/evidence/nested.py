"""Nested sampling (dynesty) of the same program: an independent evidence estimate, for cross-checks.

The prior transform runs the prior part of the Pyro program (:meth:`~latentinfer.Analysis.prior_model`) once per
batch with every free sample site set to the inverse CDF of its (conditional) prior at a unit-cube coordinate, in
program order; so correlated nuisance blocks (chains of conditionals) are transformed exactly. Every free prior must be univariate with an ``icdf`` (normal, uniform).
"""

from __future__ import annotations

import warnings

import numpy as np
import pyro
import torch
from pyro import poutine

from ..errors import ConfigError, LatentInferError
from .base import EvidenceResult, register_evidence

__all__ = ["dynesty_evidence", "prior_transform", "NESTED_DEFAULTS"]

#: ``sample="rwalk"``: dynesty's own choice below 10 dimensions ("auto" -> uniform sampling in the ellipsoids)
#: stalls on curved posteriors: on the Planck latent posterior (7 parameters) it needed thousands of calls per
#: iteration halfway through, while random walks finished in 16 minutes, 2.4e5 calls.
NESTED_DEFAULTS = {"nlive": 500, "dlogz": 0.05, "seed": 0, "bound": "multi", "sample": "rwalk", "maxiter": None}


class _UnitCube(poutine.messenger.Messenger):
    """Set free sample site ``i`` (program order) to ``fn.icdf(cube[..., i])``."""

    def __init__(self, cube: torch.Tensor, names):
        super().__init__()
        self.cube, self.index = cube, {n: i for i, n in enumerate(names)}

    def _pyro_sample(self, msg):
        if msg["is_observed"] or msg["name"] not in self.index:
            return
        q = self.cube[..., self.index[msg["name"]]].to(msg["fn"].mean.dtype if hasattr(msg["fn"], "mean") else torch.float64)
        try:
            msg["value"] = msg["fn"].icdf(q)
        except NotImplementedError:
            raise LatentInferError(f"nested sampling needs priors with an inverse CDF; '{msg['name']}' has none") from None
        msg["done"] = True


def prior_transform(analysis, cube: torch.Tensor) -> dict[str, torch.Tensor]:
    """Map unit-cube points ``(..., n_params)`` to constrained parameter values ``{name: (...)}``."""
    names = analysis.parameter_names
    with torch.no_grad():
        tr = poutine.trace(_UnitCube(cube, names)(analysis.prior_model)).get_trace()
    return {n: tr.nodes[n]["value"] for n in names}


@register_evidence("dynesty")
def dynesty_evidence(analysis, posterior=None, **settings) -> EvidenceResult:
    """ln Z by static nested sampling (dynesty); ``posterior`` is ignored. Settings: :data:`NESTED_DEFAULTS`."""
    unknown = set(settings) - set(NESTED_DEFAULTS)
    if unknown:
        raise ConfigError(f"evidence dynesty: unknown settings {sorted(unknown)} (allowed: {', '.join(NESTED_DEFAULTS)})")
    s = {**NESTED_DEFAULTS, **settings}
    try:
        import dynesty
    except ImportError:  # pragma: no cover - test dependency
        raise LatentInferError("evidence method 'dynesty' needs the dynesty package (pip install dynesty)") from None
    ndim = len(analysis.parameter_names)

    def ptform(q):
        vals = prior_transform(analysis, torch.as_tensor(q, dtype=analysis.dtype))
        return np.array([float(vals[n]) for n in analysis.parameter_names])

    def loglike(x):
        with torch.no_grad():
            vals = {n: torch.as_tensor(x[i], dtype=analysis.dtype) for i, n in enumerate(analysis.parameter_names)}
            ll = sum(analysis.log_likelihoods(vals).values())
        val = float(ll)
        return val if np.isfinite(val) else -1e300

    pyro.set_rng_seed(s["seed"])
    sampler = dynesty.NestedSampler(
        loglike, ptform, ndim, nlive=s["nlive"], bound=s["bound"], sample=s["sample"], rstate=np.random.default_rng(s["seed"])
    )
    with warnings.catch_warnings(record=True) as caught:  # dynesty's bounding warnings: kept in the details
        warnings.simplefilter("always")
        sampler.run_nested(dlogz=s["dlogz"], maxiter=s["maxiter"], print_progress=False)
    res = sampler.results
    return EvidenceResult(
        ln_z=float(res.logz[-1]),
        ln_z_err=float(res.logzerr[-1]),
        method="dynesty",
        n_samples=int(res.niter),
        details={
            "nlive": s["nlive"],
            "ncall": int(np.sum(res.ncall)),
            "eff": float(res.eff),
            "settings": s,
            "warnings": sorted({str(w.message) for w in caught}),
        },
    )
