"""Shared fixtures: linear-Gaussian problems with closed-form posteriors and evidences, toy bundles on disk."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import latentinfer as li


@dataclass
class LinearGaussian:
    """y = A z + b + noise, z ~ N(0, I), noise ~ N(0, C): everything is closed form."""

    A: torch.Tensor
    b: torch.Tensor
    C: torch.Tensor
    y: torch.Tensor
    z_true: torch.Tensor

    @property
    def dim(self) -> int:
        return self.A.shape[1]

    def forward(self) -> li.ForwardModel:
        lin = torch.nn.Linear(self.dim, self.A.shape[0]).double()
        with torch.no_grad():
            lin.weight.copy_(self.A)
            lin.bias.copy_(self.b)
        return li.ForwardModel.from_module(lin, latent_names=[f"z{i}" for i in range(self.dim)])

    def likelihood(self, name: str = "data") -> li.GaussianLikelihood:
        return li.GaussianLikelihood(self.y, self.C, name=name)

    def analysis(self) -> li.Analysis:
        return li.Analysis(self.forward(), self.likelihood())

    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """Exact posterior mean and covariance."""
        Ci = torch.linalg.inv(self.C)
        S = torch.linalg.inv(self.A.T @ Ci @ self.A + torch.eye(self.dim, dtype=torch.float64))
        mu = S @ self.A.T @ Ci @ (self.y - self.b)
        return mu.numpy(), S.numpy()

    def log_evidence(self) -> float:
        """ln Z = ln N(y; b, C + A A^T)."""
        cov = self.C + self.A @ self.A.T
        return float(torch.distributions.MultivariateNormal(self.b, cov).log_prob(self.y))


def nuisance_likelihood(lg: "LinearGaussian", name: str = "d") -> li.GaussianLikelihood:
    """A Gaussian likelihood of ``lg``'s data with its own ``predict``: ``a * y + b``, where (a, b) is a correlated
    nuisance block (mvnormal prior). The hand-written gradient does not know such a likelihood; the log-density
    tests use it for every prior kind and for the autograd fallback."""
    block = li.Nuisance(("a", "b"), {"mvnormal": [[1.0, 0.5], [[0.04, 0.01], [0.01, 0.09]]]})

    class WithNuisance(li.GaussianLikelihood):
        def predict(self, theory, nuisance):
            return theory["y"] * nuisance["a"].unsqueeze(-1) + nuisance["b"].unsqueeze(-1)

    return WithNuisance(lg.y, lg.C, name=name, nuisance=[block])


def make_linear_gaussian(dim: int = 4, n: int = 30, seed: int = 0, noise: float = 0.5) -> LinearGaussian:
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, dim, generator=g, dtype=torch.float64) / math.sqrt(dim)
    # correlated posterior: mix columns
    A = A @ (torch.eye(dim, dtype=torch.float64) + 0.6 * torch.randn(dim, dim, generator=g, dtype=torch.float64))
    b = torch.randn(n, generator=g, dtype=torch.float64)
    M = torch.randn(n, n, generator=g, dtype=torch.float64)
    C = noise**2 * (M @ M.T / n + 0.5 * torch.eye(n, dtype=torch.float64))
    z = torch.randn(dim, generator=g, dtype=torch.float64)
    y = A @ z + b + torch.linalg.cholesky(C) @ torch.randn(n, generator=g, dtype=torch.float64)
    return LinearGaussian(A, b, C, y, z)


@pytest.fixture(scope="session")
def linear_gaussian() -> LinearGaussian:
    return make_linear_gaussian()


def write_toy_bundle(folder: Path, d: int = 3, n_out: int = 40, hidden=(32,), seed: int = 0) -> Path:
    """A small MLP decoder bundle (card.json + safetensors) on disk."""
    from latentinfer.bundle import MLP, save_bundle

    torch.manual_seed(seed)
    module = MLP(d, list(hidden), {"y": n_out}, "tanh")
    card = {
        "description": "toy MLP decoder for tests",
        "architecture": {"type": "mlp", "hidden": list(hidden), "outputs": {"y": n_out}, "activation": "tanh"},
        "latent_names": [f"z{i}" for i in range(d)],
    }
    return save_bundle(folder, card, module.state_dict())


def write_gaussian_likelihood(folder: Path, data: np.ndarray, cov: np.ndarray, output: str = "y") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.savetxt(folder / "data.txt", np.atleast_1d(data))
    np.savetxt(folder / "cov.txt", np.atleast_2d(cov))
    spec = {"type": "gaussian", "description": "toy Gaussian data", "data": "data.txt", "cov": "cov.txt", "output": output}
    (folder / "likelihood.yaml").write_text(yaml.safe_dump(spec))
    return folder


@pytest.fixture
def toy_run(tmp_path):
    """A toy bundle, a Gaussian likelihood folder made from it at a known z, and a run config (dict)."""
    bundle = write_toy_bundle(tmp_path / "toy-model")
    model = li.load_model(bundle)
    z_true = torch.tensor([0.5, -0.3, 0.8], dtype=torch.float32)
    with torch.no_grad():
        y = model(z_true)["y"].double().numpy()
    cov = 0.02**2 * np.eye(y.size)
    rng = np.random.default_rng(1)
    data = y + rng.multivariate_normal(np.zeros(y.size), cov)
    lik = write_gaussian_likelihood(tmp_path / "toy-data", data, cov)
    cfg = {
        "model": str(bundle),
        "likelihoods": [str(lik)],
        "inference": {"method": "nuts", "chains": 2, "warmup": 150, "draws": 150, "seed": 3, "progress": False},
        "report": False,
    }
    return {"bundle": bundle, "likelihood": lik, "config": cfg, "z_true": z_true.numpy(), "dir": tmp_path}


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def check_exact(post, mu, S, mcse) -> None:
    """The exact-posterior check of every sampler: means within 4 Monte-Carlo standard errors ``mcse``, variances within
    10 %, correlations within 0.1 of the closed-form ``mu``, ``S``."""
    est_mu, est_S = post.mean(), post.cov()
    z = (est_mu - mu) / mcse
    assert np.all(np.abs(z) < 4), f"means off by {z} MCSE"
    var_ratio = np.diag(est_S) / np.diag(S)
    assert np.all(np.abs(var_ratio - 1) < 0.10), f"variance ratios {var_ratio}"
    corr = lambda M: M / np.sqrt(np.outer(np.diag(M), np.diag(M)))  # noqa: E731
    assert np.abs(corr(est_S) - corr(S)).max() < 0.1


def mlp_problem() -> tuple[li.Analysis, torch.Tensor]:
    """A 3-latent MLP decoder (3 -> 32 -> 60, tanh) with data drawn at a known z (sigma 0.05): ``(analysis, z_true)``."""
    torch.manual_seed(0)
    d, n = 3, 60
    net = torch.nn.Sequential(torch.nn.Linear(d, 32), torch.nn.Tanh(), torch.nn.Linear(32, n)).double()
    fm = li.ForwardModel.from_module(net, latent_names=["a", "b", "c"])
    z_true = torch.tensor([0.7, -0.4, 1.1], dtype=torch.float64)
    sigma = 0.05
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        y = fm(z_true)["y"] + sigma * torch.randn(n, generator=g, dtype=torch.float64)
    return li.Analysis(fm, li.GaussianLikelihood(y, sigma**2 * torch.eye(n, dtype=torch.float64), name="obs")), z_true


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small networks train faster single-threaded on a shared machine; restored afterwards. Use with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
