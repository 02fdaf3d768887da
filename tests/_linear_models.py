"""Linear-Gaussian analyses with exact posteriors, shared by the tension, report and export tests.

``y = M z + c`` with a Gaussian likelihood per data set and a Gaussian prior on ``z``: the posterior is Gaussian
with precision ``P = M^T C^-1 M + S0^-1`` and mean ``P^-1 (M^T C^-1 (y - c) + S0^-1 m0)``, so posteriors are built
from exact i.i.d. draws (no sampler noise beyond Monte-Carlo).
"""

from __future__ import annotations

import numpy as np
import pyro
import torch

from latentinfer import Analysis, ForwardModel, GaussianLikelihood
from latentinfer.inference.base import build_posterior


class Linear(torch.nn.Module):
    def __init__(self, M, c):
        super().__init__()
        self.register_buffer("M", torch.as_tensor(M, dtype=torch.float64))
        self.register_buffer("c", torch.as_tensor(c, dtype=torch.float64))

    def forward(self, z):
        return z @ self.M.T + self.c


def linear_forward(M, c, names=None, output="y", meta=None) -> ForwardModel:
    names = names or [f"z{i}" for i in range(M.shape[1])]
    return ForwardModel.from_module(Linear(M, c), names, output_name=output, meta=meta)


def exact_posterior(M, c, data, cov, prior_sd):
    """Mean (d,) and covariance (d, d) of z for N(0, prior_sd^2) priors."""
    Ci = np.linalg.inv(cov)
    P = M.T @ Ci @ M + np.eye(M.shape[1]) / prior_sd**2
    C = np.linalg.inv(P)
    return C @ (M.T @ Ci @ (data - c)), C


def posterior_from_exact(analysis: Analysis, mean, cov, n=4000, chains=2, seed=0, config=None, method="exact"):
    """A Posterior of exact Gaussian draws with log-likelihoods and the program attached."""
    rng = np.random.default_rng(seed)
    draws = rng.multivariate_normal(mean, cov, size=(chains, n // chains))
    samples = {name: draws[..., i] for i, name in enumerate(analysis.parameter_names)}
    stats = {"diverging": np.zeros((chains, n // chains), dtype=bool)}
    extra = {"config": config} if config is not None else None
    with pyro.validation_enabled(False):  # torch's MVN argument checks dominate the cost on large batches
        return build_posterior(analysis, samples, method=method, settings={"seed": seed}, sample_stats=stats, extra_attrs=extra)


def split_problem(d=3, n=120, prior_sd=10.0, seed=1, offset=None):
    """Design, truth and data of two independent halves (A: first n/2 rows, B: the rest).

    ``offset`` (d,), when given, is added to the truth that generates B's data (a genuine shift).
    Returns a dict with M, c, cov, data for 'A', 'B' and the joint.
    """
    rng = np.random.default_rng(seed)
    M = rng.normal(size=(n, d)) / np.sqrt(d)
    c = rng.normal(size=n)
    sig = 0.5 + rng.random(n)
    truth = rng.normal(size=d)
    h = n // 2
    zb = truth + (np.zeros(d) if offset is None else np.asarray(offset))
    y = np.concatenate([M[:h] @ truth, M[h:] @ zb]) + c + sig * rng.normal(size=n)
    parts = {"A": slice(0, h), "B": slice(h, n)}
    return {"M": M, "c": c, "sig": sig, "y": y, "parts": parts, "prior_sd": prior_sd, "d": d, "truth": truth}


def build_runs(prob, n=4000, seed=0, model_name="linear", with_joint=True):
    """Analyses and exact posteriors of A, B (and the joint run) of a :func:`split_problem`."""
    M, c, sig, y, d = prob["M"], prob["c"], prob["sig"], prob["y"], prob["d"]
    names = [f"z{i}" for i in range(d)]
    prior = {k: {"normal": [0.0, prob["prior_sd"]]} for k in names}
    out = {}
    for key, sl in prob["parts"].items():
        fm = linear_forward(M[sl], c[sl], names)
        lik = GaussianLikelihood(y[sl], np.diag(sig[sl] ** 2), name=f"data{key}")
        an = Analysis(fm, lik, prior=prior)
        mean, cov = exact_posterior(M[sl], c[sl], y[sl], np.diag(sig[sl] ** 2), prob["prior_sd"])
        cfg = {"model": model_name, "space": "latent"}
        out[key] = {"analysis": an, "mean": mean, "cov": cov, "post": posterior_from_exact(an, mean, cov, n=n, seed=seed + {"A": 11, "B": 23}[key], config=cfg)}
    if with_joint:
        h = M.shape[0] // 2

        class Two(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = Linear(M, c)

            def forward(self, z):
                y_ = self.lin(z)
                return {"yA": y_[..., :h], "yB": y_[..., h:]}

        fm = ForwardModel.from_module(Two(), names)
        liks = [
            GaussianLikelihood(y[:h], np.diag(sig[:h] ** 2), name="dataA", output="yA"),
            GaussianLikelihood(y[h:], np.diag(sig[h:] ** 2), name="dataB", output="yB"),
        ]
        an = Analysis(fm, liks, prior=prior)
        mean, cov = exact_posterior(M, c, y, np.diag(sig**2), prob["prior_sd"])
        out["joint"] = {"analysis": an, "mean": mean, "cov": cov, "post": posterior_from_exact(an, mean, cov, n=n, seed=seed + 7, config={"model": model_name, "space": "latent"})}
    return out
