"""The analysis' Pyro program as a simulator: prior -> forward model -> each likelihood's ``simulate``.

Parameters are returned in the program's unconstrained space (``u``; where neural density estimators live, so
bounded priors never leak), data as one concatenated vector per draw, likelihoods in program order.
"""

from __future__ import annotations

import pyro
import torch
from pyro import poutine

from ..errors import LatentInferError
from ..priors import fixed_value

__all__ = ["simulate", "prior_draws", "check_can_simulate", "ProgramPrior", "split_data", "join_data"]


def check_can_simulate(analysis) -> None:
    """Raise a clear error if a likelihood of ``analysis`` cannot simulate data."""
    for lik in analysis.likelihoods:
        if getattr(lik, "can_simulate", True) is False:
            raise LatentInferError(
                f"likelihood '{lik.name}' cannot simulate data (can_simulate=False); SBI and coverage need a likelihood with simulate()"
            )


def _draw_parameters(analysis, n: int, given: dict[str, torch.Tensor] | None = None):
    """One vectorised pass of the program over a plate of ``n``: (values, theory, nuisance).

    ``given``: parameter values ``{name: (n,)}`` to condition on instead of drawing them from the prior."""
    model = poutine.condition(analysis.model, data=given) if given else analysis.model
    with torch.no_grad(), pyro.plate("_simulations", n):
        tr = poutine.trace(model).get_trace()
    values = {k: tr.nodes[k]["value"] for k in analysis.parameter_names}
    theory = tr.nodes["_RETURN"]["value"]
    nuisance = {}
    for name in analysis.nuisance_names:
        if name in tr.nodes:
            nuisance[name] = tr.nodes[name]["value"]
        else:
            nuisance[name] = torch.as_tensor(fixed_value(analysis.prior_of(name)), dtype=analysis.dtype)
    return values, theory, nuisance


def _prior_values(analysis, n: int) -> dict[str, torch.Tensor]:
    """``n`` draws ``{parameter: (n,)}`` of the prior sites alone (no forward model), from the current RNG state."""
    with torch.no_grad(), pyro.plate("_simulations", n):
        tr = poutine.trace(analysis.prior_model).get_trace()
    return {k: tr.nodes[k]["value"].expand(n) for k in analysis.parameter_names}


def prior_draws(analysis, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """``n`` draws ``{parameter: (n,)}`` of the prior sites alone (no forward model, no data): cheap."""
    pyro.set_rng_seed(seed)
    return _prior_values(analysis, n)


def simulate(
    analysis, n: int, seed: int = 0, chunk: int = 2000, with_mean: bool = False, parameters: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """``n`` draws from the prior predictive.

    Returns ``{"u": (n, n_params) unconstrained parameters, "x": (n, n_data_total) data, plus one entry per
    parameter (constrained, (n,)) and per likelihood ((n, n_data))}``. Same ``seed``, same draws.
    ``with_mean``: also ``"mean"`` ``(n, n_data_total)``, the noiseless expected data of each draw.
    ``parameters``: simulate at these values ``{parameter: (n,)}`` instead of prior draws.
    """
    check_can_simulate(analysis)
    if n < 1:
        raise LatentInferError(f"num_simulations must be >= 1, got {n}")
    pyro.set_rng_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    transforms = analysis.transforms()
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        given = {k: v[start : start + m] for k, v in parameters.items()} if parameters is not None else None
        values, theory, nuisance = _draw_parameters(analysis, m, given)
        for lik in analysis.likelihoods:
            try:
                with torch.no_grad():
                    x = lik.simulate(theory, nuisance, generator=gen)
            except NotImplementedError:
                raise LatentInferError(f"likelihood '{lik.name}' cannot simulate data; SBI and coverage need simulate()") from None
            parts.setdefault(lik.name, []).append(x.expand(m, lik.n_data))
            if with_mean:
                with torch.no_grad():
                    parts.setdefault(f"mean:{lik.name}", []).append(lik.distribution(theory, nuisance).mean.expand(m, lik.n_data))
        for k, v in values.items():
            parts.setdefault(k, []).append(v.expand(m))
        with torch.no_grad():
            parts.setdefault("u", []).append(analysis.unconstrain(values, transforms))
    out = {k: torch.cat(v) for k, v in parts.items()}
    out["x"] = torch.cat([out[name] for name in analysis.observed_names], -1)
    if with_mean:
        out["mean"] = torch.cat([out.pop(f"mean:{name}") for name in analysis.observed_names], -1)
    return out


def join_data(analysis, observed) -> torch.Tensor:
    """One concatenated data vector ``(n_data_total,)`` from ``{likelihood: vector}`` or an array."""
    sizes = [lik.n_data for lik in analysis.likelihoods]
    if isinstance(observed, dict):
        missing = [n for n in analysis.observed_names if n not in observed]
        unknown = [n for n in observed if n not in analysis.observed_names]
        if missing or unknown:
            raise LatentInferError(f"observed data: missing {missing}, unknown {unknown} (likelihoods: {analysis.observed_names})")
        vec = torch.cat([torch.as_tensor(observed[n], dtype=analysis.dtype).reshape(-1) for n in analysis.observed_names])
    else:
        vec = torch.as_tensor(observed, dtype=analysis.dtype).reshape(-1)
    if vec.shape[0] != sum(sizes):
        raise LatentInferError(f"observed data has {vec.shape[0]} values; the likelihoods {analysis.observed_names} need {sum(sizes)}")
    if not torch.isfinite(vec).all():
        raise LatentInferError("observed data has NaN/inf entries")
    return vec


def split_data(analysis, vec: torch.Tensor) -> dict[str, torch.Tensor]:
    """Inverse of :func:`join_data`."""
    sizes = [lik.n_data for lik in analysis.likelihoods]
    return dict(zip(analysis.observed_names, torch.split(vec, sizes, dim=-1)))


class ProgramPrior(torch.distributions.Distribution):
    """The program's prior on the unconstrained parameters ``u`` (float32, as sbi expects).

    ``log_prob(u) = log p(theta(u)) + log |d theta / d u|``; ``sample`` runs the program's prior.
    """

    arg_constraints: dict = {}
    support = torch.distributions.constraints.real_vector

    def __init__(self, analysis, seed: int = 0):
        self.analysis = analysis
        self._transforms = analysis.transforms()
        super().__init__(event_shape=torch.Size([len(analysis.parameter_names)]), validate_args=False)

    def sample(self, sample_shape=torch.Size()):
        n = int(torch.Size(sample_shape).numel()) or 1
        values = _prior_values(self.analysis, n)  # the prior sites alone: no decoder call per draw
        with torch.no_grad():
            u = self.analysis.unconstrain(values, self._transforms)
        return u.reshape(*torch.Size(sample_shape), -1).float()

    def log_prob(self, u):
        a = self.analysis
        u64 = torch.as_tensor(u, dtype=a.dtype)
        values, logdet = a.constrain(u64, self._transforms)
        tr = poutine.trace(poutine.condition(a.prior_model, data=values)).get_trace()
        total = logdet
        for name in a.parameter_names:
            site = tr.nodes[name]
            total = total + site["fn"].log_prob(site["value"])
        return total.to(torch.as_tensor(u).dtype)

    @property
    def mean(self):
        return self.sample((2000,)).mean(0)

    @property
    def variance(self):
        return self.sample((2000,)).var(0)
