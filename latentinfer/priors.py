"""Prior specifications: small dicts from configs, turned into Pyro distributions.

A spec is one of::

    {"normal": [mean, sd]}            # Gaussian
    {"uniform": [low, high]}          # flat on [low, high]
    {"truncnormal": [mean, sd, low, high]}  # Gaussian restricted to [low, high] (renormalised)
    {"fixed": value}                  # not sampled: the parameter is held at value
    "standard_normal"                 # N(0, 1), the IVE prior on a latent
    {"mvnormal": [mean_vector, cov]}  # a correlated Gaussian block (nuisance blocks only)

or, from Python, any univariate ``pyro.distributions.Distribution``.
"""

from __future__ import annotations

import math
from typing import Any

import pyro.distributions as dist
import torch

from .bundle.card import _normal_mass, check_prior
from .errors import ConfigError

__all__ = [
    "PriorSpec", "TruncatedNormal", "check_spec", "to_distribution", "is_fixed", "fixed_value", "describe", "centre",
    "restrict", "moments",
]

PriorSpec = Any  # dict, str or pyro Distribution


class TruncatedNormal(dist.TorchDistribution):
    """N(loc, scale) restricted to [low, high] and renormalised; sampled by inverse CDF (reparametrised).

    Its support is an interval, so NUTS and VI work in the unconstrained space through the usual logit-type
    bijection and never propose values outside [low, high].
    """

    arg_constraints = {"loc": dist.constraints.real, "scale": dist.constraints.positive}
    has_rsample = True

    def __init__(self, loc, scale, low, high, validate_args=None):
        self.loc, self.scale, self.low, self.high = torch.broadcast_tensors(
            *(torch.as_tensor(x, dtype=torch.as_tensor(loc).dtype) for x in (loc, scale, low, high))
        )
        self._base = dist.Normal(self.loc, self.scale)
        self._cdf_low = self._base.cdf(self.low)
        self._mass = (self._base.cdf(self.high) - self._cdf_low).clamp_min(torch.finfo(self.loc.dtype).tiny)
        super().__init__(self.loc.shape, validate_args=validate_args)

    @dist.constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        return dist.constraints.interval(self.low, self.high)

    def expand(self, batch_shape, _instance=None):
        shape = torch.Size(batch_shape)
        return TruncatedNormal(self.loc.expand(shape), self.scale.expand(shape), self.low.expand(shape), self.high.expand(shape))

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        return self.icdf(torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device))

    def icdf(self, value):
        tiny = torch.finfo(self.loc.dtype).eps
        p = (self._cdf_low + value * self._mass).clamp(tiny, 1 - tiny)
        return torch.clamp(self._base.icdf(p), self.low, self.high)

    def cdf(self, value):
        return ((self._base.cdf(value) - self._cdf_low) / self._mass).clamp(0.0, 1.0)

    def log_prob(self, value):
        inside = (value >= self.low) & (value <= self.high)
        lp = self._base.log_prob(value) - self._mass.log()
        return torch.where(inside, lp, torch.full_like(lp, -math.inf))

    @property
    def mean(self):
        m, _ = _truncnorm_moments(self.loc, self.scale, self.low, self.high)
        return m

    @property
    def variance(self):
        _, v = _truncnorm_moments(self.loc, self.scale, self.low, self.high)
        return v


def _truncnorm_moments(loc, scale, low, high):
    """Mean and variance of N(loc, scale) truncated to [low, high] (closed form)."""
    std = dist.Normal(torch.zeros_like(loc), torch.ones_like(loc))
    a, b = (low - loc) / scale, (high - loc) / scale
    pa, pb = std.log_prob(a).exp(), std.log_prob(b).exp()
    z = std.cdf(b) - std.cdf(a)
    mean = loc + scale * (pa - pb) / z
    var = scale**2 * (1 + (a * pa - b * pb) / z - ((pa - pb) / z) ** 2)
    return mean, var


def check_spec(spec: PriorSpec, name: str) -> PriorSpec:
    """Validate a prior spec for parameter ``name``; return it normalised. Raises :class:`ConfigError`.

    A pyro distribution passes as it is; every other spec is checked by :func:`latentinfer.card.check_prior`, the
    torch-free check that bundle cards are read with, so the two cannot drift apart."""
    if isinstance(spec, dist.Distribution):
        return spec
    return check_prior(spec, name)


