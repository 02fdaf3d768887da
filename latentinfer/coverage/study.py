"""A coverage study: run one inference method on N prior-predictive data sets and judge its calibration.

Each of the N runs is an independent task (``latentinfer.execution.map_tasks``) seeded by its index and
checkpointed to ``out/checkpoints``, so an interrupted study continues where it stopped. NPE is trained once
(``out/npe``, reused on restart) and then amortized over the N data sets.

Every registered inference method can be studied (``coverage_methods``): NPE is amortized, ChEES runs data sets
as a batch dimension, and any other method (NUTS, VI, emcee, NLE, NRE, a plug-in) runs once per data set
through the registry. Densities for the HPD coverage: NPE uses its own (normalised) density, as Hermans et al.
(2022); the others use the program's unnormalised log posterior ``log p(theta) + log p(data | theta)`` (the target the samples
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
from ..io import read_file, versions, write_json
from .diagnostics import (
    check_hpd_coverage,
    check_sbc,
    check_tarp,
    run_hpd_coverage,
    run_sbc,
    run_tarp,
)
from ..amortized import AmortizedPosterior, check_can_simulate, check_tractable, simulate, split_data, train
from ..methods import available_methods, get_method
from ..methods.chees import sample_groups
from ..methods.vi import fit_groups
from ..program import from_config

__all__ = ["run_coverage", "coverage_methods", "MIN_RUNS", "RECOMMENDED_RUNS"]

MIN_RUNS = 20
#: What a real coverage claim needs (fewer runs give a study with little power; recorded as a warning); 500 for
#: a method not listed.
RECOMMENDED_RUNS = {"npe": 500, "vi": 500, "nuts": 100, "chees": 500, "emcee": 500}


def coverage_methods() -> list[str]:
    """Every registered inference method can be studied (sorted): NPE amortized (trained once), ChEES and VI with
    data sets as a batch dimension, every other method run once per data set through the registry."""

    return sorted(available_methods())


def __getattr__(name: str):
    if name == "COVERAGE_METHODS":  # old constant: now whatever the registry holds
        return tuple(coverage_methods())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


def _task_method(task) -> dict[str, Any]:
    """One run of a registered method on simulated data; top level so worker processes can unpickle it."""

    analysis, method, settings, data, theta, index, L = task
    t0 = time.perf_counter()
    a = analysis.with_data(data)
    post = get_method(method).run(a, **{**settings, "seed": int(index)})
    # in the program's parameter order, which _log_target and theta use (a posterior's own variable order may differ)
    samples = _thin(np.stack([post.samples(n) for n in a.parameter_names], -1), L)
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


#: Proposals per kept draw when a coverage study importance-weights the NPE (issue 22): 2,000 for 100 draws.
IMPORTANCE_PROPOSALS_PER_DRAW = 20


def _task_npe_importance(task) -> dict[str, Any]:
    """One data set through importance-weighted NPE: NPE proposals weighted by the program's own density (PSIS),
    ``L`` draws resampled; HPD ordering by the program's log posterior, as for NUTS and VI (the target)."""
    amortized, data, theta, index, L = task
    t0 = time.perf_counter()
    post = amortized.importance_sample(data, num_proposals=IMPORTANCE_PROPOSALS_PER_DRAW * L, num_samples=L, seed=int(index), min_ess=L, warn=False)
    a = amortized.analysis.with_data(data)
    samples = np.stack([post.samples(n) for n in a.parameter_names], -1)  # the program's order, as theta
    ls, lt = _log_target(a, samples, theta)
    return {"samples": samples, "theta": np.asarray(theta), "logq_samples": ls, "logq_theta": np.asarray(lt), "seconds": time.perf_counter() - t0,
            "khat": float(post.attrs["importance_khat"]), "ess": float(post.attrs["importance_ess"])}


#: Chains per data set and data sets per batched task of a ChEES coverage study.
CHEES_CHAINS = 4
CHEES_BATCH = 100


