"""The interpretable variational encoder (beta-VAE) on CMB spectra.

Shapes: ``d`` latents, ``k`` PCA components per spectrum, ``n = 3199`` multipoles (ell = 2..3200).

* :class:`PCAExpansion`: fixed linear layer, whitened coefficients ``(..., 4k)`` -> standardised targets
  ``{S: (..., n)}`` (see :mod:`latentinfer.ive.data` for the target space);
* :class:`Encoder`: whitened PCA coefficients ``(..., 4k)`` -> latent mean and log-variance ``(..., d)`` each;
* :class:`Decoder`: latents ``(..., d)`` -> D_ell dict ``{TT, TE, EE: muK^2, PP: dimensionless; (..., n)}``.

Latents are re-expressed after training (buffers ``z_shift`` and the ``(d, d)`` matrices ``z_unmix`` of the
encoder, ``z_mix = z_unmix^-1`` of the decoder) so that the encoder means over the training set have zero mean and
identity covariance, in the basis chosen by :mod:`latentinfer.ive.basis` (independent components by default):
the N(0, I) prior of inference then covers the corpus.
"""

from __future__ import annotations

import numpy as np
import torch

from .data import SPECTRA, Normaliser

__all__ = ["mlp", "PCAExpansion", "Encoder", "Decoder", "TruncatedDecoder", "IVE", "fit_pca"]

_ACT = {"tanh": torch.nn.Tanh, "silu": torch.nn.SiLU, "gelu": torch.nn.GELU, "relu": torch.nn.ReLU}


def mlp(d_in: int, hidden: list[int], d_out: int, activation: str = "silu") -> torch.nn.Sequential:
    layers, d = [], d_in
    for h in hidden:
        layers += [torch.nn.Linear(d, h), _ACT[activation]()]
        d = h
    layers.append(torch.nn.Linear(d, d_out))
    return torch.nn.Sequential(*layers)


def fit_pca(x: dict[str, np.ndarray], k: int) -> dict[str, np.ndarray]:
    """Per-spectrum PCA of standardised targets ``{S: (N, n)}``: ``mean_S (n,)``, ``comp_S (k, n)``, ``std_S (k,)``."""
    out = {}
    with torch.random.fork_rng():
        torch.manual_seed(0)  # randomized SVD (Halko et al.): deterministic, O(N n k) instead of O(n^3)
        for s in SPECTRA:
            m = x[s].mean(0)
            xc = torch.as_tensor(x[s] - m, dtype=torch.float64)
            _, sv, v = torch.svd_lowrank(xc, q=min(k + 24, min(xc.shape)), niter=6, M=None)
            vt = v[:, :k].T.numpy().copy()
            vt *= np.sign(vt[np.arange(len(vt)), np.argmax(np.abs(vt), axis=1)])[:, None]
            out[f"mean_{s}"], out[f"comp_{s}"] = m, vt
            out[f"std_{s}"] = sv[:k].numpy() / np.sqrt(max(len(xc) - 1, 1)) + 1e-12
    return out


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
        return (mu - self.z_shift) @ self.z_unmix.T, torch.log(var)


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
        there moves chi2 under Planck plik_lite by ~0.02 (tests/test_log_density.py)."""
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


class IVE(torch.nn.Module):
    """Encoder + decoder; ``forward(c)`` returns (reconstructed whitened coefficients, mean, log-variance)."""

    def __init__(self, d: int, k: int, enc_hidden: list[int], dec_hidden: list[int], pca: dict[str, np.ndarray],
                 normaliser: Normaliser, activation: str = "silu", encoder_pca: int | None = None):
        super().__init__()
        self.encoder = Encoder(k, d, enc_hidden, activation, encoder_pca)
        self.decoder = Decoder(d, k, dec_hidden, pca, normaliser, activation)

    def forward(self, c: torch.Tensor, sample: bool = True):
        mu, logvar = self.encoder(c)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if sample else mu
        return self.decoder.coefficients(z), mu, logvar

    @torch.no_grad()
    def standardise_latents(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rescale so encoder means over ``c`` have zero mean and unit variance (decoder compensates exactly).
        Returns the change of basis ``(shift, A)`` (``z' = A (z - shift)``), e.g. for a physical map."""
        self.encoder.z_shift.zero_(); self.encoder.z_unmix.copy_(torch.eye(len(self.encoder.z_shift)))
        mu, _ = self.encoder(c)
        shift, A = mu.mean(0), torch.diag(1.0 / (mu.std(0) + 1e-12))
        self.change_basis(shift, A)
        return shift, A

    @torch.no_grad()
    def change_basis(self, shift: torch.Tensor, A: torch.Tensor) -> None:
        """New latents ``z' = A (z - shift)`` for an invertible ``A (d, d)``; the decoder compensates exactly."""
        A = torch.as_tensor(A, dtype=torch.float64)
        shift = torch.as_tensor(shift, dtype=torch.float64)
        U = self.encoder.z_unmix.double()
        mix = torch.linalg.inv(U)  # the old latent -> net-latent map
        new_shift = self.encoder.z_shift.double() + mix @ shift
        new_unmix = A @ U
        for m in (self.encoder, self.decoder):
            m.z_shift.copy_(new_shift)
        self.encoder.z_unmix.copy_(new_unmix)
        self.decoder.z_mix.copy_(torch.linalg.inv(new_unmix))
