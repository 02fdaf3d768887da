"""Execution backend: parallel speed-up of NUTS chains as tasks, cost of mid-chain checkpoints, Dask overhead.

Model: linear-Gaussian, 2 latents, 6 data points (cheap gradients, so these are upper bounds on overheads).
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import torch

from latentinfer import Analysis, ForwardModel, GaussianLikelihood
from latentinfer.config import INFERENCE_DEFAULTS
from latentinfer.execution import default_workers, map_tasks
from latentinfer.methods.base import chain_seeds
from latentinfer.methods.nuts import run_chain


def _analysis(d: int = 2, n: int = 6) -> Analysis:
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(d, n)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(n, d, generator=g))
    y = lin(torch.randn(d, generator=g)).detach() + torch.randn(n, generator=g)
    return Analysis(ForwardModel.from_module(lin, [f"z{i}" for i in range(d)]), GaussianLikelihood(y, torch.eye(n), name="lin"))


def _settings(warmup: int, draws: int) -> dict:
    s = {k: v[0] for k, v in INFERENCE_DEFAULTS.items()}
    s.update(warmup=warmup, draws=draws, jit=False, progress=False)
    return s


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(quick: bool = True) -> list[dict]:
    analysis = _analysis()
    warmup, draws, chains = (50, 150, 4) if quick else (300, 1000, 8)
    s = _settings(warmup, draws)
    tasks = [(analysis, c, seed, s) for c, seed in enumerate(chain_seeds(0, chains))]
    n_workers = min(chains, default_workers())
    rows = []

    t1 = _timed(lambda: map_tasks(run_chain, tasks, workers=1))
    tn = _timed(lambda: map_tasks(run_chain, tasks, workers=n_workers))
    note = f"{chains} chains x {warmup}+{draws} iterations, linear-Gaussian d=2"
    rows += [
        {"benchmark": "execution", "metric": "nuts chains, in process", "value": t1, "unit": "s", "note": note},
        {"benchmark": "execution", "metric": f"nuts chains, {n_workers} local processes", "value": tn, "unit": "s", "note": note},
        {"benchmark": "execution", "metric": "speed-up local processes / in process", "value": t1 / tn, "unit": "x", "note": f"ideal {n_workers}; machine load {os.getloadavg()[0]:.1f}"},
    ]

    one = [(analysis, 0, 7, s)]
    plain = _timed(lambda: run_chain(one[0]))
    old = os.environ.get("LATENTINFER_CHECKPOINT_SECONDS")
    os.environ["LATENTINFER_CHECKPOINT_SECONDS"] = "0"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ck = _timed(lambda: run_chain((analysis, 0, 7, s, os.path.join(tmp, "c.state.npz"))))
    finally:
        if old is None:
            os.environ.pop("LATENTINFER_CHECKPOINT_SECONDS")
        else:
            os.environ["LATENTINFER_CHECKPOINT_SECONDS"] = old
    rows += [
        {"benchmark": "execution", "metric": "one chain, no checkpoints", "value": plain, "unit": "s", "note": f"{warmup}+{draws} iterations"},
        {"benchmark": "execution", "metric": "checkpoint after every draw / none", "value": ck / plain, "unit": "x", "note": "worst case; default is every 30 s"},
    ]

    if not quick:
        from distributed import LocalCluster

        with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            td = _timed(lambda: map_tasks(run_chain, tasks, backend="dask", scheduler=cluster.scheduler_address))
        rows.append({"benchmark": "execution", "metric": f"nuts chains, Dask LocalCluster {n_workers} workers", "value": td, "unit": "s", "note": note})
        rows.append({"benchmark": "execution", "metric": "Dask / local processes", "value": td / tn, "unit": "x", "note": "includes worker imports on first task"})
    return rows


if __name__ == "__main__":  # pragma: no cover
    for r in run():
        print(r)