def _chees_settings(cfg: dict) -> dict:
    inf = dict(cfg.get("inference", {}))
    own = inf.get("method") == "chees"
    return {
        "chains": CHEES_CHAINS,
        "batch": CHEES_BATCH,
        "warmup": int(inf["warmup"]) if own and "warmup" in inf else 500,
        "target_accept": float(inf["target_accept"]) if own and "target_accept" in inf else 0.8,
        "precision": str(inf["precision"]) if own and "precision" in inf else "float64",
        "gradient": str(inf["gradient"]) if own and "gradient" in inf else "handwritten",
    }


def _task_chees_batch(task) -> list[dict[str, Any]]:
    """One batch of data sets through one batched ChEES run; top level so workers can unpickle it."""

    analysis, data, thetas, first, s, L = task
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, os.cpu_count() or 1))  # hundreds of chains per call: worth two threads
    try:
        # draws per chain: enough that the pooled, thinned draws of a data set number L
        draws = max(2 * L // s["chains"], 25)
        res = sample_groups(analysis, data, chains=s["chains"], warmup=s["warmup"], draws=draws, seed=int(first),
                            target_accept=s["target_accept"], precision=s["precision"], gradient=s["gradient"])
        lt = res["log_target_at"](thetas[:, None, :])[:, 0]
    finally:
        torch.set_num_threads(threads)
    G, K, D, n = res["constrained"].shape
    # interleave the chains' draws so that thinning keeps every chain
    samples = res["constrained"].transpose(0, 2, 1, 3).reshape(G, K * D, n)
    logq = res["log_target"].transpose(0, 2, 1).reshape(G, K * D)
    idx = np.linspace(0, K * D - 1, min(L, K * D)).round().astype(int)
    return {"samples": samples[:, idx], "theta": np.asarray(thetas), "logq_samples": logq[:, idx], "logq_theta": np.asarray(lt),
            "seconds": np.full(G, (time.perf_counter() - t0) / G), "warmup_iterations": int(res["warmup_iterations"]),
            "adapted": bool(res["adapted"]), "adapted_groups": res["adapted_groups"]}


#: Data sets per batched VI task (issue 22): each a Gaussian fitted to its own ELBO, all through one log-density call.
VI_BATCH = 100


def _batched_vi_settings(cfg: dict) -> dict | None:
    """The settings of a VI study that runs data sets as a batch dimension (the Gaussian guides on the batched
    engine: the config's guide, steps, lr and particles, else VI's defaults), or None where the config asks for the
    flow guide or the Pyro engine (those run one data set per task)."""
    vi, own = get_method("vi"), _method_settings(cfg, "vi")
    if own.get("guide", vi.default("guide")) == "flow" or own.get("engine", "auto") == "pyro":
        return None
    return {**{k: own.get(k, vi.default(k)) for k in ("guide", "steps", "lr", "particles", "gradient")}, "batch": VI_BATCH}


def _task_vi_batch(task) -> dict[str, Any]:
    """One batch of data sets through one batched VI fit (:func:`latentinfer.methods.vi.fit_groups`)."""
    analysis, data, thetas, first, s, L = task
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    try:
        res = fit_groups(analysis, data, guide=s["guide"], steps=s["steps"], lr=s["lr"], particles=s["particles"],
                         num_samples=L, seed=int(first), gradient=s.get("gradient", "handwritten"))
        lt = res["log_target_at"](thetas[:, None, :])[:, 0]
    finally:
        torch.set_num_threads(threads)
    G = len(thetas)
    return {"samples": res["constrained"], "theta": np.asarray(thetas), "logq_samples": res["log_target"],
            "logq_theta": np.asarray(lt), "seconds": np.full(G, (time.perf_counter() - t0) / G),
            "laplace_ok": res["laplace_ok"]}


def _unbatch(batches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-run records from the batched tasks' stacked arrays."""
    out = []
    for b in batches:
        for g in range(len(b["theta"])):
            out.append({k: b[k][g] for k in ("samples", "theta", "logq_samples", "logq_theta", "seconds")})
    return out


def _method_settings(cfg: dict, method: str) -> dict:

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
    importance: bool = False,
) -> dict[str, Any]:
    """Run a coverage study and write ``coverage.json`` and plots into ``out``; returns the record.

    ``cfg``: a validated run config (its ``inference`` block gives the method's settings). ``num_draws``: posterior
    draws kept per run (the SBC rank resolution). ``num_simulations``: NPE training set size;
    ``sbi_settings``: extra :func:`latentinfer.amortized.train` settings. ``analysis``: use this program instead of
    building one from ``cfg``. ``importance`` (NPE only): each data set's NPE draws are importance-weighted by the
    program's own density (``IMPORTANCE_PROPOSALS_PER_DRAW * num_draws`` proposals, PSIS, resampled), as
    ``inference: {method: npe, importance: true}`` runs; k-hat and ESS per run are summarised in ``settings``.
    """
    if method not in coverage_methods():
        raise ConfigError(f"coverage: --method must be one of {', '.join(coverage_methods())}, got {method!r}")
    recommended = RECOMMENDED_RUNS.get(method, 500)
    if n < MIN_RUNS:
        raise LatentInferError(f"coverage needs N >= {MIN_RUNS} runs (got {n}); use N >= {recommended} for a real study")
    if importance and method != "npe":
        raise ConfigError(f"coverage: importance weighting is for NPE proposals (--method npe), got --method {method}")
    t0 = time.perf_counter()
    out = Path(out)
    if method == "npe" and (sbi_settings or {}).get("rounds", 1) != 1:
        raise ConfigError("coverage: NPE must be amortized over the whole prior (rounds: 1); truncated sequential NPE is focused on one data set")
    if analysis is None:
        analysis = from_config(cfg)
    check_can_simulate(analysis)  # before any folder is made: one line, exit code 2
    if importance:
        check_tractable(analysis)  # weights need every likelihood's log-density: checked before any simulation
    out.mkdir(parents=True, exist_ok=True)

    sims = simulate(analysis, n, seed=seed)  # same seed -> same N (theta, data) pairs on restart
    names = analysis.parameter_names
    thetas = np.stack([sims[k].numpy() for k in names], -1)
    datas = [{k: v[i] for k, v in split_data(analysis, sims["x"]).items()} for i in range(n)]
    keys = [f"run-{i:05d}" for i in range(n)]
    settings: dict[str, Any] = {"num_draws": num_draws}
    if method == "npe":

        folder = out / "npe"
        if (folder / "config.json").is_file():
            amortized = AmortizedPosterior.load(folder, analysis)
        else:
            npe = get_method("npe")  # NPE's own defaults (ensemble, embedding) unless the study says otherwise
            sbi = {**{k: npe.default(k) for k in ("ensemble", "embedding")}, **(sbi_settings or {})}
            amortized = train(analysis, "npe", num_simulations=num_simulations, seed=seed + 1, **sbi)
            amortized.save(folder)
        settings.update(num_simulations=amortized.config["num_simulations"], training_seconds=amortized.config.get("training_seconds"))
        settings.update({k: amortized.config.get(k) for k in ("embedding", "ensemble", "epochs")})
        tasks = [(amortized, datas[i], thetas[i], i, num_draws) for i in range(n)]
        fn, w = _task_npe, 1  # amortized: cheap per run, in this process
        if importance:
            settings.update(importance=True, num_proposals=IMPORTANCE_PROPOSALS_PER_DRAW * num_draws)
            fn = _task_npe_importance
    elif method == "chees" or (method == "vi" and _batched_vi_settings(cfg) is not None):
        # data sets as a batch dimension: chees runs a group of CHEES_CHAINS chains in lockstep per data set, VI fits
        # each data set its own Gaussian and ELBO; s["batch"] data sets per task, one log-density call for all
        if method == "chees":
            s, fn, prefix = _chees_settings(cfg), _task_chees_batch, "chees"
        else:
            s, fn, prefix = _batched_vi_settings(cfg), _task_vi_batch, "vi"
            settings.update(engine="batched")
        settings.update(s)
        xs = split_data(analysis, sims["x"])
        b = s["batch"]
        starts = list(range(0, n, b))
        tasks = [(analysis, {k: v[a : a + b] for k, v in xs.items()}, thetas[a : a + b], a, s, num_draws) for a in starts]
        keys = [f"{prefix}-{a:05d}-{min(a + b, n):05d}" for a in starts]
        w = 1
    else:
        s = _method_settings(cfg, method)
        settings.update(s)
        tasks = [(analysis, method, s, datas[i], thetas[i], i, num_draws) for i in range(n)]
        fn, w = _task_method, workers
    t_runs = time.perf_counter()
    results = map_tasks(fn, tasks, keys=keys, workers=w, backend=backend, scheduler=scheduler, checkpoint_dir=out / "checkpoints")
    t_runs = time.perf_counter() - t_runs
    if method == "vi" and settings.get("engine") == "batched":
        settings["laplace_ok_fraction"] = float(np.mean(np.concatenate([np.asarray(b["laplace_ok"]).reshape(-1) for b in results])))
        results = _unbatch(results)
    if method == "chees":
        settings["warmup_iterations"] = [int(b["warmup_iterations"]) for b in results]
        settings["adapted_fraction"] = float(np.mean(np.concatenate([np.asarray(b["adapted_groups"]).reshape(-1) for b in results])))
        results = _unbatch(results)

    if importance:
        khat, ess = np.array([r["khat"] for r in results]), np.array([r["ess"] for r in results])
        settings.update(khat_median=float(np.median(khat)), khat_max=float(khat.max()), fraction_khat_below_0_7=float(np.mean(khat < 0.7)),
                        ess_median=float(np.median(ess)), ess_min=float(ess.min()))
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
        "fingerprint": study_fingerprint(_as_used(cfg, method, settings, sbi_settings), method),
        "parameters": names,
        "warning": None if n >= recommended else f"N = {n} < {recommended}: low power, not a coverage claim",
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


#: Settings that change how many draws or how fast, not what distribution a method targets or learns.
_NOT_CALIBRATION = ("seed", "progress", "parallel", "chains", "draws", "warmup", "num_samples", "thin", "walkers", "jit",
                    "gradient")  # gradient: the same log density's gradient by another route (equal to rounding)


def study_fingerprint(cfg: dict, method: str) -> str:
    """Hash of what decides a coverage claim: model, space, likelihoods, priors, emulator error, the method and the
    settings that shape its posterior (NPE's simulations, embedding, ensemble; the samplers' target acceptance,
    metric, precision; not seeds, chain counts or draw counts). A run of the same config and method has the same one."""
    import hashlib


    meth = get_method(method)
    inf = dict(cfg.get("inference", {}))
    own = {k: inf.get(k, meth.default(k)) for k in meth.settings if k not in _NOT_CALIBRATION}
    keep = {k: cfg.get(k) for k in ("model", "space", "likelihoods", "prior", "priors", "emulator_error")}
    plain = json.dumps({**keep, "method": method, "settings": own}, sort_keys=True, default=str)
    return hashlib.sha256(plain.encode()).hexdigest()[:16]


def _as_used(cfg: dict, method: str, settings: dict, sbi_settings: dict | None) -> dict:
    """The config with the settings the study really used (``--simulations``, NPE options) in its inference block."""
    import copy

    used = copy.deepcopy(dict(cfg))
    inf = dict(used.get("inference", {}))
    inf["method"] = method
    inf.update({k: v for k, v in settings.items() if k in inf})
    inf.update({k: v for k, v in (sbi_settings or {}).items() if k in inf})
    used["inference"] = inf
    return used


def find_study(cfg: dict, method: str, places) -> dict | None:
    """The first ``coverage.json`` among ``places`` (folders) whose study fingerprint matches ``cfg`` and ``method``:
    ``{"study": folder, "n", "pass", "verdict"}``, or None."""
    want = study_fingerprint(cfg, method)
    for place in places:
        f = Path(place) / "coverage.json"
        if not f.is_file():
            continue
        try:
            rec = read_file(f, kind="JSON")
        except LatentInferError:
            continue
        if rec.get("fingerprint") == want:
            verdict = rec.get("verdict") or {}
            return {"study": str(Path(place)), "n": rec.get("n"), "pass": bool(rec.get("pass")),
                    "verdict": verdict.get("overall"), "next_step": verdict.get("next_step")}
    return None


def load_record(out: str | os.PathLike) -> dict:
    return read_file(Path(out) / "coverage.json", missing="missing file: {path}", label="corrupt file {path}")
