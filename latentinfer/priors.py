"""Prior specifications: small dicts from configs, turned into Pyro distributions.

A spec is one of::

    {"normal": [mean, sd]}            # Gaussian
    {"uniform": [low, high]}          # flat on [low, high]
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

from .errors import ConfigError

__all__ = ["PriorSpec", "check_spec", "to_distribution", "is_fixed", "fixed_value", "describe", "centre"]

PriorSpec = Any  # dict, str or pyro Distribution
_KINDS = {"normal": 2, "uniform": 2, "fixed": None, "mvnormal": 2}


def check_spec(spec: PriorSpec, name: str) -> PriorSpec:
    """Validate a prior spec for parameter ``name``; return it normalised. Raises :class:`ConfigError`."""
    if isinstance(spec, dist.Distribution):
        return spec
    if spec == "standard_normal":
        return {"normal": [0.0, 1.0]}
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError(
            f"prior of '{name}' must be one of {{normal: [mean, sd]}}, {{uniform: [low, high]}}, {{fixed: value}}; got {spec!r}"
        )
    (kind, args), = spec.items()
    if kind not in _KINDS:
        raise ConfigError(f"prior of '{name}': unknown kind '{kind}' (use normal, uniform or fixed)")
    if kind == "fixed":
        if not _is_number(args):
            raise ConfigError(f"prior of '{name}': fixed needs a finite number, got {args!r}")
        return {"fixed": float(args)}
    if kind == "mvnormal":
        return spec
    if not isinstance(args, (list, tuple)) or len(args) != 2 or not all(_is_number(a) for a in args):
        raise ConfigError(f"prior of '{name}': {kind} needs a list of two finite numbers, got {args!r}")
    a, b = float(args[0]), float(args[1])
    if kind == "normal" and not b > 0:
        raise ConfigError(f"prior of '{name}': normal sd must be > 0, got {b}")
    if kind == "uniform" and not b > a:
        raise ConfigError(f"prior of '{name}': uniform needs low < high, got [{a}, {b}]")
    return {kind: [a, b]}


def _is_number(x: Any) -> bool:
    """A finite int or float (not a bool; not an int too large for a float)."""
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return False
    try:
        return math.isfinite(float(x))
    except OverflowError:
        return False


def is_fixed(spec: PriorSpec) -> bool:
    return isinstance(spec, dict) and "fixed" in spec


def fixed_value(spec: PriorSpec) -> float:
    return float(spec["fixed"])


def to_distribution(spec: PriorSpec, dtype: torch.dtype = torch.float64) -> dist.Distribution:
    """The Pyro distribution of a (checked, non-fixed, univariate) spec."""
    if isinstance(spec, dist.Distribution):
        return spec
    (kind, args), = spec.items()
    a, b = (torch.tensor(float(x), dtype=dtype) for x in args)
    if kind == "normal":
        return dist.Normal(a, b)
    if kind == "uniform":
        return dist.Uniform(a, b)
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
    return 0.5 * (float(args[0]) + float(args[1]))
