"""Stochastic variational inference (Pyro autoguides) on the same program.

Every guide starts at the Laplace approximation of the posterior (MAP and inverse Hessian in the unconstrained
space): the Gaussian guides take it as their initial location and scale; the ``flow`` guide is a stack of
affine autoregressive transforms acting in the Laplace-whitened coordinates, so it only has to learn the
departures from Gaussianity.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyro
import torch
from pyro.distributions.torch_transform import ComposeTransformModule
from pyro.distributions.transforms import LowerCholeskyAffine, affine_autoregressive
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoDiagonalNormal, AutoMultivariateNormal, AutoNormalizingFlow, init_to_value
from pyro.optim import ClippedAdam
from torch.distributions import biject_to
from tqdm.auto import tqdm

from ..posterior import build_posterior
from .base import METHODS, Method, Settings, setting

__all__ = ["VIMethod", "GUIDES"]


def _gaussian(cls):
    def make(model, init, u0, cov):
        guide = cls(model, init_loc_fn=init, init_scale=0.05)
        guide()  # create the parameters
        if cov is not None:
            with torch.no_grad():
                L = torch.linalg.cholesky(cov).to(guide.loc.dtype)
                d = torch.diagonal(L)
                guide.scale = d
                if isinstance(guide, AutoMultivariateNormal):
                    guide.scale_tril = L / d[:, None]  # scale_tril of the guide is diag(scale) @ unit-lower
        return guide

    return make


def _flow(model, init, u0, cov, num_transforms: int = 3):
    L = torch.linalg.cholesky(cov) if cov is not None else 0.05 * torch.eye(u0.shape[0], dtype=u0.dtype)

    def transform(dim):
        parts = [affine_autoregressive(dim, hidden_dims=[max(16, 4 * dim)] * 2).to(u0.dtype) for _ in range(num_transforms)]
        for part in parts:  # start as the identity, i.e. exactly at the Laplace approximation
            torch.nn.init.zeros_(part.arn.layers[-1].weight)
            torch.nn.init.zeros_(part.arn.layers[-1].bias)
        return ComposeTransformModule(parts + [LowerCholeskyAffine(u0, L)])

    guide = _WhitenedFlow(model, transform)
    guide.dtype = u0.dtype
    guide()
    return guide


class _WhitenedFlow(AutoNormalizingFlow):
    """AutoNormalizingFlow whose base distribution has the program's dtype (float64 by default)."""

    dtype = torch.float64

    def get_base_dist(self):
        zeros = torch.zeros(self.latent_dim, dtype=self.dtype)
        return pyro.distributions.Normal(zeros, torch.ones_like(zeros)).to_event(1)


GUIDES = {
    "normal": _gaussian(AutoDiagonalNormal),
    "multivariate_normal": _gaussian(AutoMultivariateNormal),
    "flow": _flow,
}


@dataclasses.dataclass(frozen=True)
class VISettings(Settings):
    """Stochastic variational inference (Pyro SVI) from the Laplace point."""

    guide: str = setting("multivariate_normal", str, choices=("normal", "multivariate_normal", "flow"))
    steps: int = setting(3000, int, minimum=1, doc="optimisation steps")
    lr: float = setting(0.01, float, above=0, doc="learning rate")
    num_samples: int = setting(4000, int, minimum=1, doc="draws from the fitted guide")


@METHODS.register("vi")
class VIMethod(Method):
    name = "vi"
    Settings = VISettings

    def _run(self, analysis, **s):
        previous = torch.get_default_dtype()
        torch.set_default_dtype(analysis.dtype)  # Pyro's autoguides create some tensors in the default dtype
        try:
            return self._fit(analysis, **s)
        finally:
            torch.set_default_dtype(previous)

    def _fit(self, analysis, **s):
        pyro.clear_param_store()
        u0, cov = analysis.laplace(seed=s["seed"])
        start, _ = analysis.constrain(u0)
        pyro.set_rng_seed(s["seed"])
        init = init_to_value(values={k: v.detach() for k, v in start.items()})
        guide = GUIDES[s["guide"]](analysis.model, init, u0, cov)
        optim = ClippedAdam({"lr": s["lr"], "lrd": 0.02 ** (1.0 / s["steps"]), "clip_norm": 10.0})
        elbo = Trace_ELBO(num_particles=8, vectorize_particles=True, max_plate_nesting=0)
        svi = SVI(analysis.model, guide, optim, elbo)
        losses = []
        with tqdm(range(s["steps"]), desc=f"VI ({s['guide']})", disable=not s["progress"]) as bar:
            for step in bar:
                losses.append(svi.step())
                if step % 100 == 0:
                    bar.set_postfix(loss=f"{losses[-1]:.2f}")
        with torch.no_grad():
            z = guide.get_posterior().sample((s["num_samples"],))
            samples = {}
            for site, value in guide._unpack_latent(z):
                samples[site["name"]] = biject_to(site["fn"].support)(value).numpy()[None]
        tail = np.asarray(losses[-max(1, s["steps"] // 10) :])
        return build_posterior(
            analysis,
            {n: samples[n] for n in analysis.parameter_names},
            method=self.name,
            settings=s,
            extra_attrs={"elbo_final": float(-tail.mean()), "elbo_trace": [float(-x) for x in losses[:: max(1, s["steps"] // 200)]]},
        )
