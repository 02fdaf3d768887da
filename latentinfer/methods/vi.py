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
    gradient: str = setting("handwritten", str, choices=("handwritten", "autograd"),
                            doc="batched engine's log-density gradient: hand-written backward or torch autograd")


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
        return self._posterior(analysis, samples, s, losses)

    def _fit_batched(self, analysis, **s):
        """The Gaussian guides fitted on the batched log density (engine ``batched``; module docstring)."""
        u0, cov = analysis.laplace(seed=s["seed"])
        ld = LogDensity(analysis, backend=s["gradient"])
        n, dt = u0.shape[0], u0.dtype
        L0 = torch.linalg.cholesky(cov).to(dt) if cov is not None else 0.05 * torch.eye(n, dtype=dt)
        if s["guide"] == "normal":
            L0 = torch.diag(torch.sqrt(torch.diagonal(L0 @ L0.T)))  # the diagonal of the Laplace covariance
        gen = torch.Generator().manual_seed(int(s["seed"]))
        fit = _fit_whitened(ld, u0.detach()[None], L0[None], full=s["guide"] == "multivariate_normal",
                            steps=s["steps"], lr=s["lr"], particles=s["particles"], gen=gen, nonfinite="raise",
                            progress=f"VI ({s['guide']}, batched)" if s["progress"] else None)
        with torch.no_grad():
            u = fit["location"]()[0] + torch.randn(s["num_samples"], n, generator=gen, dtype=dt) @ fit["scale_tril"]()[0].T
            xs, _ = ld.constrain(u)
        return self._posterior(analysis, {name: x.numpy()[None] for name, x in zip(ld.names, xs)}, s, fit["losses"])

    def _posterior(self, analysis, samples, s, losses):
        """The posterior of either engine: draws by name ``(1, num_samples)``, the settings, the final ELBO (mean of
        the last tenth of the steps) and a thinned ELBO trace."""
        tail = np.asarray(losses[-max(1, s["steps"] // 10) :])
        return build_posterior(
            analysis,
            {name: samples[name] for name in analysis.parameter_names},
            method=self.name,
            settings=s,
            extra_attrs={"elbo_final": float(-tail.mean()), "elbo_trace": [float(-x) for x in losses[:: max(1, s["steps"] // 200)]]},
        )


def fit_groups(analysis, data, *, guide: str = "multivariate_normal", steps: int = 3000, lr: float = 0.01,
               particles: int = 8, num_samples: int = 100, seed: int = 0, gradient: str = "handwritten") -> dict[str, Any]:
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
    ld = LogDensity(analysis, data={k: v[:, None, :] for k, v in data.items()}, backend=gradient)
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
    gen = torch.Generator().manual_seed(int(seed) % (2**63))
    fit = _fit_whitened(ld, u_map, L0, full=guide == "multivariate_normal", steps=steps, lr=lr,
                        particles=particles, gen=gen, nonfinite="mask")
    with torch.no_grad():
        u = fit["location"]()[:, None, :] + torch.randn(G, num_samples, n, generator=gen, dtype=dt) @ fit["scale_tril"]().transpose(-1, -2)
        xs, _ = ld.constrain(u)
        constrained = torch.stack(xs, -1)
        lt = ld.log_joint(xs, u.shape[:-1])

    def log_target_at(values: np.ndarray) -> np.ndarray:
        """Log posterior (constrained space) of ``values (G, ..., n)`` under each group's data, in float64."""
        v = torch.as_tensor(values, dtype=dt)
        flat = v.reshape(G, -1, v.shape[-1])
        with torch.no_grad():
            return ld.log_joint([flat[..., i] for i in range(n)], flat.shape[:-1]).reshape(v.shape[:-1]).numpy()

    return {"names": list(ld.names), "constrained": constrained.numpy(), "log_target": lt.numpy(),
            "log_target_at": log_target_at, "elbo": fit["elbo"].numpy(), "laplace_ok": ok.numpy()}


def _fit_whitened(log_density, u_map: torch.Tensor, L0: torch.Tensor, *, full: bool, steps: int, lr: float,
                  particles: int, gen: torch.Generator, nonfinite: str, progress: str | None = None) -> dict[str, Any]:
    """The batched engine's optimisation, for ``G`` independent Gaussians at once (one for a single run).

    Laplace-whitened coordinates: ``u = u_map + L0 (a + B eps)``, ``B`` lower triangular with a positive diagonal,
    from ``a = 0``, ``B = I`` (the Laplace approximation), so a step of the learning rate is a fraction of each
    direction's posterior width whatever its scale (A_planck's is 0.0025, a latent's 0.05-1). ``log_density(u (G, K,
    n)) -> (G, K)``; each group's ELBO is maximised by Adam with ClippedAdam's decay (to 2 % of ``lr``) and gradient
    clipping (norm 10 per parameter and group). ``nonfinite``: ``"raise"`` stops at a non-finite ELBO, ``"mask"``
    scores a non-finite point as -1e30. Returns ``location()`` (G, n), ``scale_tril()`` (G, n, n), the last ``elbo``
    (G,) and the loss per step (summed over groups)."""
    G, n = u_map.shape
    dt = u_map.dtype
    W = L0.detach()
    loc_w = torch.zeros(G, n, dtype=dt, requires_grad=True)
    log_diag = torch.zeros(G, n, dtype=dt, requires_grad=True)
    off = torch.zeros(G, n, n, dtype=dt, requires_grad=True)
    params = [loc_w, log_diag] + ([off] if full else [])
    mask = torch.tril(torch.ones(n, n, dtype=dt), -1)
    log_det_w = torch.log(torch.diagonal(W, dim1=-2, dim2=-1)).sum(-1)

    def scale_tril():
        B = torch.diag_embed(torch.exp(log_diag))
        return W @ (B + off * mask if full else B)

    def location():
        return u_map + (W @ loc_w[..., None])[..., 0]

    opt = torch.optim.Adam(params, lr=lr)
    decay = 0.02 ** (1.0 / steps)
    const = 0.5 * n * (1.0 + math.log(2 * math.pi))  # entropy of N(0, I_n)
    losses, elbo = [], None
    with tqdm(range(steps), desc=progress or "VI", disable=progress is None) as bar:
        for step in bar:
            eps = torch.randn(G, particles, n, generator=gen, dtype=dt)
            lp = log_density(location()[:, None, :] + eps @ scale_tril().transpose(-1, -2))  # (G, particles)
            if nonfinite == "mask":
                lp = torch.where(torch.isfinite(lp), lp, torch.full_like(lp, -1e30))
            elbo = lp.mean(1) + log_diag.sum(1) + log_det_w + const
            loss = -elbo.sum()
            if nonfinite == "raise" and not bool(torch.isfinite(loss)):
                raise LatentInferError(f"vi: the ELBO became non-finite at step {step} (lower lr, or start elsewhere)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():
                for p in params:  # clip each group's gradient of each parameter at norm 10 (as torch's clip_grad_norm_)
                    norm = p.grad.reshape(G, -1).norm(dim=1)
                    p.grad.mul_((10.0 / (norm + 1e-6)).clamp(max=1.0).reshape((G,) + (1,) * (p.dim() - 1)))
            opt.step()
            for g in opt.param_groups:
                g["lr"] *= decay
            losses.append(float(loss.detach()))
            if step % 100 == 0:
                bar.set_postfix(loss=f"{losses[-1]:.2f}")
    return {"location": location, "scale_tril": scale_tril, "elbo": elbo.detach(), "losses": losses}
