"""The program's unconstrained log density as one batched torch function, with the likelihood-aware fast path.

``Analysis.unconstrained_log_density`` runs the Pyro program through ``poutine.trace`` on every call: general, but
about 4 ms per call at batch 1 on the Planck latent program, almost all of it overhead. :class:`LogDensity` computes
the same number (tested equal to float rounding, float64) from pieces built once:

- the priors as distributions (a correlated nuisance block as one multivariate normal: the same joint density as the
  chain of conditional sites the program samples);
- the forward model cut to what the likelihoods read (:meth:`~latentinfer.ForwardModel.truncated`: the IVE decoder
  computes only the spectra and the multipoles the likelihoods bin, e.g. no PP and TT to ell 2508 for plik_lite);
- each fixed-covariance Gaussian likelihood as ``-|L^-1 (d - m)|^2 / 2 + const``, one matrix product
  (:meth:`~latentinfer.likelihoods.Likelihood.fast_log_prob`); any other likelihood through its own distribution.

Leading batch dimensions of ``u`` are chains; ``data={likelihood: (..., n_data)}`` puts data sets on a batch
dimension too (coverage studies run many data sets through one batched sampler). ``dtype=torch.float32`` runs the
forward model and likelihoods in single precision (priors and transforms stay in the analysis' precision).

:meth:`LogDensity.value_and_grad` has two backends: ``"handwritten"`` (default; :mod:`.handwritten`: the same
forward pass without an autograd graph and the chain rule written out: ~2x faster at batch 1, ~1.25x at batch 64,
where the matrix products dominate) and ``"autograd"``.
The hand-written one covers the priors, interval transforms, the truncated IVE decoder (with or without the physical
map) and fixed-Gaussian bandpower likelihoods; any other piece goes through autograd on its own, and
:attr:`LogDensity.paths` records which path each piece takes.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..errors import DataError, LatentInferError
from ..priors import fixed_value, is_fixed, to_distribution
from .handwritten import HandwrittenVG

__all__ = ["LogDensity"]


class LogDensity:
    """``log p(theta(u), data) + log |d theta / d u|`` for unconstrained ``u (..., n_params)``.

    Parameters
    ----------
    analysis : Analysis
    dtype : torch.dtype, optional
        Precision of the forward model and likelihoods (default: the analysis').
    fused : bool
        Use the truncated forward model and the whitened Gaussian likelihoods (default). ``False`` evaluates the full
        forward model and each likelihood's distribution, without the Pyro trace (a reference path).
    data : mapping, optional
        ``{likelihood name: (..., n_data)}`` data to use instead of each likelihood's observed data.
    backend : {"handwritten", "autograd"}
        How :meth:`value_and_grad` differentiates: ``"handwritten"`` (default) uses the graph-free chain rule of
        :class:`~latentinfer.program.handwritten.HandwrittenVG` for every piece it covers and autograd for the rest
        (needs ``fused``; with ``fused=False`` everything is autograd); ``"autograd"``: one autograd pass through
        :meth:`__call__`. :attr:`paths` says which path each piece (parameters, forward, each likelihood) takes.
    """

    BACKENDS = ("handwritten", "autograd")

    def __init__(self, analysis, *, dtype: torch.dtype | None = None, fused: bool = True, data: Mapping[str, torch.Tensor] | None = None,
                 backend: str = "handwritten"):
        if backend not in self.BACKENDS:
            raise LatentInferError(f"LogDensity: backend must be one of {', '.join(self.BACKENDS)}, got {backend!r}")
        self.analysis = analysis
        self.base_dtype = analysis.dtype
        self.dtype = dtype or analysis.dtype
        self.fused = bool(fused)
        self._z_dtype = analysis.dtype  # inputs of the forward model: full precision unless the whole model is cast
        self.names = list(analysis.parameter_names)
        self.n = len(self.names)
        self.transforms = analysis.transforms()
        self._identity = [_is_identity(self.transforms[n]) for n in self.names]
        idx = {n: i for i, n in enumerate(self.names)}
        bd = self.base_dtype
        # inputs of the forward model: a sampled index or a fixed value
        self._inputs = []
        for name in analysis.input_names:
            spec = analysis._prior[name]
            self._inputs.append(("fixed", fixed_value(spec)) if is_fixed(spec) else ("param", idx[name]))
        self._priors = [(idx[n], to_distribution(analysis._prior[n], bd)) for n in analysis.input_names if n in idx]
        # nuisance parameters: scalar priors, fixed values, or correlated Gaussian blocks
        self._nuisance_fixed: dict[str, float] = {}
        self._blocks = []
        for block in analysis._nuisance_blocks:
            if analysis._scalar_nuisance_spec(block, block.names[0]) is not None:
                for name in block.names:
                    spec = analysis._scalar_nuisance_spec(block, name)
                    if is_fixed(spec):
                        self._nuisance_fixed[name] = fixed_value(spec)
                    else:
                        self._priors.append((idx[name], to_distribution(spec, bd)))
            else:
                mean, cov = (torch.as_tensor(a, dtype=bd) for a in block.prior["mvnormal"])
                mvn = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov, validate_args=False)
                self._blocks.append(([idx[n] for n in block.names], mvn))
        self._nuisance_params = [n for n in analysis.nuisance_names if n in idx]
        self._idx = idx
        # forward model and likelihoods
        liks = list(analysis.likelihoods)
        if self.fused:
            lengths: dict[str, int] | None = {}
            for lik in liks:
                tl = lik.theory_lengths
                if tl is None:
                    lengths = None
                    break
                for k, v in tl.items():
                    lengths[k] = max(lengths.get(k, 0), int(v))
            fwd = analysis.forward.truncated(lengths)
        else:
            fwd = analysis.forward
        if self.dtype != bd:
            import copy

            last = fwd[-1] if isinstance(fwd, torch.nn.Sequential) else fwd
            if hasattr(last, "with_expansion_dtype"):  # the IVE decoder: only its expansion in low precision
                last = last.with_expansion_dtype(self.dtype)
                fwd = torch.nn.Sequential(*list(fwd)[:-1], last) if isinstance(fwd, torch.nn.Sequential) else last
            else:
                fwd = copy.deepcopy(fwd).to(self.dtype)
                self._z_dtype = self.dtype
            liks = [copy.deepcopy(lik).to(self.dtype) for lik in liks]
        self.forward = fwd
        self.likelihoods = liks
        self._fast = [self.fused and lik.fixed_gaussian for lik in liks]
        self.data = {}
        for lik in liks:
            d = lik.data
            if data is not None and lik.name in data:
                d = torch.as_tensor(data[lik.name])
                if d.shape[-1:] != lik.data.shape:
                    raise DataError(f"data of '{lik.name}': needs (..., {lik.n_data}) values, got shape {tuple(d.shape)}")
                if not bool(torch.isfinite(d).all()):
                    raise DataError(f"data of '{lik.name}': NaN/inf entries")
            self.data[lik.name] = d.to(self.dtype)
        if data is not None:
            unknown = set(data) - {lik.name for lik in liks}
            if unknown:
                raise LatentInferError(f"LogDensity: unknown likelihood(s) {sorted(unknown)} in data")
        self._hand = None
        if backend == "handwritten" and self.fused:
            self._hand = HandwrittenVG(self)
        self.backend = "handwritten" if self._hand is not None else "autograd"
        if self._hand is not None:
            self.paths = dict(self._hand.paths)
        else:
            self.paths = {"parameters": "autograd", "forward": "autograd", **{f"likelihood:{lik.name}": "autograd" for lik in liks}}

    def describe_backend(self) -> str:
        """One line for run records: ``"handwritten"``, ``"autograd"``, or ``"handwritten (autograd: PIECES)"``."""
        auto = [k for k, v in self.paths.items() if v != "handwritten"]
        if self.backend == "autograd" or not auto:
            return self.backend
        names = ["some parameters" if k == "parameters" and self.paths[k] != "autograd" else k for k in auto]
        return f"handwritten (autograd: {', '.join(names)})"

    # -- pieces ------------------------------------------------------------------------------------------------
    def constrain(self, u: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``([theta_i (...)], log|J| (...))`` for unconstrained ``u (..., n)``."""
        xs, logdet = [], None
        for i, name in enumerate(self.names):
            ui = u[..., i]
            if self._identity[i]:
                xs.append(ui)
                continue
            t = self.transforms[name]
            x = t(ui)
            ld = t.log_abs_det_jacobian(ui, x)
            logdet = ld if logdet is None else logdet + ld
            xs.append(x)
        if logdet is None:
            logdet = torch.zeros(u.shape[:-1], dtype=u.dtype)
        return xs, logdet

    def log_prior(self, xs: list[torch.Tensor]) -> torch.Tensor:
        total = None
        for i, d in self._priors:
            lp = d.log_prob(xs[i])
            total = lp if total is None else total + lp
        for ids, mvn in self._blocks:
            lp = mvn.log_prob(torch.stack([xs[i] for i in ids], -1))
            total = lp if total is None else total + lp
        return total

    def theory(self, xs: list[torch.Tensor], batch_shape) -> dict[str, torch.Tensor]:
        cols = [xs[v] if kind == "param" else torch.full(batch_shape, v, dtype=self.base_dtype) for kind, v in self._inputs]
        z = torch.stack(torch.broadcast_tensors(*cols), -1) if cols else None
        out = self.forward(z.to(self._z_dtype))
        return {k: v.to(self.dtype) for k, v in out.items()}

    def log_likelihood(self, xs: list[torch.Tensor], batch_shape) -> dict[str, torch.Tensor]:
        theory = self.theory(xs, batch_shape)
        nuisance = {n: torch.as_tensor(v, dtype=self.dtype) for n, v in self._nuisance_fixed.items()}
        for n in self._nuisance_params:
            nuisance[n] = xs[self._idx[n]].to(self.dtype)
        out = {}
        for lik, fast in zip(self.likelihoods, self._fast):
            d = self.data[lik.name]
            if fast:
                out[lik.name] = lik.fast_log_prob(theory, nuisance, d)
            else:
                out[lik.name] = lik.distribution(theory, nuisance).log_prob(d)
        return out

    def log_joint(self, xs: list[torch.Tensor], batch_shape) -> torch.Tensor:
        """``log p(theta) + log p(data | theta)`` at constrained values ``xs`` (no Jacobian), in the analysis' dtype."""
        return self.log_prior(xs) + sum(v.to(self.base_dtype) for v in self.log_likelihood(xs, batch_shape).values())

    # -- the density -------------------------------------------------------------------------------------------
    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        """Log density ``(...)`` at unconstrained ``u (..., n_params)``."""
        u = torch.as_tensor(u, dtype=self.base_dtype)
        if u.shape[-1] != self.n:
            raise LatentInferError(f"LogDensity: u needs {self.n} values {self.names} in its last axis, got shape {tuple(u.shape)}")
        xs, logdet = self.constrain(u)
        return self.log_joint(xs, u.shape[:-1]) + logdet

    def value_and_grad(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log density (...), gradient (..., n))`` at ``u``, detached (by :attr:`backend`, see :attr:`paths`)."""
        if self._hand is not None:
            u = torch.as_tensor(u, dtype=self.base_dtype)
            if u.shape[-1] != self.n:
                raise LatentInferError(f"LogDensity: u needs {self.n} values {self.names} in its last axis, got shape {tuple(u.shape)}")
            return self._hand(u)
        return self._autograd_value_and_grad(u)

    def _autograd_value_and_grad(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = torch.as_tensor(u, dtype=self.base_dtype).detach().requires_grad_(True)
        with torch.enable_grad():
            lp = self(u)
            (g,) = torch.autograd.grad(lp.sum(), u)
        return lp.detach(), g


def _is_identity(t) -> bool:
    from torch.distributions.transforms import identity_transform

    return t == identity_transform
