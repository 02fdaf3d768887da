"""The real posteriors: Planck 2018 plik_lite TTTEEE + low-ell TT with the shipped cmb-lcdm decoder.

Two programs: the latent posterior of ``examples/demo.yaml`` (6 latents + A_planck) and the physical LCDM posterior of
``examples/planck_physical.yaml`` (6 parameters + A_planck, tau prior from Planck lowE). For each sampler, one run in
this process, one after the other:

- ``chees`` (ChEES-HMC, chains as a batch dimension; float64 and float32),
- Pyro ``nuts`` (the reference; chains in 2 worker processes, as ``latentinfer run`` does),
- ``emcee`` (vectorised walkers on the same log density),

each reported with its wall time (including the Laplace start and warmup), the worst R-hat and smallest bulk and tail
ESS over every parameter, whether it met the goal (R-hat <= 1.01, bulk and tail ESS >= 1000 everywhere) and min-ESS/s
(smallest of bulk and tail ESS over the wall time). Ratios of min-ESS/s are taken within this run. Then the log
density with its gradient of the latent program, evaluations per second at batch 1 and batch 64: Pyro's trace
(``Analysis.unconstrained_log_density``) against :class:`latentinfer.program.LogDensity` in float64 and float32,
each with its hand-written and its autograd gradient (and their ratio), one torch thread
(``python benchmarks/bench_planck.py --density`` runs only these rows). ``--full`` adds the physical program's emcee and NUTS runs and a ChEES coverage study (N = 100).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

__all__ = ["run"]

ROOT = Path(__file__).resolve().parents[1]
GOAL_RHAT, GOAL_ESS = 1.01, 1000


def _row(metric, value, unit, note=""):
    return {"benchmark": "planck", "metric": metric, "value": float(value), "unit": unit, "note": note}


def _analysis(name: str):
    from latentinfer.config import load_config
    from latentinfer.runner import build_analysis

    return build_analysis(load_config(ROOT / "examples" / name))


def _judge(post, wall: float) -> dict:
    summ = post.summary()
    rhat = max(v["r_hat"] for v in summ.values())
    bulk = min(v["ess_bulk"] for v in summ.values())
    tail = min(v["ess_tail"] for v in summ.values())
    ok = rhat <= GOAL_RHAT and bulk >= GOAL_ESS and tail >= GOAL_ESS
    return {"wall": wall, "rhat": rhat, "bulk": bulk, "tail": tail, "ok": ok, "ess_per_s": min(bulk, tail) / wall,
            "divergences": post.divergences(), "mean": post.mean(), "sd": np.sqrt(np.diag(post.cov()))}


def _sample(an, method: str, **settings) -> dict:
    t0 = time.perf_counter()
    post = an.sample(method, progress=False, **settings)
    return {**_judge(post, time.perf_counter() - t0), "posterior": post}


def _evidence_row(problem: str, an, res: dict, note: str) -> dict:
    """harmonic's ln Z from a sampler's draws: wall time (log densities of the draws, flow, estimate) and its flags."""
    t0 = time.perf_counter()
    ev = an.evidence(res["posterior"], method="harmonic", seed=0)
    wall = time.perf_counter() - t0
    flags = ev.details["flags"]
    return _row(f"{problem} harmonic evidence time", wall, "s",
                f"{note}: ln Z {ev.ln_z:.3f} +- {ev.ln_z_err:.3f}, {ev.details['epochs']} flow epochs, "
                f"{ev.details['blocks_eval']} blocks, kurtosis {ev.details['kurtosis']:.2f} (limit {ev.details['kurtosis_limit']:.2f}), "
                + (f"FLAGGED: {'; '.join(flags)}" if flags else "no flags"))


def _rows_for(problem: str, method: str, res: dict, note: str) -> list[dict]:
    tag = f"{problem} {method}"
    goal = "met" if res["ok"] else "NOT met"
    detail = (f"{note}; R-hat {res['rhat']:.4f}, bulk ESS {res['bulk']:.0f}, tail ESS {res['tail']:.0f}, "
              f"{res['divergences']} divergences; goal (R-hat <= 1.01, ESS >= 1000) {goal}")
    return [_row(f"{tag} wall time", res["wall"], "s", detail), _row(f"{tag} min ESS/s", res["ess_per_s"], "1/s", detail)]


def _evals_per_second(fn, u, seconds: float) -> float:
    for _ in range(3):
        fn(u)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn(u)
        n += 1
    return n * (u.shape[0] if u.dim() > 1 else 1) / (time.perf_counter() - t0)


def _density_rows(an, seconds: float) -> list[dict]:
    """Evaluations/s of log density + gradient at batch 1 and 64: the Pyro trace, then LogDensity in float64 and
    float32 under both gradient backends (hand-written, autograd), with the hand-written / autograd ratio of each
    precision. Every measurement of one batch size alternates the backends (A B A B) and keeps each one's best, so
    that a load change during the run does not land on one backend only."""
    from latentinfer.program import LogDensity

    tr = an.transforms()

    def pyro_vg(u):
        u = u.detach().requires_grad_(True)
        lp = an.unconstrained_log_density(u, tr)
        torch.autograd.grad(lp.sum(), u)

    rows = []
    dens = {(prec, backend): LogDensity(an, dtype=dt, backend=backend)
            for prec, dt in (("float64", torch.float64), ("float32", torch.float32)) for backend in ("handwritten", "autograd")}
    paths = dens[("float64", "handwritten")].paths
    n = len(an.parameter_names)
    for batch in (1, 64):
        u0 = torch.zeros(n, dtype=torch.float64) if batch == 1 else 0.01 * torch.randn(batch, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        ref = _evals_per_second(pyro_vg, u0, seconds)
        rows.append(_row(f"latent log density+grad, Pyro trace, batch {batch}", ref, "chain-evals/s", "one torch thread, float64"))
        best = {k: 0.0 for k in dens}
        for _ in range(2):
            for k, ld in dens.items():
                best[k] = max(best[k], _evals_per_second(ld.value_and_grad, u0, seconds / 2))
        for (prec, backend), got in best.items():
            rows.append(_row(f"latent log density+grad, LogDensity {prec} {backend}, batch {batch}", got, "chain-evals/s",
                             f"one torch thread; {got / ref:.1f}x the Pyro trace, same run"))
        for prec in ("float64", "float32"):
            ratio = best[(prec, "handwritten")] / best[(prec, "autograd")]
            auto = sorted(k for k, v in paths.items() if v != "handwritten")
            note = "same run, alternating; " + (f"through autograd: {', '.join(auto)}" if auto else "every piece hand-written")
            rows.append(_row(f"latent log density+grad, hand-written / autograd {prec}, batch {batch}", ratio, "x", note))
    return rows


def run(quick: bool = True) -> list[dict]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows: list[dict] = []
    try:
        an = _analysis("demo.yaml")
        rows += _density_rows(an, 2.0 if quick else 5.0)
        res = {}
        res["chees"] = _sample(an, "chees", chains=32, draws=200, seed=0)
        res["chees float32"] = _sample(an, "chees", chains=32, draws=200, seed=0, precision="float32")
        res["emcee"] = _sample(an, "emcee", walkers=32, warmup=1000, draws=4000 if quick else 8000, seed=0)
        torch.set_num_threads(threads)
        res["nuts"] = _sample(an, "nuts", chains=4, warmup=300, draws=500, seed=0)
        torch.set_num_threads(1)
        notes = {"chees": "32 chains x 200 draws, float64", "chees float32": "32 chains x 200 draws, float32 expansion and likelihoods",
                 "emcee": f"32 walkers x (1000 + {4000 if quick else 8000})", "nuts": "Pyro NUTS, 4 chains x (300 + 500), 2 processes"}
        for m, r in res.items():
            rows += _rows_for("latent", m, r, notes[m])
        best = max((r for m, r in res.items() if m != "emcee"), key=lambda r: r["ess_per_s"])
        rows.append(_row("latent best gradient sampler / emcee min ESS/s", best["ess_per_s"] / res["emcee"]["ess_per_s"], "x", "same posterior, same run"))
        rows.append(_row("latent chees / Pyro NUTS min ESS/s", res["chees"]["ess_per_s"] / res["nuts"]["ess_per_s"], "x", "same posterior, same run"))
        shift = np.abs(res["chees"]["mean"] - res["nuts"]["mean"]) / res["nuts"]["sd"]
        ratio = res["chees"]["sd"] / res["nuts"]["sd"]
        rows.append(_row("latent chees vs NUTS: largest mean shift", shift.max(), "NUTS sd", f"sd ratios {ratio.min():.3f}-{ratio.max():.3f}"))
        rows.append(_evidence_row("latent", an, res["chees"], "chees 32 x 200 draws"))

        phys = _analysis("planck_physical.yaml")
        pres = {"chees": _sample(phys, "chees", chains=32, draws=200, seed=0)}
        if not quick:
            pres["emcee"] = _sample(phys, "emcee", walkers=32, warmup=1000, draws=8000, seed=0)
            torch.set_num_threads(threads)
            pres["nuts"] = _sample(phys, "nuts", chains=4, warmup=300, draws=500, seed=0)
            torch.set_num_threads(1)
        pnotes = {"chees": "32 chains x 200 draws, float64", "emcee": "32 walkers x (1000 + 8000)", "nuts": "Pyro NUTS, 4 chains x (300 + 500), 2 processes"}
        for m, r in pres.items():
            rows += _rows_for("physical", m, r, pnotes[m])
        rows.append(_evidence_row("physical", phys, pres["chees"], "chees 32 x 200 draws"))
        if "emcee" in pres:
            rows.append(_row("physical chees / emcee min ESS/s", pres["chees"]["ess_per_s"] / pres["emcee"]["ess_per_s"], "x", "same posterior, same run"))
        if not quick:
            rows += _coverage_rows()
    finally:
        torch.set_num_threads(threads)
    return rows


def _coverage_rows() -> list[dict]:
    import tempfile

    from latentinfer.config import load_config
    from latentinfer.coverage.study import run_coverage

    cfg = load_config(ROOT / "examples" / "demo.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        rec = run_coverage(cfg, "chees", 100, Path(tmp) / "cov", num_draws=100)
        wall = time.perf_counter() - t0
    verdicts = ", ".join(f"{k} {'pass' if v['pass'] else 'FAIL'}" for k, v in rec["diagnostics"].items())
    return [_row("coverage chees per 100 runs (Planck latent)", 100 * wall / rec["n"], "s", f"N = {rec['n']}, 4 chains per data set, whole study incl. diagnostics; {verdicts}")]


if __name__ == "__main__":  # pragma: no cover
    import sys

    os.environ.setdefault("OMP_NUM_THREADS", "2")
    if "--density" in sys.argv:  # only the log-density rows (seconds, not minutes)
        torch.set_num_threads(1)
        rows = _density_rows(_analysis("demo.yaml"), 2.0)
    else:
        rows = run(quick=True)
    for r in rows:
        print(r)
