"""A coverage study: run one inference method on N prior-predictive data sets and judge its calibration.

Each of the N runs is an independent task (``latentinfer.execution.map_tasks``) seeded by its index and
checkpointed to ``out/checkpoints``, so an interrupted study continues where it stopped. NPE is trained once
(``out/npe``, reused on restart) and then amortized over the N data sets.

Densities for the HPD coverage: NPE uses its own (normalised) density, as Hermans et al. (2022); NUTS and VI
use the program's unnormalised log posterior ``log p(theta) + log p(data | theta)`` (the target the samples
are meant to follow), evaluated at the draws and at the truth.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, LatentInferError
from ..execution import map_tasks
from ..io import versions, write_json
from .diagnostics import (
    check_hpd_coverage,
    check_sbc,
    check_tarp,
    run_hpd_coverage,
    run_sbc,
    run_tarp,
)

__all__ = ["run_coverage", "COVERAGE_METHODS", "MIN_RUNS", "RECOMMENDED_RUNS"]

COVERAGE_METHODS = ("npe", "vi", "nuts")
MIN_RUNS = 20
#: What a real coverage claim needs (fewer runs give a study with little power; recorded as a warning).
RECOMMENDED_RUNS = {"npe": 500, "vi": 500, "nuts": 100}


def _thin(samples: np.ndarray, L: int) -> np.ndarray:
    """At most ``L`` draws, evenly spaced (thinning reduces MCMC autocorrelation in the SBC ranks)."""
    if samples.shape[0] <= L:
        return samples
    idx = np.linspace(0, samples.shape[0] - 1, L).round().astype(int)
    return samples[idx]


def _log_target(analysis, samples: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, float]:
    names = analysis.parameter_names
    with torch.no_grad():
        vals = {n: torch.as_tensor(samples[:, i], dtype=analysis.dtype) for i, n in enumerate(names)}
        ls = analysis.log_joint(vals).expand(samples.shape[0]).numpy()
        lt = float(analysis.log_joint({n: torch.as_tensor(theta[i], dtype=analysis.dtype) for i, n in enumerate(names)}))
    return ls, lt


def _task_mcmc_vi(task) -> dict[str, Any]:
    """One run of NUTS or VI on simulated data; top level so worker processes can unpickle it."""
    analysis, method, settings, data, theta, index, L = task
    t0 = time.perf_counter()
    a = analysis.with_data(data)
    post = a.sample(method, **{**settings, "seed": int(index)}) if method == "nuts" else a.fit_vi(**{**settings, "seed": int(index)})
    samples = _thin(post.samples(), L)
    ls, lt = _log_target(a, samples, theta)
    return {"samples": samples, "theta": np.asarray(theta), "logq_samples": ls, "logq_theta": np.asarray(lt), "seconds": time.perf_counter() - t0}


def _task_npe(task) -> dict[str, Any]:
    amortized, data, theta, index, L = task
    t0 = time.perf_counter()
    a = amortized.analysis
    u = amortized.sample_unconstrained(data, num_samples=L, seed=int(index))
    tr = a.transforms()
    with torch.no_grad():
        values, _ = a.constrain(u, tr)
        samples = np.stack([values[n].numpy() for n in a.parameter_names], -1)
        u_true = a.unconstrain({n: torch.as_tensor(theta[i], dtype=a.dtype) for i, n in enumerate(a.parameter_names)}, tr)
        lq = amortized.log_prob_unconstrained(torch.cat([u, u_true[None]]), data).numpy()
    # densities in u-space: the HPD ordering of the estimator's own density, as Hermans et al. (2022)
    return {"samples": samples, "theta": np.asarray(theta), "logq_samples": lq[:-1], "logq_theta": np.asarray(lq[-1]), "seconds": time.perf_counter() - t0}


def _method_settings(cfg: dict, method: str) -> dict:
    from ..inference import get_method

    inf = dict(cfg.get("inference", {}))
    meth = get_method(method)
    s = {k: v for k, v in inf.items() if k in meth.settings and k != "seed"}
    s["progress"] = False
    if method == "nuts":
        s["parallel"] = False  # the runs are the parallel tasks
    return s


def run_coverage(
    cfg: dict,
    method: str,
    n: int,
    out: str | os.PathLike,
    *,
    workers: int | None = None,
    seed: int = 0,
    num_draws: int = 100,
    num_simulations: int = 10000,
    sbi_settings: dict | None = None,
    analysis=None,
    backend: str = "local",
    scheduler: str | None = None,
) -> dict[str, Any]:
    """Run a coverage study and write ``coverage.json`` and plots into ``out``; returns the record.

    ``cfg``: a validated run config (its ``inference`` block gives the method's settings). ``num_draws``: posterior
    draws kept per run (the SBC rank resolution). ``num_simulations``: NPE training set size;
    ``sbi_settings``: extra :func:`latentinfer.amortized.train` settings. ``analysis``: use this program instead of
    building one from ``cfg``.
    """
    if method not in COVERAGE_METHODS:
        raise ConfigError(f"coverage: --method must be one of {', '.join(COVERAGE_METHODS)}, got {method!r}")
    if n < MIN_RUNS:
        raise LatentInferError(f"coverage needs N >= {MIN_RUNS} runs (got {n}); use N >= {RECOMMENDED_RUNS[method]} for a real study")
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if method == "npe" and (sbi_settings or {}).get("rounds", 1) != 1:
        raise ConfigError("coverage: NPE must be amortized over the whole prior (rounds: 1); truncated sequential NPE is focused on one data set")
    if analysis is None:
        from ..runner import build_analysis

        analysis = build_analysis(cfg)
    from ..amortized import simulate, split_data

    sims = simulate(analysis, n, seed=seed)  # same seed -> same N (theta, data) pairs on restart
    names = analysis.parameter_names
    thetas = np.stack([sims[k].numpy() for k in names], -1)
    datas = [{k: v[i] for k, v in split_data(analysis, sims["x"]).items()} for i in range(n)]
    keys = [f"run-{i:05d}" for i in range(n)]
    settings: dict[str, Any] = {"num_draws": num_draws}
    if method == "npe":
        from ..amortized import AmortizedPosterior

        folder = out / "npe"
        if (folder / "config.json").is_file():
            amortized = AmortizedPosterior.load(folder, analysis)
        else:
            amortized = analysis.train_sbi("npe", num_simulations=num_simulations, seed=seed + 1, **(sbi_settings or {}))
            amortized.save(folder)
        settings.update(num_simulations=amortized.config["num_simulations"], training_seconds=amortized.config.get("training_seconds"))
        tasks = [(amortized, datas[i], thetas[i], i, num_draws) for i in range(n)]
        fn, w = _task_npe, 1  # amortized: cheap per run, in this process
    else:
        s = _method_settings(cfg, method)
        settings.update(s)
        tasks = [(analysis, method, s, datas[i], thetas[i], i, num_draws) for i in range(n)]
        fn, w = _task_mcmc_vi, workers
    t_runs = time.perf_counter()
    results = map_tasks(fn, tasks, keys=keys, workers=w, backend=backend, scheduler=scheduler, checkpoint_dir=out / "checkpoints")
    t_runs = time.perf_counter() - t_runs

    draws = np.stack([r["samples"] for r in results])
    th = np.stack([r["theta"] for r in results])
    sbc = run_sbc(th, draws, names=names, seed=seed)
    tarp = run_tarp(th, draws, seed=seed)
    hpd = run_hpd_coverage(np.array([float(r["logq_theta"]) for r in results]), np.stack([r["logq_samples"] for r in results]))
    verdicts = {"sbc": check_sbc(sbc), "tarp": check_tarp(tarp), "hpd": check_hpd_coverage(hpd)}
    # -- issue 22: joint statistics (density rank, local TARP) and one verdict; see coverage/verdict.py --
    from .diagnostics import check_density_rank, check_tarp_local, run_density_rank, run_tarp_local
    from .verdict import coverage_verdict

    verdicts["density_rank"] = check_density_rank(run_density_rank(np.array([float(r["logq_theta"]) for r in results]), np.stack([r["logq_samples"] for r in results]), seed=seed))
    verdicts["tarp_local"] = check_tarp_local(run_tarp_local(th, draws, seed=seed))
    # -- end issue 22 --
    from .plots import plot_all

    plots = plot_all(out, sbc, tarp, hpd, title=f"{method}, N = {n}")
    run_seconds = [float(r["seconds"]) for r in results]
    record = {
        "method": method,
        "n": n,
        "seed": seed,
        "pass": all(v["pass"] for v in verdicts.values()),
        "diagnostics": verdicts,
        "verdict": coverage_verdict(verdicts, method),  # issue 22: overall reading, per-diagnostic readings, next step
        "curves": {
            "tarp": {"alpha": tarp.alpha.tolist(), "ecp": tarp.ecp.tolist(), "atc": tarp.atc},
            "hpd": {"level": hpd.levels.tolist(), "coverage": hpd.coverage.tolist()},
            "sbc_ranks": sbc.ranks.tolist(),
        },
        "settings": settings,
        "parameters": names,
        "warning": None if n >= RECOMMENDED_RUNS[method] else f"N = {n} < {RECOMMENDED_RUNS[method]}: low power, not a coverage claim",
        "timing": {
            "wall_seconds": time.perf_counter() - t0,
            "runs_seconds": t_runs,
            "mean_seconds_per_run": float(np.mean(run_seconds)),
            "seconds_per_100_runs": 100.0 * t_runs / n,
        },
        "plots": plots,
        "config": cfg,
        "versions": versions(),
    }
    write_json(out / "coverage.json", record)
    return record


def load_record(out: str | os.PathLike) -> dict:
    return json.loads((Path(out) / "coverage.json").read_text())
