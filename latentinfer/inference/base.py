"""The small interface behind which every inference method sits, and the registry that picks one by name.

A method is a class with a ``name`` and a ``run(analysis, **settings) -> Posterior``; it registers itself
with :func:`register_method`. Common settings and their defaults live in
:data:`latentinfer.config.INFERENCE_DEFAULTS`.

>>> from latentinfer.inference import available_methods
>>> sorted(available_methods())[:2]
['emcee', 'nuts']
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import ConfigError
from ..io import versions
from ..posterior import Posterior

__all__ = ["InferenceMethod", "register_method", "get_method", "available_methods", "build_posterior"]

_METHODS: dict[str, type["InferenceMethod"]] = {}


class InferenceMethod:
    """Base class: subclasses set :attr:`name`, list the settings they read in :attr:`settings`, and write :meth:`_run`."""

    name: ClassVar[str] = ""
    settings: ClassVar[tuple[str, ...]] = ()
    #: This method's own defaults where they differ from :data:`latentinfer.config.INFERENCE_DEFAULTS`.
    defaults: ClassVar[dict[str, Any]] = {}

    @classmethod
    def default(cls, key: str):
        from ..config import INFERENCE_DEFAULTS

        return cls.defaults.get(key, INFERENCE_DEFAULTS[key][0])

    #: Backend keyword arguments of :func:`latentinfer.execution.map_tasks` (``backend``, ``scheduler``,
    #: ``cluster``, ``checkpoint_dir``) for methods that map independent tasks (chains) onto workers.
    execution: Mapping[str, Any] | None = None

    def run(self, analysis, *, execution: Mapping[str, Any] | None = None, **settings) -> Posterior:
        """Run the method with ``settings`` (defaults from the config's inference block); ``execution`` says
        where independent tasks go and where they are checkpointed (see :func:`~latentinfer.execution.backend_from`)."""
        unknown = set(settings) - set(self.settings) - {"method"}
        if unknown:
            raise ConfigError(f"inference method '{self.name}': unknown settings {sorted(unknown)} (allowed: {', '.join(self.settings)})")
        full = {k: settings.get(k, self.default(k)) for k in self.settings}
        self.execution = dict(execution or {})
        t0 = time.perf_counter()
        post = self._run(analysis, **full)
        post.attrs["wall_seconds"] = time.perf_counter() - t0
        return post

    def _run(self, analysis, **settings) -> Posterior:  # pragma: no cover - interface
        raise NotImplementedError


def register_method(cls: type[InferenceMethod]) -> type[InferenceMethod]:
    _METHODS[cls.name] = cls
    return cls


def available_methods() -> list[str]:
    return list(_METHODS)


def get_method(name: str) -> InferenceMethod:
    if name not in _METHODS:
        raise ConfigError(f"unknown inference method '{name}' (available: {', '.join(_METHODS)})")
    return _METHODS[name]()


def build_posterior(
    analysis,
    samples: Mapping[str, np.ndarray],
    *,
    method: str,
    settings: Mapping[str, Any],
    sample_stats: Mapping[str, np.ndarray] | None = None,
    extra_attrs: Mapping[str, Any] | None = None,
    log_density=None,
) -> Posterior:
    """Attach log-likelihoods (one variable per likelihood), observed data and provenance to ``samples``.

    ``samples`` maps every parameter of ``analysis`` to an array ``(chain, draw)`` in constrained space.
    ``log_density``: a float64 :class:`~latentinfer.program.LogDensity` of ``analysis`` to evaluate them with (the
    same numbers to float rounding, without a Pyro trace); default: the Pyro program.
    """
    names = analysis.parameter_names
    shape = np.asarray(samples[names[0]]).shape
    flat = {n: torch.as_tensor(np.asarray(samples[n]).reshape(-1), dtype=analysis.dtype) for n in names}
    loglik, lp = {}, []
    with torch.no_grad():
        for start in range(0, flat[names[0]].shape[0], 4096):
            chunk = {n: v[start : start + 4096] for n, v in flat.items()}
            if log_density is not None:
                xs = [chunk[n] for n in log_density.names]
                parts = log_density.log_likelihood(xs, xs[0].shape)
                for k, v in parts.items():
                    loglik.setdefault(k, []).append(v.to(analysis.dtype).expand(chunk[names[0]].shape))
                lp.append((log_density.log_prior(xs) + sum(v.to(analysis.dtype) for v in parts.values())).expand(chunk[names[0]].shape))
                continue
            for k, v in analysis.log_likelihoods(chunk).items():
                loglik.setdefault(k, []).append(v.expand(chunk[names[0]].shape))
            lp.append(analysis.log_joint(chunk).expand(chunk[names[0]].shape))
    stats = dict(sample_stats or {})
    stats["lp"] = torch.cat(lp).numpy().reshape(shape)
    post = Posterior.from_arrays(
        {n: np.asarray(samples[n], dtype=np.float64) for n in names},
        sample_stats=stats,
        log_likelihood={k: torch.cat(v).numpy().reshape(shape) for k, v in loglik.items()},
        observed_data={lik.name: lik.data.numpy() for lik in analysis.likelihoods},
        attrs={
            "method": method,
            "seed": int(settings.get("seed", 0)),
            "settings": dict(settings),
            "versions": versions(),
            "program": analysis.describe(),
            **(extra_attrs or {}),
        },
    )
    return post


def chain_seeds(seed: int, n: int) -> list[int]:
    """Independent integer seeds for ``n`` chains from one user seed."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]
