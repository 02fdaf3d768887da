"""The :class:`Likelihood` interface that every experiment implements.

A likelihood compares one or more outputs of a forward model (its "theory") with a data vector. It declares
its nuisance parameters with priors, so that :class:`~latentinfer.Analysis` puts them in the Pyro program, and
it can simulate data for simulation-based inference and coverage studies.

Contract
--------
- ``theory`` is a dict of tensors ``{output_name: (..., n)}`` as returned by a
  :class:`~latentinfer.ForwardModel`; leading batch dimensions broadcast.
- ``nuisance`` is a dict ``{name: tensor (...)}`` of the parameters in :attr:`nuisance_names`.
- :meth:`predict` returns the model data vector ``(..., n_data)``; the default :meth:`distribution` is a
  Gaussian around it with the likelihood's fixed covariance. Override :meth:`distribution` for anything else.

Writing one
-----------
A Gaussian likelihood only needs :meth:`predict`:

>>> import torch
>>> class Doubled(Likelihood):
...     requires = ("y",)
...     def predict(self, theory, nuisance):
...         return 2.0 * theory["y"]
>>> lik = Doubled(data=torch.zeros(3), cov=torch.eye(3), name="doubled")
>>> float(lik.log_prob({"y": torch.zeros(3)}, {}))  # doctest: +ELLIPSIS
-2.756...
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyro.distributions as dist
import torch

from ..errors import DataError, LatentInferError
from ..priors import check_spec

__all__ = ["Likelihood", "Nuisance", "check_data", "check_covariance"]


@dataclass(frozen=True)
class Nuisance:
    """A nuisance parameter, or a block of them with a joint Gaussian prior.

    ``names`` has one entry for a single parameter with ``prior`` a spec (``{"normal": [1, 0.0025]}``), or
    several entries with ``prior = {"mvnormal": [mean, cov]}``.
    """

    names: tuple[str, ...]
    prior: Any
    latex: tuple[str, ...] = field(default=())
    description: str = ""

    def __post_init__(self):
        if isinstance(self.names, str):
            object.__setattr__(self, "names", (self.names,))
        if len(self.names) == 1:
            object.__setattr__(self, "prior", check_spec(self.prior, self.names[0]))
        else:
            kind = next(iter(self.prior)) if isinstance(self.prior, dict) else None
            if kind != "mvnormal":
                raise LatentInferError(f"nuisance block {self.names} needs an mvnormal prior")
            mean, cov = self.prior["mvnormal"]
            mean = torch.as_tensor(mean, dtype=torch.float64)
            cov = torch.as_tensor(cov, dtype=torch.float64)
            if mean.shape != (len(self.names),) or cov.shape != (len(self.names),) * 2:
                raise LatentInferError(f"nuisance block {self.names}: mean/cov shapes {tuple(mean.shape)}/{tuple(cov.shape)}")
            check_covariance(cov, f"prior covariance of {self.names}")


def check_data(data: torch.Tensor, what: str) -> torch.Tensor:
    """A 1-d finite float64 tensor, or a :class:`DataError` naming ``what``."""
    data = torch.as_tensor(data, dtype=torch.float64)
    if data.ndim != 1:
        raise DataError(f"{what}: data must be a vector, got shape {tuple(data.shape)}")
    bad = ~torch.isfinite(data)
    if bad.any():
        raise DataError(f"{what}: data has {int(bad.sum())} NaN/inf entries (first at index {int(bad.nonzero()[0])})")
    return data


def check_covariance(cov: torch.Tensor, what: str) -> torch.Tensor:
    """A finite, symmetric, positive-definite float64 matrix, or a :class:`DataError` naming ``what``."""
    cov = torch.as_tensor(cov, dtype=torch.float64)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise DataError(f"{what}: covariance must be a square matrix, got shape {tuple(cov.shape)}")
    if not torch.isfinite(cov).all():
        raise DataError(f"{what}: covariance has NaN/inf entries")
    scale = cov.abs().max().clamp_min(1e-300)
    if (cov - cov.T).abs().max() > 1e-8 * scale:
        raise DataError(f"{what}: covariance is not symmetric (max |C - C^T| = {float((cov - cov.T).abs().max()):.3g})")
    _, info = torch.linalg.cholesky_ex(cov)
    if int(info) != 0:
        raise DataError(f"{what}: covariance is not positive definite")
    return cov


class Likelihood(torch.nn.Module):
    """A Gaussian (by default) likelihood of a data vector given forward-model outputs.

    Parameters
    ----------
    data : tensor (n_data,)
        The measured data vector, in the units of :meth:`predict` (e.g. D_ell in muK^2 bandpowers).
    cov : tensor (n_data, n_data)
        Its covariance; must be symmetric positive definite.
    name : str
        Unique name; the observed site of the Pyro program and the arviz log-likelihood variable.
    nuisance : sequence of :class:`Nuisance`
        Nuisance parameters with their priors.
    """

    requires: ClassVar[tuple[str, ...]] = ()
    description: str = ""

    def __init__(self, data, cov, *, name: str, nuisance: Sequence[Nuisance] = (), meta: Mapping[str, Any] | None = None):
        super().__init__()
        self.name = str(name)
        data = check_data(data, self.name)
        cov = check_covariance(cov, self.name)
        if cov.shape[0] != data.shape[0]:
            raise DataError(f"{self.name}: data has {data.shape[0]} entries but covariance is {tuple(cov.shape)}")
        self.register_buffer("data", data)
        self.register_buffer("cov", cov)
        self.register_buffer("scale_tril", torch.linalg.cholesky(cov))
        self.nuisance = tuple(nuisance)
        self.meta = dict(meta or {})

    # -- the one hook a Gaussian likelihood must write ------------------------------------------------------
    def predict(self, theory: Mapping[str, torch.Tensor], nuisance: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The model data vector ``(..., n_data)`` for ``theory`` and ``nuisance``."""
        raise NotImplementedError

    # -- derived ---------------------------------------------------------------------------------------------
    @property
    def n_data(self) -> int:
        return int(self.data.shape[0])

    @property
    def nuisance_names(self) -> list[str]:
        return [n for block in self.nuisance for n in block.names]

    def check_theory(self, sizes: Mapping[str, int]) -> None:
        """Raise a clear error if a forward model with output lengths ``sizes`` cannot feed this likelihood."""
        missing = [k for k in self.requires if k not in sizes]
        if missing:
            raise LatentInferError(f"likelihood '{self.name}' needs outputs {missing}; the forward model gives {sorted(sizes)}")

    def distribution(self, theory, nuisance) -> dist.Distribution:
        """The sampling distribution of the data: Gaussian around :meth:`predict` with covariance :attr:`cov`."""
        mean = self.predict(theory, nuisance)
        if mean.shape[-1] != self.n_data:
            raise LatentInferError(
                f"likelihood '{self.name}': the forward model gives {mean.shape[-1]} values but the data has {self.n_data}"
            )
        # the covariance was checked once at construction; validating it again per call would expand the
        # (n, n) Cholesky factor to the batch shape (gigabytes for a batch of 10^4 theories)
        return dist.MultivariateNormal(mean, scale_tril=self.scale_tril.to(mean.dtype), validate_args=False)

    def log_prob(self, theory, nuisance, data: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised log-likelihood ``(...)`` of ``data`` (default: the observed data)."""
        d = self.data if data is None else data
        return self.distribution(theory, nuisance).log_prob(d.to(self.data.dtype))

    def chi2(self, theory, nuisance, data: torch.Tensor | None = None) -> torch.Tensor:
        """``r^T C^-1 r`` with ``r = data - predict``; shape ``(...)``."""
        d = self.data if data is None else data
        r = d - self.predict(theory, nuisance)
        L = self.scale_tril.to(r.dtype)
        # one triangular solve with the batch as columns: (n, n) \ (n, B), no copies of L per batch member
        w = torch.linalg.solve_triangular(L, r.reshape(-1, r.shape[-1]).T, upper=False)
        return (w**2).sum(0).reshape(r.shape[:-1])

    # -- the fast path of batched samplers (see latentinfer.program.density) -----------------------------------
    @property
    def theory_lengths(self) -> dict[str, int] | None:
        """How many leading values of each required output :meth:`predict` reads (``{output: n}``), or None when
        it reads them whole. A forward model may then compute only those (exactly the same numbers)."""
        return None

    @property
    def fixed_gaussian(self) -> bool:
        """True when the sampling distribution is the default Gaussian with the fixed covariance :attr:`cov`
        (a subclass that overrides :meth:`distribution` or :meth:`log_prob` is not)."""
        cls = type(self)
        return cls.distribution is Likelihood.distribution and cls.log_prob is Likelihood.log_prob

    def _predict_unchecked(self, theory, nuisance) -> torch.Tensor:
        """:meth:`predict` without per-call input checks (the fast path checks once, at set-up)."""
        return self.predict(theory, nuisance)

    def whitener(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``W = L^-1`` (lower triangular, ``C = L L^T``), so that ``chi2 = |W r|^2``; cached per dtype."""
        cache = self.__dict__.setdefault("_whiteners", {})
        key = (dtype, self.scale_tril.data_ptr(), tuple(self.scale_tril.shape))
        if key not in cache:
            n = self.scale_tril.shape[0]
            eye = torch.eye(n, dtype=torch.float64)
            W = torch.linalg.solve_triangular(self.scale_tril.to(torch.float64), eye, upper=False)
            cache.clear()
            cache[key] = W.to(dtype).contiguous()
            cache["log_norm"] = self.log_normalisation()  # with the factor it belongs to, not per call
        return cache[key]

    def fast_log_prob(self, theory, nuisance, data: torch.Tensor | None = None) -> torch.Tensor:
        """Same as :meth:`log_prob` for a :attr:`fixed_gaussian` likelihood, without building a distribution:
        ``-chi2/2 + log_normalisation``, with ``chi2 = |L^-1 (data - predict)|^2`` as one matrix product.
        ``data`` may carry batch dimensions ``(..., n_data)`` (one data set per chain)."""
        d = self.data if data is None else data
        mean = self._predict_unchecked(theory, nuisance)
        W = self.whitener(mean.dtype)
        r = d.to(mean.dtype) - mean
        w = r @ W.T
        return -0.5 * (w * w).sum(-1) + self.__dict__["_whiteners"]["log_norm"]

    def log_normalisation(self) -> float:
        """``-0.5 log det(2 pi C)``: the constant that separates :meth:`log_prob` from ``-chi2 / 2``."""
        return float(-0.5 * self.n_data * math.log(2 * math.pi) - torch.log(torch.diagonal(self.scale_tril)).sum())

    def simulate(self, theory, nuisance, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw a data vector ``(..., n_data)`` around :meth:`predict` (Gaussian noise with :attr:`cov`)."""
        mean = self.predict(theory, nuisance)
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        return mean + (self.scale_tril.to(mean.dtype) @ eps.unsqueeze(-1)).squeeze(-1)

    def data_space_covariance(self, error_cov: Mapping[str, torch.Tensor], theory, nuisance) -> torch.Tensor:
        """Project a model-error covariance per output into data space, ``J Sigma J^T``.

        ``J`` is the Jacobian of :meth:`predict` with respect to each required output at ``theory`` (exact for
        the linear maps of binning and calibration).
        """
        total = torch.zeros_like(self.cov)
        for key in self.requires or tuple(error_cov):
            if key not in error_cov:
                continue
            t0 = theory[key].detach().to(torch.float64)

            def f(t, key=key):
                th = dict(theory)
                th[key] = t
                return self.predict(th, nuisance)

            J = torch.autograd.functional.jacobian(f, t0)
            S = torch.as_tensor(error_cov[key], dtype=torch.float64)
            total = total + J @ S @ J.T
        return total

    def with_extra_covariance(self, extra: torch.Tensor) -> "Likelihood":
        """A copy whose covariance is ``cov + extra`` (e.g. emulator error)."""
        new = copy.deepcopy(self)
        cov = check_covariance(self.cov + torch.as_tensor(extra, dtype=torch.float64), f"{self.name} + extra covariance")
        new.cov = cov
        new.scale_tril = torch.linalg.cholesky(cov)
        return new

    def extra_repr(self) -> str:
        return f"name={self.name!r}, n_data={self.n_data}, nuisance={self.nuisance_names}"
