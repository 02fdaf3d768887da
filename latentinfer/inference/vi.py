"""Stochastic variational inference (Pyro autoguides) on the same program."""

from __future__ import annotations

import numpy as np
import pyro
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoDiagonalNormal, AutoIAFNormal, AutoMultivariateNormal, init_to_value
from pyro.optim import ClippedAdam
from torch.distributions import biject_to
from tqdm.auto import tqdm

from .base import InferenceMethod, build_posterior, register_method

__all__ = ["VIMethod", "GUIDES"]

GUIDES = {
    "normal": lambda model, init: AutoDiagonalNormal(model, init_loc_fn=init, init_scale=0.05),
    "multivariate_normal": lambda model, init: AutoMultivariateNormal(model, init_loc_fn=init, init_scale=0.05),
    "flow": lambda model, init: AutoIAFNormal(model, num_transforms=3, init_loc_fn=init, init_scale=0.05),
}


@register_method
class VIMethod(InferenceMethod):
    name = "vi"
    settings = ("guide", "steps", "lr", "num_samples", "seed", "progress")

    def _run(self, analysis, **s):
        pyro.clear_param_store()
        start = analysis.find_map(seed=s["seed"])
        pyro.set_rng_seed(s["seed"])
        guide = GUIDES[s["guide"]](analysis.model, init_to_value(values={k: v.detach() for k, v in start.items()}))
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
