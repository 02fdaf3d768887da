"""Stochastic variational inference on the same program.

Every guide starts at the Laplace approximation of the posterior (MAP and inverse Hessian in the unconstrained
space): the Gaussian guides take it as their initial location and scale; the ``flow`` guide is a stack of
affine autoregressive transforms acting in the Laplace-whitened coordinates, so it only has to learn the
departures from Gaussianity.

Two engines fit the Gaussian guides (``engine``):

* ``batched`` (default for ``normal`` and ``multivariate_normal``): the reparameterised ELBO of a Gaussian
  ``q(u) = N(m, L L^T)`` in the unconstrained space, ``E_q[log p(u, data)] + sum log diag L + const``, parametrised
  in the Laplace-whitened coordinates (``m = u_map + L0 a``, ``L = L0 B``, from ``a = 0``, ``B = I``) so that a
  learning-rate step is a fraction of each direction's posterior width, with the
  particles of each step evaluated in one batched call of the program's log density
  (:class:`~latentinfer.program.LogDensity`, the potential the gradient samplers use), Adam with the same learning
  rate, decay and gradient clipping as the Pyro path. No Pyro trace per step: several times faster.
* ``pyro``: Pyro SVI with the autoguide (``Trace_ELBO``, ``ClippedAdam``) on the Pyro model; the reference, and the
  only engine of the ``flow`` guide.

Both fit the same family to the same objective from the same start; they draw different random numbers, so their
results agree within Monte-Carlo error, not bit for bit (tested on the linear-Gaussian posterior).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

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

from ..errors import ConfigError, LatentInferError
from ..posterior import build_posterior
from ..program import LogDensity
from ..program.laplace import batched_laplace
from .base import METHODS, Method, Settings, setting

__all__ = ["GUIDES", "VIMethod", "fit_groups"]


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
    engine: str = setting("auto", str, choices=("auto", "batched", "pyro"),
                          doc="auto: batched for the Gaussian guides, pyro for flow (see the module docstring)")
    particles: int = setting(8, int, minimum=1, doc="Monte-Carlo draws of the ELBO per step")


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
        engine = s["engine"] if s["engine"] != "auto" else ("pyro" if s["guide"] == "flow" else "batched")
        if engine == "batched" and s["guide"] == "flow":
            raise ConfigError("inference: vi engine 'batched' fits the Gaussian guides (normal, multivariate_normal); "
                              "the flow guide needs engine 'pyro'")
        s = {**s, "engine": engine}
        if engine == "batched":
            return self._fit_batched(analysis, **s)
        pyro.clear_param_store()
        u0, cov = analysis.laplace(seed=s["seed"])
        start, _ = analysis.constrain(u0)
        pyro.set_rng_seed(s["seed"])
        init = init_to_value(values={k: v.detach() for k, v in start.items()})
        guide = GUIDES[s["guide"]](analysis.model, init, u0, cov)
        optim = ClippedAdam({"lr": s["lr"], "lrd": 0.02 ** (1.0 / s["steps"]), "clip_norm": 10.0})
        elbo = Trace_ELBO(num_particles=s["particles"], vectorize_particles=True, max_plate_nesting=0)
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

    def _fit_batched(self, analysis, **s):
        """The Gaussian guides fitted on the batched log density (engine ``batched``; module docstring)."""
        u0, cov = analysis.laplace(seed=s["seed"])
        ld = LogDensity(analysis)
        n, dt = u0.shape[0], u0.dtype
        L0 = torch.linalg.cholesky(cov).to(dt) if cov is not None else 0.05 * torch.eye(n, dtype=dt)
        if s["guide"] == "normal":
            L0 = torch.diag(torch.sqrt(torch.diagonal(L0 @ L0.T)))  # the diagonal of the Laplace covariance
        # Laplace-whitened coordinates: u = u_map + L0 (a + B eps), B lower triangular with a positive diagonal,
        # starting at a = 0, B = I (the Laplace approximation). A step of the learning rate is then a fraction of each
        # direction's posterior width, whatever its scale (A_planck's is 0.0025, a latent's 0.05-1).
        W, u_map = L0.detach(), u0.detach()
        loc_w = torch.zeros(n, dtype=dt, requires_grad=True)
        log_diag = torch.zeros(n, dtype=dt, requires_grad=True)
        params = [loc_w, log_diag]
        full = s["guide"] == "multivariate_normal"
        off = torch.zeros(n, n, dtype=dt, requires_grad=True)
        if full:
            params.append(off)
        mask = torch.tril(torch.ones(n, n, dtype=dt), -1)
        log_det_w = torch.log(torch.diagonal(W)).sum()

        def scale_tril():
            B = torch.diag(torch.exp(log_diag))
            return W @ (B + off * mask if full else B)

        def location():
            return u_map + W @ loc_w

        gen = torch.Generator().manual_seed(int(s["seed"]))
        opt = torch.optim.Adam(params, lr=s["lr"])
        decay = 0.02 ** (1.0 / s["steps"])  # ClippedAdam's lrd: the rate falls to 2 % of lr over the run
        const = 0.5 * n * (1.0 + math.log(2 * math.pi))  # entropy of N(0, I_n)
        losses = []
        with tqdm(range(s["steps"]), desc=f"VI ({s['guide']}, batched)", disable=not s["progress"]) as bar:
            for step in bar:
                eps = torch.randn(s["particles"], n, generator=gen, dtype=dt)
                u = location() + eps @ scale_tril().T
                lp = ld(u)
                loss = -(lp.mean() + log_diag.sum() + log_det_w + const)
                if not bool(torch.isfinite(loss)):
                    raise LatentInferError(f"vi: the ELBO became non-finite at step {step} (lower lr, or start elsewhere)")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                for p in params:  # ClippedAdam clips each parameter's gradient norm at 10
                    torch.nn.utils.clip_grad_norm_([p], 10.0)
                opt.step()
                for g in opt.param_groups:
                    g["lr"] *= decay
                losses.append(float(loss.detach()))
                if step % 100 == 0:
                    bar.set_postfix(loss=f"{losses[-1]:.2f}")
        with torch.no_grad():
            u = location() + torch.randn(s["num_samples"], n, generator=gen, dtype=dt) @ scale_tril().T
            xs, _ = ld.constrain(u)
        samples = {name: x.numpy()[None] for name, x in zip(ld.names, xs)}
        tail = np.asarray(losses[-max(1, s["steps"] // 10) :])
        return build_posterior(
            analysis,
            {name: samples[name] for name in analysis.parameter_names},
            method=self.name,
            settings=s,
            extra_attrs={"elbo_final": float(-tail.mean()), "elbo_trace": [float(-x) for x in losses[:: max(1, s["steps"] // 200)]]},
        )


def fit_groups(analysis, data, *, guide: str = "multivariate_normal", steps: int = 3000, lr: float = 0.01,
               particles: int = 8, num_samples: int = 100, seed: int = 0) -> dict[str, Any]:
    """The batched-engine VI on ``G`` data sets at once: ``data = {likelihood: (G, n_data)}``.

    Each data set is its own Gaussian ``N(m_g, L_g L_g^T)`` in the unconstrained space, started at its own Laplace
    approximation (one batched L-BFGS from a prior draw per data set, as :func:`latentinfer.methods.chees.sample_groups`)
    and fitted to its own ELBO; the particles of all groups go through one call of the log density per step. The
    groups share nothing but the calls: Adam acts element by element and the gradient clipping (norm 10 per parameter,
    as ClippedAdam) is applied per group, so each group follows the optimisation a single run would. Returns
    ``"constrained" (G, num_samples, n)``, ``"names"``, ``"log_target" (G, num_samples)`` (log posterior,
    unnormalised, constrained space, under each group's data), ``"log_target_at"`` for other points ``(G, ..., n)``,
    ``"elbo" (G,)``, ``"laplace_ok" (G,)``.
    """
    from .chees import OnePerGroup  # same station; chees imports nothing from vi

    if guide not in ("normal", "multivariate_normal"):
        raise ConfigError(f"vi: batched groups fit the Gaussian guides (normal, multivariate_normal), got guide '{guide}'")
    data = {k: torch.as_tensor(v, dtype=analysis.dtype) for k, v in data.items()}
    G = int(next(iter(data.values())).shape[0])
    ld = LogDensity(analysis, data={k: v[:, None, :] for k, v in data.items()})
    n, dt = ld.n, analysis.dtype
    draws0 = analysis.sample_prior(G, seed=seed)
    u0 = analysis.unconstrain({k: draws0[k] for k in ld.names}, ld.transforms).detach().reshape(G, n)
    u_map, cov, ok = batched_laplace(OnePerGroup(ld), u0)
    if bool(ok.any()) and not bool(ok.all()):  # no usable Hessian: borrow the other data sets' mean covariance
        cov = torch.where(ok[:, None, None], cov, cov[ok].mean(0))
    elif not bool(ok.any()):
        cov = 0.05**2 * torch.eye(n, dtype=dt).expand(G, n, n)
    L0 = torch.linalg.cholesky(cov)
    if guide == "normal":
        L0 = torch.diag_embed(torch.sqrt(torch.diagonal(cov, dim1=-2, dim2=-1)))
    # Laplace-whitened coordinates per group, as the single-data-set engine (VIMethod._fit_batched)
    W, u_map = L0.detach(), u_map.detach()
    loc_w = torch.zeros(G, n, dtype=dt, requires_grad=True)
    log_diag = torch.zeros(G, n, dtype=dt, requires_grad=True)
    params = [loc_w, log_diag]
    full = guide == "multivariate_normal"
    off = torch.zeros(G, n, n, dtype=dt, requires_grad=True)
    if full:
        params.append(off)
    mask = torch.tril(torch.ones(n, n, dtype=dt), -1)
    log_det_w = torch.log(torch.diagonal(W, dim1=-2, dim2=-1)).sum(-1)

    def scale_tril():
        B = torch.diag_embed(torch.exp(log_diag))
        return W @ (B + off * mask if full else B)

    def location():
        return u_map + (W @ loc_w[..., None])[..., 0]

    gen = torch.Generator().manual_seed(int(seed) % (2**63))
    opt = torch.optim.Adam(params, lr=lr)
    decay = 0.02 ** (1.0 / steps)
    const = 0.5 * n * (1.0 + math.log(2 * math.pi))
    for _ in range(steps):
        eps = torch.randn(G, particles, n, generator=gen, dtype=dt)
        u = location()[:, None, :] + eps @ scale_tril().transpose(-1, -2)
        lp = ld(u)  # (G, particles)
        lp = torch.where(torch.isfinite(lp), lp, torch.full_like(lp, -1e30))
        elbo = lp.mean(1) + log_diag.sum(1) + log_det_w + const
        opt.zero_grad(set_to_none=True)
        (-elbo.sum()).backward()
        with torch.no_grad():
            for p in params:  # clip each group's gradient of each parameter at norm 10
                norm = p.grad.reshape(G, -1).norm(dim=1).clamp_min(1e-30)
                p.grad.mul_((10.0 / norm).clamp(max=1.0).reshape((G,) + (1,) * (p.dim() - 1)))
        opt.step()
        for g in opt.param_groups:
            g["lr"] *= decay
    ld64 = ld
    with torch.no_grad():
        u = location()[:, None, :] + torch.randn(G, num_samples, n, generator=gen, dtype=dt) @ scale_tril().transpose(-1, -2)
        xs, _ = ld64.constrain(u)
        constrained = torch.stack(xs, -1)
        lt = ld64.log_joint(xs, u.shape[:-1])

    def log_target_at(values: np.ndarray) -> np.ndarray:
        """Log posterior (constrained space) of ``values (G, ..., n)`` under each group's data, in float64."""
        v = torch.as_tensor(values, dtype=dt)
        flat = v.reshape(G, -1, v.shape[-1])
        with torch.no_grad():
            return ld64.log_joint([flat[..., i] for i in range(n)], flat.shape[:-1]).reshape(v.shape[:-1]).numpy()

    return {"names": list(ld.names), "constrained": constrained.numpy(), "log_target": lt.numpy(),
            "log_target_at": log_target_at, "elbo": elbo.detach().numpy(), "laplace_ok": ok.numpy()}
