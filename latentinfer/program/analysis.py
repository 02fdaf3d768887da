"""One Pyro program: priors on the forward model's inputs, nuisance parameters, and one observed site per likelihood.

Every inference method (NUTS, ChEES, emcee, VI, SBI), the evidence and the coverage studies run on this same
program, so the same config means the same posterior whatever the method. :class:`Program` is the program alone
(sites and priors, log densities and transforms, MAP and Laplace, :meth:`Program.from_config`); it imports no
method. :class:`latentinfer.Analysis` adds the front door (``sample``, ``fit_vi``, ``evidence``, ``train_sbi``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch.distributions import biject_to

from ..errors import ConfigError, LatentInferError
from ..bundle.forward import ForwardModel
from ..likelihoods.base import Likelihood
from ..priors import centre, check_spec, fixed_value, is_fixed, restrict, to_distribution
from ..bundle import load_model
from ..likelihoods import load_likelihood
from ..likelihoods.base import check_data

__all__ = ["Program"]

_LATENT_PRIORS = {"standard_normal": {"normal": [0.0, 1.0]}, "uniform": {"uniform": [-4.0, 4.0]}}


class Program:
    """Bayesian inference of a forward model's inputs from one or more likelihoods.

    Parameters
    ----------
    forward : ForwardModel
        Maps the parameter vector (latents, or physical parameters) to named outputs.
    likelihoods : Likelihood or sequence of Likelihood
        Each gets one observed site named after it; their nuisance parameters become sample sites.
    prior : "standard_normal" | "uniform" | spec | mapping
        Default prior of the forward model's inputs: N(0, 1) (the IVE prior), a uniform box U(-4, 4), one spec
        for all (``{"normal": [0, 2]}``), or a mapping ``{name: spec}``.
    priors : mapping, optional
        Per-parameter overrides, for inputs and nuisances alike (``{"tau": {"normal": [0.0544, 0.0073]}}``,
        ``{"A_planck": {"fixed": 1.0}}``). An unknown name is an error. Priors on inputs with
        :attr:`~latentinfer.ForwardModel.bounds` (a physical-space emulator's training box) are restricted to
        them: a normal becomes a truncnormal on the box, a uniform is intersected with it.
    emulator_error : bool
        Add the forward model's :attr:`~latentinfer.ForwardModel.error_cov`, projected into each
        likelihood's data space, to that likelihood's covariance.
    dtype : torch.dtype
        Precision of the program (float64 by default).
    """

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]):
        """The program a resolved run config describes (``model``, ``space``, ``likelihoods``, ``prior``,
        ``priors``, ``emulator_error``), as an instance of ``cls``."""

        model = load_model(cfg["model"])
        if cfg.get("space", "latent") == "physical":
            if not hasattr(model, "physical"):
                raise ConfigError(f"model '{cfg['model']}' has no map from physical parameters (space: physical)")
            model = model.physical()
        liks = [load_likelihood(item["name"], **{k: v for k, v in item.items() if k != "name"}) for item in cfg["likelihoods"]]
        return cls(model, liks, prior=cfg.get("prior", "standard_normal"), priors=cfg.get("priors"),
                   emulator_error=cfg.get("emulator_error", False))

    def __init__(
        self,
        forward: ForwardModel,
        likelihoods: Likelihood | Sequence[Likelihood],
        prior: Any = "standard_normal",
        priors: Mapping[str, Any] | None = None,
        *,
        emulator_error: bool = False,
        dtype: torch.dtype = torch.float64,
    ):
        if not isinstance(forward, ForwardModel):
            raise LatentInferError("Analysis needs a latentinfer.ForwardModel (use ForwardModel.from_module)")
        self.dtype = dtype
        self.forward = forward.to(dtype).eval()
        for p in self.forward.parameters():
            p.requires_grad_(False)
        liks = [likelihoods] if isinstance(likelihoods, Likelihood) else list(likelihoods)
        if not liks:
            raise LatentInferError("Analysis needs at least one likelihood")
        names = [lik.name for lik in liks]
        if len(set(names)) != len(names):
            raise LatentInferError(f"likelihood names must be unique, got {names}")
        sizes = self.forward.output_sizes(dtype)
        for lik in liks:
            lik.check_theory(sizes)
        if emulator_error:
            liks = self._with_emulator_error(liks)
        self.likelihoods = [lik.to(dtype) for lik in liks]

        self.input_names = list(self.forward.latent_names)
        self._prior = self._default_input_priors(prior)
        self._nuisance_blocks = self._collect_nuisance()
        nuisance_names = [n for block in self._nuisance_blocks for n in block.names]
        clash = set(nuisance_names) & set(self.input_names) | set(names) & (set(self.input_names) | set(nuisance_names))
        if clash:
            raise LatentInferError(f"names used twice among inputs, nuisances and likelihoods: {sorted(clash)}")
        known = set(self.input_names) | set(nuisance_names)
        self.overrides = {}
        for key, spec in (priors or {}).items():
            if key not in known:
                raise ConfigError(f"priors: unknown parameter '{key}' (known: {', '.join(self.input_names + nuisance_names)})")
            self.overrides[key] = check_spec(spec, key)
        self._prior.update({k: v for k, v in self.overrides.items() if k in self.input_names})
        for name, (lo, hi) in self.forward.bounds.items():  # no prior mass where the model extrapolates
            self._prior[name] = restrict(self._prior[name], lo, hi, name)
        self.emulator_error = emulator_error

    # -- set-up ----------------------------------------------------------------------------------------------
    def _default_input_priors(self, prior) -> dict[str, Any]:
        out = {}
        for name in self.input_names:
            if isinstance(prior, str) and prior in _LATENT_PRIORS and name in self.forward.default_priors and prior == "standard_normal":
                spec = self.forward.default_priors[name]
            elif isinstance(prior, str):
                if prior not in _LATENT_PRIORS:
                    raise ConfigError(f"prior must be standard_normal, uniform, a spec or a mapping; got {prior!r}")
                spec = _LATENT_PRIORS[prior]
            elif isinstance(prior, Mapping) and prior and all(k in self.input_names for k in prior):
                spec = prior.get(name, self.forward.default_priors.get(name, _LATENT_PRIORS["standard_normal"]))
            else:
                spec = prior
            out[name] = check_spec(spec, name)
        return out

    def _collect_nuisance(self):
        blocks, seen = [], set()
        for lik in self.likelihoods:
            for block in lik.nuisance:
                if set(block.names) <= seen:
                    continue  # shared nuisance (same name in two likelihoods): sampled once
                if set(block.names) & seen:
                    raise LatentInferError(f"nuisance block {block.names} of '{lik.name}' overlaps another likelihood's")
                seen |= set(block.names)
                blocks.append(block)
        return blocks

    def _with_emulator_error(self, liks):
        if not self.forward.error_cov:
            raise LatentInferError("emulator_error=True but the forward model has no error_cov")
        z0 = torch.zeros(self.forward.dim, dtype=self.dtype)
        with torch.no_grad():
            theory0 = self.forward(z0)
        out = []
        for lik in liks:
            nuis0 = {n: torch.tensor(centre(b.prior, i), dtype=self.dtype) for b in lik.nuisance for i, n in enumerate(b.names)}
            extra = lik.data_space_covariance(self.forward.error_cov, theory0, nuis0)
            out.append(lik.with_extra_covariance(extra))
        return out

    # -- names -----------------------------------------------------------------------------------------------
    @property
    def nuisance_names(self) -> list[str]:
        return [n for block in self._nuisance_blocks for n in block.names]

    @property
    def parameter_names(self) -> list[str]:
        """Sampled parameters, in program order (fixed ones excluded)."""
        names = [n for n in self.input_names if not is_fixed(self._prior[n])]
        return names + [n for n in self.nuisance_names if not is_fixed(self.overrides.get(n, {}))]

    @property
    def observed_names(self) -> list[str]:
        return [lik.name for lik in self.likelihoods]

    def prior_of(self, name: str):
        """The prior spec in force for parameter ``name``."""
        if name in self._prior:
            return self._prior[name]
        if name in self.overrides:
            return self.overrides[name]
        for block in self._nuisance_blocks:
            if name in block.names:
                return block.prior
        raise LatentInferError(f"unknown parameter '{name}'")

    # -- the program -----------------------------------------------------------------------------------------
    def _const(self, x) -> torch.Tensor:
        return torch.as_tensor(x, dtype=self.dtype)

    def _sample_inputs(self) -> torch.Tensor:
        vals = []
        for name in self.input_names:
            spec = self._prior[name]
            if is_fixed(spec):
                vals.append(self._const(fixed_value(spec)))
            else:
                vals.append(pyro.sample(name, to_distribution(spec, self.dtype)))
        return torch.stack(torch.broadcast_tensors(*vals), -1)

    def _scalar_nuisance_spec(self, block, name: str):
        """The univariate prior spec of nuisance ``name``, or None when its block is sampled jointly (a correlated
        block with no member overridden)."""
        if len(block.names) == 1:
            return self.overrides.get(name, block.prior)
        if any(n in self.overrides for n in block.names):
            return self.overrides.get(name, _marginal(block.prior, block.names.index(name)))
        return None

    def _sample_nuisance(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for block in self._nuisance_blocks:
            if self._scalar_nuisance_spec(block, block.names[0]) is not None:
                for name in block.names:
                    spec = self._scalar_nuisance_spec(block, name)
                    if is_fixed(spec):
                        out[name] = self._const(fixed_value(spec))
                    else:
                        out[name] = pyro.sample(name, to_distribution(spec, self.dtype))
            else:
                out.update(self._sample_gaussian_block(block))
        return out

    def _sample_gaussian_block(self, block) -> dict[str, torch.Tensor]:
        """A correlated Gaussian block as a chain of scalar conditional sites (exactly the joint prior)."""
        mean, cov = (self._const(a) for a in block.prior["mvnormal"])
        L = torch.linalg.cholesky(cov)
        out, eps = {}, []
        for i, name in enumerate(block.names):
            loc = mean[i] + sum((L[i, j] * eps[j] for j in range(i)), self._const(0.0))
            x = pyro.sample(name, dist.Normal(loc, L[i, i]))
            eps.append((x - loc) / L[i, i])
            out[name] = x
        return out

    def prior_model(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The prior part of :meth:`model` alone: the same sample sites in the same order, no forward model and
        no likelihoods (cheap prior transforms and prior densities). Returns ``(inputs, nuisance)``."""
        return self._sample_inputs(), self._sample_nuisance()

    def model(self) -> dict[str, torch.Tensor]:
        """The Pyro program. Returns the forward-model outputs (the theory)."""
        z, nuisance = self.prior_model()
        theory = self.forward(z)
        for lik in self.likelihoods:
            pyro.sample(lik.name, lik.distribution(theory, nuisance), obs=lik.data)
        return theory

    def simulator_model(self) -> dict[str, torch.Tensor]:
        """The same program with the observed sites free: a draw from the prior predictive."""
        return poutine.uncondition(self.model)()

    # -- vectorised densities (emcee, evidence, diagnostics) -------------------------------------------------
    def _trace(self, values: Mapping[str, torch.Tensor]):
        vals = {k: self._const(v) for k, v in values.items()}
        return poutine.trace(poutine.condition(self.model, data=vals)).get_trace()

    def log_joint(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """log prior + log likelihood at constrained ``values`` ``{name: (...)}``; shape ``(...)``."""
        tr = self._trace(values)
        total = self._const(0.0)
        for site in tr.nodes.values():
            if site["type"] == "sample":
                total = total + site["fn"].log_prob(site["value"])
        return total

    def log_likelihoods(self, values: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{likelihood name: log-likelihood (...)}`` at constrained ``values``."""
        tr = self._trace(values)
        return {n: tr.nodes[n]["fn"].log_prob(tr.nodes[n]["value"]) for n in self.observed_names}

    def theory(self, values: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Forward-model outputs at constrained ``values`` of the inputs."""
        return poutine.condition(self.model, data={k: self._const(v) for k, v in values.items()})()

    def transforms(self) -> dict[str, torch.distributions.Transform]:
        """Bijections from the unconstrained space to each parameter's support."""
        with torch.no_grad():
            tr = poutine.trace(self.simulator_model).get_trace()
        return {n: biject_to(tr.nodes[n]["fn"].support) for n in self.parameter_names}

    def unconstrained_log_density(self, u: torch.Tensor, transforms=None) -> torch.Tensor:
        """``log p(theta, data) + log |d theta / d u|`` at unconstrained points ``u`` of shape ``(..., n_params)``."""
        transforms = transforms or self.transforms()
        values, logdet = self.constrain(u, transforms)
        return self.log_joint(values) + logdet

    def constrain(self, u: torch.Tensor, transforms=None):
        """Map unconstrained ``(..., n_params)`` to ``({name: (...)}, log|J| (...))``."""
        transforms = transforms or self.transforms()
        values, logdet = {}, self._const(0.0)
        for i, name in enumerate(self.parameter_names):
            t = transforms[name]
            x = t(u[..., i])
            logdet = logdet + t.log_abs_det_jacobian(u[..., i], x)
            values[name] = x
        return values, logdet

    def unconstrain(self, values: Mapping[str, torch.Tensor], transforms=None) -> torch.Tensor:
        transforms = transforms or self.transforms()
        return torch.stack([transforms[n].inv(self._const(values[n])) for n in self.parameter_names], -1)

    def sample_prior(self, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
        """``n`` joint draws from the prior predictive: parameters and simulated data ``{site: (n, ...)}``.

        Vectorised: the program runs once inside a plate of size ``n``.
        """
        pyro.set_rng_seed(seed)
        with torch.no_grad(), pyro.plate("prior_draws", n, dim=-1):
            tr = poutine.trace(self.simulator_model).get_trace()
        out = {}
        for name in self.parameter_names + self.observed_names:
            value = tr.nodes[name]["value"]
            out[name] = value.expand((n,) + value.shape[1:]) if value.shape[:1] != (n,) else value
        return out

    def find_map(self, seed: int = 0, steps: int = 200) -> dict[str, torch.Tensor]:
        """Maximum a posteriori point (L-BFGS in the unconstrained space, from a prior draw)."""
        transforms = self.transforms()
        start = self.sample_prior(1, seed=seed)
        u = self.unconstrain({k: v[0] for k, v in start.items() if k in self.parameter_names}, transforms)
        u = u.clone().requires_grad_(True)
        opt = torch.optim.LBFGS([u], max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = -self.unconstrained_log_density(u, transforms)
            loss.backward()
            return loss

        opt.step(closure)
        values, _ = self.constrain(u.detach(), transforms)
        return values

    def laplace(self, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Laplace approximation in the unconstrained space: ``(u_map (n,), covariance (n, n) or None)``.

        The covariance is None where the Hessian of the negative log density at the MAP is not positive definite.
        """
        transforms = self.transforms()
        u0 = self.unconstrain(self.find_map(seed=seed), transforms).detach()
        H = torch.autograd.functional.hessian(lambda u: -self.unconstrained_log_density(u, transforms), u0)
        evals, evecs = torch.linalg.eigh(0.5 * (H + H.T))
        if not bool((evals > 0).all()):
            return u0, None
        return u0, (evecs / evals) @ evecs.T

    def with_data(self, data: Mapping[str, Any]) -> "Program":
        """A copy of this analysis whose likelihoods ``{name: data vector (n_data,)}`` observe new data.

        Likelihoods not named keep their data; the forward model and priors are shared (coverage studies and
        amortized inference run the same program on simulated data this way).
        """
        import copy

        unknown = set(data) - set(self.observed_names)
        if unknown:
            raise LatentInferError(f"with_data: unknown likelihood(s) {sorted(unknown)} (known: {', '.join(self.observed_names)})")
        new = copy.copy(self)
        liks = []
        for lik in self.likelihoods:
            if lik.name in data:
                lik = lik.with_data(data[lik.name]) if hasattr(lik, "with_data") else _replace_data(lik, data[lik.name])
            liks.append(lik)
        new.likelihoods = liks
        return new

    def restricted(self, bounds: Mapping[str, tuple[float, float]]) -> "Program":
        """A copy whose priors are restricted to ``bounds`` ``{name: (low, high)}`` (constrained values).

        Inside the box the restricted prior is proportional to this one (a normal becomes a truncnormal, a
        uniform is intersected): the proposal of truncated sequential NPE. Members of a correlated nuisance
        block keep their joint prior (restricting one member alone would break the correlation).
        """
        import copy

        new = copy.copy(self)
        new._prior, new.overrides = dict(self._prior), dict(self.overrides)
        for name, (lo, hi) in bounds.items():
            if name in new._prior:
                new._prior[name] = restrict(new._prior[name], float(lo), float(hi), name)
                continue
            block = next((b for b in self._nuisance_blocks if name in b.names), None)
            if block is None:
                raise LatentInferError(f"restricted: unknown parameter '{name}'")
            spec = self._scalar_nuisance_spec(block, name)
            if spec is not None:
                new.overrides[name] = restrict(spec, float(lo), float(hi), name)
        return new

    def describe(self) -> dict[str, Any]:
        """Plain description of the program for run records."""
        return {
            "inputs": {n: self._prior[n] for n in self.input_names},
            "nuisance": {n: self.prior_of(n) for n in self.nuisance_names},
            "likelihoods": {lik.name: {"n_data": lik.n_data, "type": type(lik).__name__} for lik in self.likelihoods},
            "emulator_error": self.emulator_error,
        }


def _replace_data(lik: Likelihood, data) -> Likelihood:
    import copy


    new = copy.deepcopy(lik)
    vec = check_data(torch.as_tensor(data).detach().reshape(-1), f"with_data: {lik.name}")
    if vec.shape != lik.data.shape:
        raise LatentInferError(f"with_data: '{lik.name}' needs a data vector of length {lik.n_data}, got {tuple(vec.shape)}")
    new.data = vec.to(lik.data.dtype)
    return new


def _marginal(prior, i):
    mean, cov = prior["mvnormal"]
    return {"normal": [float(mean[i]), float(cov[i][i]) ** 0.5]}
