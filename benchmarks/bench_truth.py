"""Benchmarks of the truthfulness station: NPE training and latency, harmonic evidence, coverage wall time.

All on a linear-Gaussian toy program (``d`` latents, ``n`` data points, dense correlated noise), so the numbers
measure the machinery (sbi, harmonic, Pyro) rather than a decoder. ``run(quick=True)`` uses fewer simulations
and extrapolates coverage wall time per 100 runs from a few runs (said in each row's note).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

__all__ = ["run"]


def _toy(d: int, n: int, seed: int = 0):
    from latentinfer import Analysis, ForwardModel, GaussianLikelihood

    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, d, generator=g, dtype=torch.float64)
    M = torch.randn(n, n, generator=g, dtype=torch.float64)
    C = 0.3 * (M @ M.T / n + 0.5 * torch.eye(n, dtype=torch.float64))
    lin = torch.nn.Linear(d, n).double()
    with torch.no_grad():
        lin.weight.copy_(A)
        lin.bias.zero_()
    y = A @ torch.randn(d, generator=g, dtype=torch.float64) + torch.linalg.cholesky(C) @ torch.randn(n, generator=g, dtype=torch.float64)
    return Analysis(ForwardModel.from_module(lin, [f"z{i}" for i in range(d)]), GaussianLikelihood(y, C, name="toy")), A, C, y


_CONTEXT = {"note": ""}


def _row(metric, value, unit, note):
    return {"benchmark": "truth", "metric": metric, "value": float(value), "unit": unit, "note": note + _CONTEXT["note"]}


def run(quick: bool = True) -> list[dict]:
    """Rows of timings; torch runs single-threaded here (like each coverage worker), restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(quick)
    finally:
        torch.set_num_threads(threads)


def _run(quick: bool) -> list[dict]:
    from latentinfer.amortized import simulate, split_data
    from latentinfer.coverage.study import _task_mcmc_vi, _task_npe
    from latentinfer.posterior import build_posterior

    rows = []
    d, n = 4, 50
    analysis, A, C, y = _toy(d, n)
    threads = torch.get_num_threads()
    import os

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cores = os.cpu_count()
    _CONTEXT["note"] = f"; machine: {cores} cores, load average {load:.1f} at start"

    # NPE training and per-observation latency (10,000 samples)
    nsim = 2000 if quick else 10000
    t0 = time.perf_counter()
    amo = analysis.train_sbi("npe", num_simulations=nsim, seed=0, max_num_epochs=100 if quick else 500)
    rows.append(_row("npe_training_time", time.perf_counter() - t0, "s", f"{nsim} simulations, d={d}, n_data={n}, maf, {threads} torch threads"))
    obs = simulate(analysis, 5, seed=7)["x"]
    amo.posterior(obs[0], num_samples=100, seed=0)  # warm-up
    lat = []
    for i in range(5):
        t0 = time.perf_counter()
        amo.posterior(obs[i], num_samples=10000, seed=i)
        lat.append(time.perf_counter() - t0)
    rows.append(_row("npe_posterior_latency", statistics.median(lat), "s", "median of 5 observations, 10,000 samples incl. log-likelihoods (latentinfer.Posterior)"))

    # harmonic evidence on exact posterior draws (8 chains x 1000)
    Ci = torch.linalg.inv(C)
    S = torch.linalg.inv(torch.eye(d, dtype=torch.float64) + A.T @ Ci @ A)
    m = S @ A.T @ Ci @ y
    x = m + torch.randn(8, 1000, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64) @ torch.linalg.cholesky(S).T
    post = build_posterior(analysis, {f"z{i}": x[..., i].numpy() for i in range(d)}, method="exact", settings={})
    t0 = time.perf_counter()
    ev = analysis.evidence(post)
    exact = float(torch.distributions.MultivariateNormal(torch.zeros(n, dtype=torch.float64), A @ A.T + C).log_prob(y))
    rows.append(_row("harmonic_evidence_time", time.perf_counter() - t0, "s", f"8x1000 samples, d={d}, RQSpline flow; ln Z error vs exact {ev.ln_z - exact:+.3f} (+-{ev.ln_z_err:.3f})"))

    # coverage: wall time per 100 runs (one process; local workers divide it by about their number)
    k = 3 if quick else 20
    sims = simulate(analysis, k, seed=11)
    names = analysis.parameter_names
    thetas = np.stack([sims[nm].numpy() for nm in names], -1)
    datas = [{kk: v[i] for kk, v in split_data(analysis, sims["x"]).items()} for i in range(k)]
    specs = {
        "npe": None,
        "vi": {"guide": "multivariate_normal", "steps": 1000, "num_samples": 1000, "progress": False},
        "nuts": {"chains": 1, "warmup": 300, "draws": 500, "progress": False, "parallel": False},
    }
    for method, settings in specs.items():
        t0 = time.perf_counter()
        for i in range(k):
            if method == "npe":
                _task_npe((amo, datas[i], thetas[i], i, 100))
            else:
                _task_mcmc_vi((analysis, method, settings, datas[i], thetas[i], i, 100))
        per100 = (time.perf_counter() - t0) / k * 100
        extra = "" if method != "npe" else " (NPE training excluded: it is paid once)"
        rows.append(_row(f"coverage_{method}_per_100_runs", per100, "s", f"extrapolated from {k} runs in one process{extra}; settings {settings}"))
    return rows


if __name__ == "__main__":  # pragma: no cover
    import json
    import sys

    for r in run(quick="--full" not in sys.argv):
        print(json.dumps(r))
