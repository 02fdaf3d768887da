"""The emulator's own error as a covariance per output, stored compactly (low rank + diagonal).

From validation residuals ``R_S = D_emulated - D_CAMB`` (N rows, n = 3199 ells, D-units) the second moment
``Sigma_S = R_S^T R_S / N`` (bias included) is approximated as ``U_S U_S^T + diag(d_S)`` with ``U_S (n, r)`` the
top ``r`` principal directions scaled by their singular values and ``d_S`` the remaining per-ell variance, so the
diagonal is exact. Stored as safetensors tensors ``errcov_U_<S>`` and ``errcov_d_<S>`` (a few hundred kB each
instead of 82 MB for a dense 3199^2 float64 matrix).

:class:`LowRankErrorCov` is the mapping placed in :attr:`ForwardModel.error_cov`: ``cov[S]`` expands the dense
``(n, n)`` matrix lazily, on use (``Analysis(..., emulator_error=True)`` projects it with each likelihood's
Jacobian); :meth:`LowRankErrorCov.project` computes ``J Sigma J^T`` without forming it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import torch

__all__ = ["LowRankErrorCov", "fit_error_cov"]


class LowRankErrorCov(Mapping):
    """``{output: (n, n) covariance}`` expanded on access from ``U (n, r)`` and ``d (n,)`` per output (float64)."""

    def __init__(self, factors: Mapping[str, tuple[torch.Tensor, torch.Tensor]]):
        self.factors = {k: (torch.as_tensor(U, dtype=torch.float64), torch.as_tensor(d, dtype=torch.float64))
                        for k, (U, d) in factors.items()}

    def __getitem__(self, key: str) -> torch.Tensor:
        U, d = self.factors[key]
        return U @ U.T + torch.diag(d)

    def __iter__(self) -> Iterator[str]:
        return iter(self.factors)

    def __len__(self) -> int:
        return len(self.factors)

    def diag(self, key: str) -> torch.Tensor:
        U, d = self.factors[key]
        return (U**2).sum(1) + d

    def project(self, key: str, J: torch.Tensor) -> torch.Tensor:
        """``J Sigma J^T`` for a Jacobian ``J (m, n)`` without forming the ``(n, n)`` matrix."""
        U, d = self.factors[key]
        JU = J.to(torch.float64) @ U
        return JU @ JU.T + (J * d) @ J.T

    def state_dict(self, prefix: str = "errcov") -> dict[str, torch.Tensor]:
        out = {}
        for k, (U, d) in self.factors.items():
            out[f"{prefix}_U_{k}"], out[f"{prefix}_d_{k}"] = U.to(torch.float32), d.to(torch.float32)
        return out

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], prefix: str = "errcov") -> "LowRankErrorCov | None":
        keys = [k.removeprefix(f"{prefix}_U_") for k in state if k.startswith(f"{prefix}_U_")]
        if not keys:
            return None
        return cls({k: (state[f"{prefix}_U_{k}"], state[f"{prefix}_d_{k}"]) for k in keys})


def fit_error_cov(residuals: Mapping[str, np.ndarray], rank: int = 16) -> LowRankErrorCov:
    """Low-rank + diagonal second moment of residuals ``{S: (N, n)}`` (D-units; muK^4 for TT/TE/EE)."""
    factors = {}
    for k, R in residuals.items():
        R = np.asarray(R, np.float64)
        _, s, vt = np.linalg.svd(R, full_matrices=False)
        r = min(rank, len(s))
        U = vt[:r].T * (s[:r] / np.sqrt(len(R)))
        d = np.maximum((R**2).mean(0) - (U**2).sum(1), 0.0)
        factors[k] = (torch.as_tensor(U), torch.as_tensor(d))
    return LowRankErrorCov(factors)
