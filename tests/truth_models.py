"""Toy programs with known answers for the evidence, SBI and coverage tests (not a test module).

``linear_gaussian(d, n, seed)``: ``y = A z + b + noise``, ``z ~ N(0, I_d)``, ``noise ~ N(0, C)`` with a dense,
correlated ``C``. Exact: posterior ``N(m, S)`` with ``S = (I + A^T C^-1 A)^-1``, ``m = S A^T C^-1 (y - b)``,
evidence ``ln Z = log N(y; b, C + A A^T)``.
"""

from __future__ import annotations

import numpy as np
import torch

from latentinfer import Analysis, ForwardModel, GaussianLikelihood
from latentinfer.posterior import build_posterior

F64 = torch.float64


class LinearGaussian:
    def __init__(self, d: int = 3, n: int = 12, seed: int = 0, noise: float = 0.3):
        g = torch.Generator().manual_seed(1000 + seed)
        self.d, self.n = d, n
        self.A = torch.randn(n, d, generator=g, dtype=F64)
        self.b = torch.randn(n, generator=g, dtype=F64)
        M = torch.randn(n, n, generator=g, dtype=F64)
        self.C = noise * (M @ M.T / n + 0.5 * torch.eye(n, dtype=F64))
        z0 = torch.randn(d, generator=g, dtype=F64)
        self.y = self.A @ z0 + self.b + torch.linalg.cholesky(self.C) @ torch.randn(n, generator=g, dtype=F64)
        lin = torch.nn.Linear(d, n).to(F64)
        with torch.no_grad():
            lin.weight.copy_(self.A)
            lin.bias.copy_(self.b)
        self.names = [f"z{i}" for i in range(d)]
        self.forward = ForwardModel.from_module(lin, self.names)
        self.analysis = Analysis(self.forward, GaussianLikelihood(self.y, self.C, name="lin"))
        Ci = torch.linalg.inv(self.C)
        self.post_cov = torch.linalg.inv(torch.eye(d, dtype=F64) + self.A.T @ Ci @ self.A)
        self._gain = self.post_cov @ self.A.T @ Ci  # m = gain (y - b)

    def ln_z(self, y=None) -> float:
        y = self.y if y is None else y
        S = self.A @ self.A.T + self.C
        return float(torch.distributions.MultivariateNormal(self.b, S).log_prob(y))

    def post_mean(self, y=None) -> torch.Tensor:
        """Exact posterior mean(s) for data ``y`` ``(..., n)``."""
        y = self.y if y is None else y
        return (y - self.b) @ self._gain.T

    def exact_posterior(self, chains: int = 8, draws: int = 1000, seed: int = 0):
        """A :class:`latentinfer.Posterior` of iid exact posterior draws, as ``chains`` chains."""
        g = torch.Generator().manual_seed(seed)
        L = torch.linalg.cholesky(self.post_cov)
        x = self.post_mean() + torch.randn(chains, draws, self.d, generator=g, dtype=F64) @ L.T
        samples = {n: x[..., i].numpy() for i, n in enumerate(self.names)}
        return build_posterior(self.analysis, samples, method="exact", settings={"seed": seed})


def mlp_toy(d: int = 2, n: int = 16, seed: int = 0):
    """A small non-linear (tanh MLP decoder) program with a non-Gaussian posterior; returns ``(analysis, z_true)``."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(d, 16), torch.nn.Tanh(), torch.nn.Linear(16, n)).to(F64)
    with torch.no_grad():
        net[0].weight.mul_(2.0)
    fm = ForwardModel.from_module(net, [f"z{i}" for i in range(d)])
    g = torch.Generator().manual_seed(seed)
    z0 = torch.tensor([0.8, -0.5, 0.3, 0.1][:d], dtype=F64)
    C = 0.05 * torch.eye(n, dtype=F64)
    with torch.no_grad():
        y = fm(z0)["y"] + torch.randn(n, generator=g, dtype=F64) * C.diagonal().sqrt()
    return Analysis(fm, GaussianLikelihood(y, C, name="mlp")), z0


def gaussian_samples(mean: np.ndarray, cov: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws of ``N(mean_i, cov)`` for each row of ``mean`` ``(N, p)``: shape ``(N, n, p)``."""
    L = np.linalg.cholesky(cov)
    return mean[:, None, :] + rng.standard_normal((mean.shape[0], n, mean.shape[1])) @ L.T


def write_toy_project(folder, lg: LinearGaussian, name: str = "lin") -> dict:
    """Write ``lg`` as a model bundle (``mlp`` with no hidden layer = linear) and a ``gaussian`` likelihood
    folder under ``folder``; return a run config (dict, unvalidated) that uses them by path."""
    from pathlib import Path

    from latentinfer import save_bundle

    folder = Path(folder)
    card = {
        "architecture": {"type": "mlp", "hidden": [], "outputs": {"y": lg.n}, "activation": "tanh"},
        "latent_names": lg.names,
        "description": "linear-Gaussian toy",
    }
    save_bundle(folder / f"{name}-model", card, {"head.weight": lg.A, "head.bias": lg.b})
    lik = folder / f"{name}-data"
    lik.mkdir(parents=True, exist_ok=True)
    np.savetxt(lik / "data.txt", lg.y.numpy())
    np.savetxt(lik / "cov.txt", lg.C.numpy())
    (lik / "likelihood.yaml").write_text("type: gaussian\ndescription: toy\ndata: data.txt\ncov: cov.txt\noutput: y\n")
    return {"model": str(folder / f"{name}-model"), "likelihoods": [str(lik)]}
