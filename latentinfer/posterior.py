"""Posterior samples as arviz InferenceData, whatever the method that drew them."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np

from .errors import LatentInferError
from .io import to_jsonable, versions
from .io import default_mode

__all__ = ["Posterior", "build_posterior"]

_SUMMARY_KEYS = ("mean", "sd", "hdi_3%", "hdi_97%", "r_hat", "ess_bulk", "ess_tail", "mcse_mean")


class Posterior:
    """Samples with their diagnostics.

    Wraps an :class:`arviz.InferenceData` with groups ``posterior`` (each parameter ``(chain, draw)``),
    ``sample_stats`` (``diverging``, ``step_size``, ``lp``, ...), ``log_likelihood`` (one variable per likelihood)
    and ``observed_data``. ``attrs`` of the posterior group record method, settings, seed and versions.
    """

    def __init__(self, idata: az.InferenceData):
        self.idata = idata

    @classmethod
    def from_arrays(
        cls,
        samples: Mapping[str, np.ndarray],
        *,
        sample_stats: Mapping[str, np.ndarray] | None = None,
        log_likelihood: Mapping[str, np.ndarray] | None = None,
        observed_data: Mapping[str, np.ndarray] | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> "Posterior":
        """Build from arrays shaped ``(chain, draw)`` (parameters, stats, log-likelihoods)."""
        idata = az.from_dict(
            posterior={k: np.asarray(v) for k, v in samples.items()},
            sample_stats={k: np.asarray(v) for k, v in (sample_stats or {}).items()} or None,
            log_likelihood={k: np.asarray(v) for k, v in (log_likelihood or {}).items()} or None,
            observed_data={k: np.asarray(v) for k, v in (observed_data or {}).items()} or None,
        )
        post = cls(idata)
        post.attrs.update({k: _attr(v) for k, v in (attrs or {}).items()})
        return post

    # -- access ----------------------------------------------------------------------------------------------
    @property
    def attrs(self) -> dict:
        return self.idata.posterior.attrs

    @property
    def parameter_names(self) -> list[str]:
        return list(self.idata.posterior.data_vars)

    @property
    def method(self) -> str:
        return str(self.attrs.get("method", ""))

    @property
    def num_chains(self) -> int:
        return int(self.idata.posterior.sizes["chain"])

    @property
    def num_draws(self) -> int:
        return int(self.idata.posterior.sizes["draw"])

    def meta(self, key: str, default: Any = None) -> Any:
        """A JSON-encoded attribute (``settings``, ``config``, ``versions``) decoded."""
        val = self.attrs.get(key)
        if val is None:
            return default
        try:
            return json.loads(val)
        except (TypeError, json.JSONDecodeError):
            return val

    def samples(self, name: str | None = None, *, flat: bool = True) -> np.ndarray:
        """Samples of ``name`` (flattened over chains unless ``flat=False``), or of all parameters as
        an array ``(n, n_params)`` in :attr:`parameter_names` order when ``name`` is None."""
        post = self.idata.posterior
        if name is None:
            arr = np.stack([post[n].values for n in self.parameter_names], -1)
            return arr.reshape(-1, arr.shape[-1]) if flat else arr
        if name not in post:
            raise LatentInferError(f"unknown parameter '{name}' (posterior has {', '.join(self.parameter_names)})")
        arr = post[name].values
        return arr.reshape(-1, *arr.shape[2:]) if flat else arr

    def mean(self) -> np.ndarray:
        return self.samples().mean(0)

    def cov(self) -> np.ndarray:
        return np.atleast_2d(np.cov(self.samples(), rowvar=False))

    # -- diagnostics -----------------------------------------------------------------------------------------
    def summary(self) -> dict[str, dict[str, float | None]]:
        """Per parameter: mean, sd, 94% HDI, R-hat, bulk and tail ESS, MCSE of the mean (None where undefined)."""
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            df = az.summary(self.idata, var_names=self.parameter_names, hdi_prob=0.94, kind="all", round_to="none")
        out = {}
        for name in self.parameter_names:
            row = df.loc[name]
            out[name] = {k: to_jsonable(float(row[k])) for k in _SUMMARY_KEYS}
        return out

    def divergences(self) -> int:
        ss = getattr(self.idata, "sample_stats", None)
        if ss is None or "diverging" not in ss:
            return 0
        return int(ss["diverging"].values.sum())

    # -- files -----------------------------------------------------------------------------------------------
    def to_netcdf(self, path: str | os.PathLike) -> Path:
        """Write all groups to one netCDF file (atomically)."""
        import tempfile

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:

            self.idata.to_netcdf(tmp, engine="h5netcdf")
            os.chmod(tmp, default_mode())
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return path

    @classmethod
    def from_netcdf(cls, path: str | os.PathLike) -> "Posterior":
        path = Path(path)
        if not path.is_file():
            raise LatentInferError(f"posterior file not found: {path}")
        try:
            idata = az.from_netcdf(path, engine="h5netcdf")
            idata.posterior  # noqa: B018 - must exist
        except Exception as exc:  # corrupt or foreign file
            raise LatentInferError(f"cannot read posterior file {path}: {type(exc).__name__}: {exc}") from None
        return cls(idata.load())

    def __repr__(self) -> str:
        return f"Posterior(method={self.method!r}, chains={self.num_chains}, draws={self.num_draws}, parameters={self.parameter_names})"


def _attr(v: Any) -> Any:
    if isinstance(v, (str, int, float)) and not isinstance(v, bool):
        return v
    return json.dumps(to_jsonable(v))


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
    import torch

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
