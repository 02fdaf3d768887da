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
from latentinfer.posterior import build_posterior


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


# -- run folders on disk: a bundled linear decoder and likelihood folders -------------------------------------
def write_problem_files(root, prob, ell=True):
    """A model bundle ``root/linear`` (an MLP without hidden layers: exactly linear, outputs ``yA``, ``yB``) and
    likelihood folders ``root/likA``, ``root/likB`` (type gaussian). Returns ``(model_path, {"A": path, "B": path})``."""
    from pathlib import Path

    from latentinfer.bundle import save_bundle

    root = Path(root)
    M, c, sig, y, d = prob["M"], prob["c"], prob["sig"], prob["y"], prob["d"]
    h = M.shape[0] // 2
    card = {
        "architecture": {"type": "mlp", "hidden": [], "outputs": {"yA": h, "yB": M.shape[0] - h}},
        "latent_names": [f"z{i}" for i in range(d)],
        "description": "linear test decoder",
    }
    state = {"head.weight": torch.as_tensor(M, dtype=torch.float32), "head.bias": torch.as_tensor(c, dtype=torch.float32)}
    model = save_bundle(root / "linear", card, state)
    liks = {}
    for key, sl in prob["parts"].items():
        folder = root / f"lik{key}"
        folder.mkdir(parents=True, exist_ok=True)
        np.savetxt(folder / "data.txt", y[sl])
        np.savetxt(folder / "cov.txt", np.diag(sig[sl] ** 2))
        (folder / "likelihood.yaml").write_text(f"type: gaussian\ndescription: half {key} of the linear test data\ndata: data.txt\ncov: cov.txt\noutput: y{key}\n")
        liks[key] = folder
    return model, liks


def run_config(model, liks, prior_sd=10.0, d=3, **inference):
    from latentinfer.config import validate_config

    raw = {
        "model": str(model),
        "likelihoods": [{"name": str(p)} for p in liks],
        "priors": {f"z{i}": {"normal": [0.0, prior_sd]} for i in range(d)},
        "inference": {"method": "nuts", "chains": 2, "warmup": 150, "draws": 200, "seed": 0, "progress": False, **inference},
        "report": False,
    }
    return validate_config(raw, source="test config")


def write_exact_run(cfg, out, n=4000, seed=0, extra=None):
    """Build the config's analysis, draw its exact posterior (linear-Gaussian) and write a run folder."""
    import json

    from latentinfer.runner import build_analysis, write_run

    an = build_analysis(cfg)
    with torch.no_grad():
        z0 = torch.zeros(an.forward.dim, dtype=torch.float64)
        theory0 = an.forward(z0)
        cols = []
        for i in range(an.forward.dim):
            e = torch.zeros_like(z0)
            e[i] = 1.0
            cols.append({k: (v - theory0[k]) for k, v in an.forward(e).items()})
    Ms = [np.stack([col[lik.output].numpy() for col in cols], 1) for lik in an.likelihoods]
    cs = [theory0[lik.output].numpy() for lik in an.likelihoods]
    M, c = np.concatenate(Ms), np.concatenate(cs)
    data = np.concatenate([lik.data.numpy() for lik in an.likelihoods])
    cov = np.zeros((len(data), len(data)))
    i = 0
    for lik in an.likelihoods:
        cov[i : i + lik.n_data, i : i + lik.n_data] = lik.cov.numpy()
        i += lik.n_data
    sd = float(cfg["priors"]["z0"]["normal"][1])
    mean, C = exact_posterior(M, c, data, cov, sd)
    post = posterior_from_exact(an, mean, C, n=n, seed=seed)
    post.attrs["config"] = json.dumps(cfg)
    write_run(post, cfg, out, wall=0.0, extra=extra)
    return {"analysis": an, "mean": mean, "cov": C, "post": post}
