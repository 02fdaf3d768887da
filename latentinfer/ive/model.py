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

from ..bundle.nets import Decoder, Encoder, Normaliser, PCAExpansion, TruncatedDecoder, mlp  # runtime nets, re-exported
from ..grid import SPECTRA

__all__ = ["mlp", "PCAExpansion", "Encoder", "Decoder", "TruncatedDecoder", "IVE", "fit_pca"]


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
