"""The runtime networks of an IVE bundle (no training code): the decoder and its fixed pieces, the encoder, the
physical-parameter map, and the normaliser between D_ell and the standardised target space.

Shapes: ``d`` latents, ``k`` PCA components per spectrum, ``n = 3199`` multipoles (ell = 2..3200).

* :class:`Normaliser`: D_ell <-> standardised targets (``log D`` for TT, EE, PP; ``TE / sqrt(TT EE)`` for TE,
  minus the training mean, over the per-ell training std; see :mod:`latentinfer.ive.data`);
* :class:`PCAExpansion`: fixed linear layer, whitened coefficients ``(..., 4k)`` -> standardised targets;
* :class:`Encoder`: whitened PCA coefficients ``(..., 4k)`` -> latent mean and log-variance ``(..., d)`` each;
* :class:`Decoder`: latents ``(..., d)`` -> D_ell dict ``{TT, TE, EE: muK^2, PP: dimensionless; (..., n)}``;
  :class:`TruncatedDecoder` computes only the spectra and multipoles a likelihood reads;
* :class:`PhysicalMap`: physical parameters ``(..., p)`` -> latents ``(..., d)``.

Training (:mod:`latentinfer.ive`) builds and fits these; loading a bundle needs only this module.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from ..grid import SPECTRA

__all__ = ["mlp", "Normaliser", "PCAExpansion", "Encoder", "Decoder", "TruncatedDecoder", "PhysicalMap"]

_ACT = {"tanh": torch.nn.Tanh, "silu": torch.nn.SiLU, "gelu": torch.nn.GELU, "relu": torch.nn.ReLU}


def mlp(d_in: int, hidden: list[int], d_out: int, activation: str = "silu") -> torch.nn.Sequential:
    layers, d = [], d_in
    for h in hidden:
        layers += [torch.nn.Linear(d, h), _ACT[activation]()]
        d = h
    layers.append(torch.nn.Linear(d, d_out))
    return torch.nn.Sequential(*layers)


class Normaliser(torch.nn.Module):
    """Forward map D_ell -> standardised targets ``x`` and the differentiable inverse ``x -> D_ell``.

    Buffers (all float64, shape (3199,) each): ``ref_<S>`` (reference: training mean of the transformed
    spectrum) and ``scale_<S>`` (per-ell standard deviation), for S in TT, TE, EE, PP.
    """

    def __init__(self, ref: Mapping[str, np.ndarray | torch.Tensor], scale: Mapping[str, np.ndarray | torch.Tensor]):
        super().__init__()
        for k in SPECTRA:
            self.register_buffer(f"ref_{k}", torch.as_tensor(np.asarray(ref[k]), dtype=torch.float64))
            self.register_buffer(f"scale_{k}", torch.as_tensor(np.asarray(scale[k]), dtype=torch.float64))

    @staticmethod
    def transform(D: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """log D for TT, EE, PP; TE / sqrt(TT * EE) for TE (numpy, any leading shape)."""
        return {"TT": np.log(D["TT"]), "EE": np.log(D["EE"]), "PP": np.log(D["PP"]),
                "TE": D["TE"] / np.sqrt(D["TT"] * D["EE"])}

    @classmethod
    def fit(cls, D: Mapping[str, np.ndarray]) -> "Normaliser":
        t = cls.transform(D)
        return cls({k: t[k].mean(0) for k in SPECTRA}, {k: t[k].std(0) + 1e-12 for k in SPECTRA})

    def ref(self, k: str) -> torch.Tensor:
        return getattr(self, f"ref_{k}")

    def scale(self, k: str) -> torch.Tensor:
        return getattr(self, f"scale_{k}")

    def encode(self, D: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """D_ell dict -> standardised targets ``x`` (numpy float64)."""
        t = self.transform(D)
        return {k: (t[k] - self.ref(k).numpy()) / self.scale(k).numpy() for k in SPECTRA}

    def decode(self, x: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Standardised targets ``x`` (torch, (..., 3199)) -> D_ell (TT, TE, EE in muK^2; PP dimensionless)."""
        t = {k: x[k] * self.scale(k).to(x[k].dtype) + self.ref(k).to(x[k].dtype) for k in SPECTRA}
        TT, EE = torch.exp(t["TT"]), torch.exp(t["EE"])
        return {"TT": TT, "TE": t["TE"] * torch.sqrt(TT * EE), "EE": EE, "PP": torch.exp(t["PP"])}

    def jacobian_diag(self, D: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """dD/dx per ell at spectra ``D`` (diagonal, for noise weighting): D*scale for logs, sqrt(TT EE)*scale for TE."""
        return {"TT": D["TT"] * self.scale_TT.numpy(), "EE": D["EE"] * self.scale_EE.numpy(),
                "PP": D["PP"] * self.scale_PP.numpy(), "TE": np.sqrt(D["TT"] * D["EE"]) * self.scale_TE.numpy()}


class PCAExpansion(torch.nn.Module):
    """Fixed (non-trainable) map between standardised spectra and whitened PCA coefficients."""

    def __init__(self, pca: dict[str, np.ndarray]):
        super().__init__()
        for key, v in pca.items():
            self.register_buffer(key, torch.as_tensor(np.asarray(v), dtype=torch.float32))
        self.k = int(self.comp_TT.shape[0])

    def expand(self, c: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(..., 4k)`` whitened coefficients -> ``{S: (..., n)}`` standardised targets."""
        parts = torch.split(c, self.k, dim=-1)
        return {s: (p * getattr(self, f"std_{s}")) @ getattr(self, f"comp_{s}") + getattr(self, f"mean_{s}")
                for s, p in zip(SPECTRA, parts)}

    def project(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        """``{S: (..., n)}`` -> ``(..., 4k)`` whitened coefficients (orthogonal projection)."""
        return torch.cat([((x[s] - getattr(self, f"mean_{s}")) @ getattr(self, f"comp_{s}").T) / getattr(self, f"std_{s}")
                          for s in SPECTRA], dim=-1)


class Encoder(torch.nn.Module):
    """Whitened coefficients ``(..., 4k)`` -> latent mean and log-variance. Only the leading ``k_in`` components
    of each spectrum enter (the trailing ones, whitened to unit variance, are mostly noise the net would overfit)."""

    def __init__(self, k: int, d: int, hidden: list[int], activation: str = "silu", k_in: int | None = None):
        super().__init__()
        self.k, self.k_in = k, min(k_in or k, k)
        self.net = mlp(4 * self.k_in, hidden, 2 * d, activation)
        self.register_buffer("z_shift", torch.zeros(d))
        self.register_buffer("z_unmix", torch.eye(d))

    def forward(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Whitened coefficients ``(..., 4k)`` -> (mean, log-variance) of the latents, ``(..., d)`` each.

        The net's own latents ``u`` map to ``z = z_unmix (u - z_shift)``; the variance is the diagonal of
        ``z_unmix diag(var_u) z_unmix^T`` (exact while the basis is diagonal, as during training).
        """
        c = c.reshape(*c.shape[:-1], 4, self.k)[..., : self.k_in].reshape(*c.shape[:-1], 4 * self.k_in)
        mu, logvar = self.net(c).chunk(2, dim=-1)
        var = torch.exp(logvar) @ (self.z_unmix ** 2).T
        # a variance below the dtype's smallest normal (exp underflows at beta ~ 1e-5 for some rows) is held there: its
        # log would be -inf and the KL term NaN, which ended every stage of a fine-tune's encoder at its first batch
        return (mu - self.z_shift) @ self.z_unmix.T, torch.log(var.clamp_min(torch.finfo(var.dtype).tiny))


class Decoder(torch.nn.Module):
    """Latents -> D_ell. Holds the MLP, the fixed PCA expansion and the normaliser's inverse."""

    def __init__(self, d: int, k: int, hidden: list[int], pca: dict[str, np.ndarray], normaliser: Normaliser,
                 activation: str = "silu"):
        super().__init__()
        self.net = mlp(d, hidden, 4 * k, activation)
        self.expansion = PCAExpansion(pca)
        self.normaliser = normaliser
        self.register_buffer("z_shift", torch.zeros(d))
        self.register_buffer("z_mix", torch.eye(d))

    def coefficients(self, z: torch.Tensor) -> torch.Tensor:
        """Latents ``(..., d)`` -> whitened PCA coefficients ``(..., 4k)`` (the net sees ``z_mix z + z_shift``)."""
        return self.net(z @ self.z_mix.T + self.z_shift)

    def standardised(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Latents ``(..., d)`` -> standardised targets ``{S: (..., n)}``."""
        return self.expansion.expand(self.coefficients(z))

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        z = z.to(self.z_mix.dtype)
        return self.normaliser.decode(self.standardised(z))


    def truncated(self, lengths) -> "TruncatedDecoder":
        """The same decoder computing only ``{S: n}``: spectrum ``S`` at its first ``n`` multipoles (ell = 2..n+1).

        Same numbers as ``forward(z)[S][..., :n]`` up to float rounding: the PCA expansion, the normaliser's scale
        and reference are folded into one matrix per spectrum and cut to ``n`` columns; spectra not asked for
        (e.g. PP for a temperature-polarisation likelihood) are not computed at all.
        """
        return TruncatedDecoder(self, lengths)


class TruncatedDecoder(torch.nn.Module):
    """A :class:`Decoder` restricted to leading multipoles of some spectra (see :meth:`Decoder.truncated`)."""

    def __init__(self, decoder: Decoder, lengths):
        super().__init__()
        n_full = int(decoder.expansion.comp_TT.shape[1])
        lengths = {str(s): int(n) for s, n in dict(lengths).items()}
        for s, n in lengths.items():
            if s not in SPECTRA:
                raise ValueError(f"truncated decoder: unknown spectrum '{s}' (outputs: {', '.join(SPECTRA)})")
            if not 1 <= n <= n_full:
                raise ValueError(f"truncated decoder: spectrum '{s}' needs 1..{n_full} values, got {n}")
        internal = dict(lengths)
        if "TE" in lengths:  # TE = r sqrt(TT EE): TT and EE are needed as far as TE
            for s in ("TT", "EE"):
                internal[s] = max(internal.get(s, 0), lengths["TE"])
        self.outputs = dict(lengths)
        self.internal = internal
        self.net = decoder.net
        self.k = decoder.expansion.k
        self.register_buffer("z_shift", decoder.z_shift.detach().clone())
        self.register_buffer("z_mix", decoder.z_mix.detach().clone())
        ex, norm = decoder.expansion, decoder.normaliser
        for s, n in internal.items():
            std = getattr(ex, f"std_{s}").double()
            comp = getattr(ex, f"comp_{s}").double()[:, :n]
            mean = getattr(ex, f"mean_{s}").double()[:n]
            scale, ref = norm.scale(s).double()[:n], norm.ref(s).double()[:n]
            # t = ((c * std) @ comp + mean) * scale + ref = c @ W + b
            self.register_buffer(f"W_{s}", (std[:, None] * comp * scale[None, :]).contiguous())
            # b ~ log D ~ 10 is kept in float64 whatever the module's dtype (a plain attribute, not a buffer): in float32
            # its rounding alone (6e-7 in log D) moves chi2 under Planck by ~0.02; the net's correction c @ W is ~0.1
            self._ref[s] = (mean * scale + ref).contiguous()
        self.order = [s for s in SPECTRA if s in internal]

    @property
    def _ref(self) -> dict[str, torch.Tensor]:
        return self.__dict__.setdefault("_refs", {})

    def with_expansion_dtype(self, dtype: torch.dtype) -> "TruncatedDecoder":
        """A copy whose PCA expansion (the largest matrix product) runs in ``dtype``; the MLP stays in its dtype.

        float32 is safe for the expansion but not for the MLP: its outputs reach |c| ~ 35, and float32 rounding
        there moves chi2 under Planck plik_lite by ~0.02 (tests/program/test_log_density.py)."""
        import copy

        new = copy.copy(self)
        new._buffers = dict(self._buffers)
        new.__dict__["_refs"] = dict(self._ref)
        for s in self.internal:
            new._buffers[f"W_{s}"] = getattr(self, f"W_{s}").to(dtype)
        return new

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{S: (..., n_S)}`` D_ell in float64; the net and the expansion run in the module's dtype."""
        z = z.to(self.z_mix.dtype)
        c = self.net(z @ self.z_mix.T + self.z_shift)
        t = {}
        for i, s in enumerate(SPECTRA):
            if s in self.internal:
                W = getattr(self, f"W_{s}")
                t[s] = (c[..., i * self.k : (i + 1) * self.k].to(W.dtype) @ W).to(torch.float64) + self._ref[s]
        out = {}
        if "TT" in self.outputs or "TE" in self.outputs:
            TT = torch.exp(t["TT"])
        if "EE" in self.outputs or "TE" in self.outputs:
            EE = torch.exp(t["EE"])
        if "TT" in self.outputs:
            out["TT"] = TT[..., : self.outputs["TT"]]
        if "TE" in self.outputs:
            n = self.outputs["TE"]
            out["TE"] = t["TE"] * torch.sqrt(TT[..., :n] * EE[..., :n])
        if "EE" in self.outputs:
            out["EE"] = EE[..., : self.outputs["EE"]]
        if "PP" in self.outputs:
            out["PP"] = torch.exp(t["PP"])
        return out


class PhysicalMap(torch.nn.Module):
    """``theta (..., p)`` in physical units -> rescaled latents ``z (..., d)``."""

    def __init__(self, low: np.ndarray, high: np.ndarray, d: int, hidden: list[int], activation: str = "silu"):
        super().__init__()
        self.register_buffer("low", torch.as_tensor(np.asarray(low), dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(np.asarray(high), dtype=torch.float32))
        self.net = mlp(len(low), hidden, d, activation)

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        u = 2 * (theta.to(self.low.dtype) - self.low) / (self.high - self.low) - 1
        return self.net(u)

    @torch.no_grad()
    def change_basis(self, shift: torch.Tensor, A: torch.Tensor) -> None:
        """Output ``A (z - shift)`` instead of ``z`` (folded into the last linear layer; exact)."""
        last: torch.nn.Linear = self.net[-1]
        A = torch.as_tensor(A, dtype=torch.float64)
        w, b = last.weight.double(), last.bias.double()
        last.weight.copy_(A @ w)
        last.bias.copy_(A @ (b - torch.as_tensor(shift, dtype=torch.float64)))
