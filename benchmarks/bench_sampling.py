"""NUTS vs emcee: effective samples per second on the same posterior.

The posterior: a 6-latent MLP decoder (6 -> 64 -> 64 -> 600, tanh, fixed random weights) with a 600-point
Gaussian likelihood (correlated covariance), data drawn at a known z. ESS is arviz's bulk ESS (minimum over
the 6 latents; emcee's walkers count as chains, as in ``az.from_emcee``); time is the sampling wall time
including warmup/burn-in. Both samplers run in the same process, one after the other.
"""

from __future__ import annotations

import time

import numpy as np
import torch

import latentinfer as li

__all__ = ["run", "make_problem"]


def make_problem(seed: int = 0) -> li.Analysis:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    d, n = 6, 600
    net = torch.nn.Sequential(torch.nn.Linear(d, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64), torch.nn.Tanh(), torch.nn.Linear(64, n))
    fm = li.ForwardModel.from_module(net.double(), latent_names=[f"z{i}" for i in range(1, d + 1)])
    ell = torch.arange(n, dtype=torch.float64)
    corr = torch.exp(-((ell[:, None] - ell[None, :]) ** 2) / (2 * 3.0**2))
    cov = 0.05**2 * (0.7 * corr + 0.3 * torch.eye(n, dtype=torch.float64))
    z_true = 0.5 * torch.randn(d, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y = fm(z_true)["y"] + torch.linalg.cholesky(cov) @ torch.randn(n, generator=g, dtype=torch.float64)
    return li.Analysis(fm, li.GaussianLikelihood(y, cov, name="mlp600"))


def _row(metric, value, unit, note=""):
    return {"benchmark": "sampling", "metric": metric, "value": float(value), "unit": unit, "note": note}


def run(quick: bool = True) -> list[dict]:
    an = make_problem()
    draws = 500 if quick else 2000
    nuts_cfg = dict(chains=2, warmup=300, draws=draws, seed=0, progress=False)
    emcee_cfg = dict(walkers=32, warmup=1000, draws=4 * draws, seed=0, progress=False)
    out = {}
    for method, cfg in (("nuts", nuts_cfg), ("emcee", emcee_cfg)):
        t0 = time.perf_counter()
        post = an.sample(method, **cfg)
        wall = time.perf_counter() - t0
        ess = min(v["ess_bulk"] for v in post.summary().values())
        out[method] = (ess, wall)
    rows = []
    for method, (ess, wall) in out.items():
        cfg = nuts_cfg if method == "nuts" else emcee_cfg
        note = ", ".join(f"{k}={v}" for k, v in cfg.items() if k not in ("progress", "seed"))
        rows += [_row(f"{method} min bulk ESS", ess, "samples", note), _row(f"{method} wall time", wall, "s", note), _row(f"{method} ESS/s", ess / wall, "1/s", note)]
    rows.append(_row("NUTS/emcee ESS/s ratio", (out["nuts"][0] / out["nuts"][1]) / (out["emcee"][0] / out["emcee"][1]), "x", "same posterior, same run"))
    return rows


if __name__ == "__main__":
    for r in run():
        print(f"{r['metric']:<28} {r['value']:>12.4g} {r['unit']:<8} {r['note']}")
