"""Benchmark: tension metrics and the HTML report on Gaussian posteriors of Planck-like size (6 parameters)."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np


def _posteriors(d: int, n: int, shift: float, seed: int = 0):
    from latentinfer.posterior import Posterior

    rng = np.random.default_rng(seed)
    A = rng.normal(size=(d, d))
    C = A @ A.T / d + 0.2 * np.eye(d)
    names = [f"z{i}" for i in range(d)]
    cfg = json.dumps({"model": "bench", "space": "latent"})
    xa = rng.multivariate_normal(np.zeros(d), C, size=(4, n // 4))
    xb = rng.multivariate_normal(np.full(d, shift), C, size=(4, n // 4))
    lp = {"lp": -0.5 * (xa**2).sum(-1)}
    pa = Posterior.from_arrays({k: xa[..., i] for i, k in enumerate(names)}, sample_stats=lp, attrs={"config": cfg, "method": "nuts"})
    pb = Posterior.from_arrays({k: xb[..., i] for i, k in enumerate(names)}, sample_stats=lp, attrs={"config": cfg, "method": "nuts"})
    return pa, pb


def run(quick: bool = True) -> list[dict]:
    from latentinfer.report import write_report
    from latentinfer.runner import write_run
    from latentinfer.tension import tension

    d, n = 6, 4000 if quick else 16000
    pa, pb = _posteriors(d, n, shift=1.0)
    rows = []
    for metric in ("q_dm", "parameter_shift"):
        t0 = time.perf_counter()
        res = tension(pa, pb, metrics=[metric], attribution=False)
        dt = time.perf_counter() - t0
        rows.append({"benchmark": "tension", "metric": f"{metric} time (d={d}, {n} draws each)", "value": dt, "unit": "s", "note": f"n_sigma {res[metric].n_sigma:.2f}"})
    with tempfile.TemporaryDirectory() as tmp:
        write_run(pa, {"model": "bench", "likelihoods": [{"name": "none"}], "name": "bench"}, Path(tmp) / "run", wall=0.0)
        t0 = time.perf_counter()
        out = write_report([Path(tmp) / "run"], Path(tmp) / "report.html")
        dt = time.perf_counter() - t0
        size = out.stat().st_size / 1e6
    rows.append({"benchmark": "report", "metric": f"report.html time ({d} parameters, {n} draws, no PPC)", "value": dt, "unit": "s", "note": f"{size:.1f} MB self-contained"})
    return rows


if __name__ == "__main__":  # pragma: no cover
    for r in run():
        print(r)