def restrict(spec: PriorSpec, low: float, high: float, name: str) -> PriorSpec:
    """The (checked) spec ``spec`` with its support restricted to ``[low, high]``: a normal becomes a truncnormal,
    a uniform or truncnormal is intersected with the interval, a fixed value must lie inside it.

    Used for inputs of a model that is only valid on a box (an emulator's training range): no prior mass is left
    where the model extrapolates. Raises :class:`ConfigError` when nothing of the prior is left."""
    if isinstance(spec, dist.Distribution):
        return spec
    (kind, args), = spec.items()
    where = f"prior of '{name}'"
    box = f"the model's valid range [{low:g}, {high:g}]"
    if kind == "fixed":
        if not low <= float(args) <= high:
            raise ConfigError(f"{where}: fixed value {float(args):g} lies outside {box}")
        return spec
    if kind == "normal":
        if _normal_mass(float(args[0]), float(args[1]), low, high) < 1e-6:
            raise ConfigError(f"{where}: N({float(args[0]):g}, {float(args[1]):g}) has almost no mass inside {box}")
        return check_spec({"truncnormal": [args[0], args[1], low, high]}, name)
    if kind in ("uniform", "truncnormal"):
        lo, hi = max(float(args[-2]), low), min(float(args[-1]), high)
        if not lo < hi:
            raise ConfigError(f"{where}: [{float(args[-2]):g}, {float(args[-1]):g}] does not overlap {box}")
        return check_spec({kind: [*args[:-2], lo, hi]}, name)
    return spec


def moments(spec: PriorSpec) -> tuple[float, float]:
    """Mean and variance of a univariate spec (normal, uniform, truncnormal)."""
    (kind, args), = spec.items()
    if kind == "normal":
        return float(args[0]), float(args[1]) ** 2
    if kind == "uniform":
        lo, hi = float(args[0]), float(args[1])
        return 0.5 * (lo + hi), (hi - lo) ** 2 / 12.0
    if kind == "truncnormal":
        m, v = _truncnorm_moments(*(torch.tensor(float(a), dtype=torch.float64) for a in args))
        return float(m), float(v)
    raise ConfigError(f"prior kind '{kind}' has no univariate moments")


def is_fixed(spec: PriorSpec) -> bool:
    return isinstance(spec, dict) and "fixed" in spec


def fixed_value(spec: PriorSpec) -> float:
    return float(spec["fixed"])


def to_distribution(spec: PriorSpec, dtype: torch.dtype = torch.float64) -> dist.Distribution:
    """The Pyro distribution of a (checked, non-fixed, univariate) spec."""
    if isinstance(spec, dist.Distribution):
        return spec
    (kind, args), = spec.items()
    a, b = (torch.tensor(float(x), dtype=dtype) for x in args[:2])
    if kind == "normal":
        return dist.Normal(a, b)
    if kind == "uniform":
        return dist.Uniform(a, b)
    if kind == "truncnormal":
        lo, hi = (torch.tensor(float(x), dtype=dtype) for x in args[2:])
        return TruncatedNormal(a, b, lo, hi)
    raise ConfigError(f"prior kind '{kind}' cannot be used for a single parameter")


def describe(spec: PriorSpec) -> str:
    """Short human-readable form, e.g. ``N(1, 0.0025)``."""
    if isinstance(spec, dist.Distribution):
        return type(spec).__name__
    (kind, args), = spec.items()
    if kind == "normal":
        return f"N({args[0]:g}, {args[1]:g})"
    if kind == "uniform":
        return f"U({args[0]:g}, {args[1]:g})"
    if kind == "fixed":
        return f"= {args:g}"
    if kind == "truncnormal":
        return f"N({args[0]:g}, {args[1]:g}) on [{args[2]:g}, {args[3]:g}]"
    return kind


def centre(spec: PriorSpec, i: int = 0) -> float:
    """The centre of a spec (mean, fixed value, or middle of a uniform); ``i`` picks a member of an mvnormal block."""
    (kind, args), = spec.items()
    if kind == "mvnormal":
        return float(args[0][i])
    if kind == "fixed":
        return float(args)
    if kind == "normal":
        return float(args[0])
    if kind == "truncnormal":
        return moments(spec)[0]
    return 0.5 * (float(args[0]) + float(args[1]))
