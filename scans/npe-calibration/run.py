"""Why is default NPE over-confident on the Planck demo problem? One experiment per call (issue 22, item 2).

    OMP_NUM_THREADS=1 python scans/npe-calibration/run.py NAME --sims 10000 [--set key=value ...] [--n 500]

Trains NPE on ``examples/demo.yaml``'s program with the given :func:`latentinfer.amortized.train` settings, runs the
coverage study (``run_coverage``, N data sets, seed 0: the same N data sets for every experiment) and appends one
JSON line to ``scans/npe-calibration/results.jsonl``: every diagnostic's pass/statistic, the HPD curve, and a joint
reading that needs no reference sampler: the squared Mahalanobis distance of the truth from each data set's NPE
draws (mean, covariance of 1000 draws in the unconstrained space), whose mean is the number of parameters when the
NPE is calibrated and larger when it is over-confident; also split along the eigen-directions of the draws'
covariance (narrowest first) to show which direction is too narrow.

``--set`` keys beyond train()'s settings (experiment only, patched here): ``validation_fraction``, ``z_score_x``,
``z_score_theta`` (sbi's options), ``nuisance`` (``fixed``: A_planck fixed at 1 instead of its narrow prior).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def parse_value(v: str):
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return {"null": None, "none": None, "true": True, "false": False}.get(v.lower(), v)


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("name")
    p.add_argument("--sims", type=int, default=10000)
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", nargs="*", default=[])
    p.add_argument("--out", default="/tmp/npecal")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    settings = {}
    for kv in a.set:
        k, v = kv.split("=", 1)
        settings[k] = parse_value(v)
    extra = {k: settings.pop(k) for k in ("validation_fraction", "z_score_x", "z_score_theta", "nuisance") if k in settings}

    from latentinfer.amortized import posterior as P
    from latentinfer.config import load_config
    from latentinfer.coverage.study import run_coverage
    from latentinfer.runner import build_analysis

    cfg = load_config(HERE.parents[1] / "examples/demo.yaml")
    if extra.get("nuisance") == "fixed":
        cfg["priors"] = {**cfg["priors"], "A_planck": {"fixed": 1.0}}
    # experiment-only patches of sbi's options (train() does not expose them)
    if "validation_fraction" in extra:
        orig_trainer = P._trainer

        def _trainer(cfg_, prior, build):
            t = orig_trainer(cfg_, prior, build)
            orig_train = t.train
            t.train = lambda **kw: orig_train(validation_fraction=extra["validation_fraction"], **kw)
            return t

        P._trainer = _trainer
    if "z_score_x" in extra or "z_score_theta" in extra:
        from sbi import neural_nets

        orig_pnn = neural_nets.posterior_nn

        def posterior_nn(**kw):
            if "z_score_x" in extra:
                kw["z_score_x"] = extra["z_score_x"]
            if "z_score_theta" in extra:
                kw["z_score_theta"] = extra["z_score_theta"]
            return orig_pnn(**kw)

        neural_nets.posterior_nn = posterior_nn

    analysis = build_analysis(cfg)
    out = Path(a.out) / a.name
    t0 = time.perf_counter()
    rec = run_coverage(cfg, "npe", a.n, out, workers=1, seed=a.seed, num_simulations=a.sims, sbi_settings=settings or None, analysis=analysis)
    wall = time.perf_counter() - t0

    # joint reading without a reference sampler: Mahalanobis distance of the truth from the NPE draws
    from latentinfer.amortized import AmortizedPosterior, simulate, split_data

    amo = AmortizedPosterior.load(out / "npe", analysis)
    sims = simulate(analysis, a.n, seed=a.seed)
    m = min(a.n, 300)
    d2, zdir = [], []
    for i in range(m):
        data = {k: v[i] for k, v in split_data(analysis, sims["x"]).items()}
        u = amo.sample_unconstrained(data, 1000, seed=i)
        mu, C = u.mean(0), torch.cov(u.T)
        ev, V = torch.linalg.eigh(C)
        z = (V.T @ (sims["u"][i].double() - mu)) / ev.clamp_min(1e-300).sqrt()
        zdir.append(z.numpy())
        d2.append(float((z**2).sum()))
    zdir = np.array(zdir)
    line = {
        "name": a.name,
        "num_simulations": a.sims,
        "settings": settings,
        "extra": extra,
        "n": a.n,
        "pass": rec["pass"],
        "verdict": rec["verdict"]["overall"],
        "checks": {k: v["pass"] for k, v in rec["diagnostics"].items()},
        "hpd": [round(float(np.interp(q, rec["curves"]["hpd"]["level"], rec["curves"]["hpd"]["coverage"])), 3) for q in (0.5, 0.68, 0.8, 0.9, 0.95)],
        "tarp_atc": rec["curves"]["tarp"]["atc"],
        "density_rank_p": rec["diagnostics"]["density_rank"].get("ks_pvalue", rec["diagnostics"]["density_rank"].get("p_value")),
        "mahalanobis_mean_over_dim": float(np.mean(d2) / zdir.shape[1]),
        "z_var_by_direction_narrowest_first": [round(float(v), 2) for v in (zdir**2).mean(0)],
        "epochs": amo.config.get("epochs"),
        "training_seconds": amo.config.get("training_seconds"),
        "simulation_seconds": amo.config.get("simulation_seconds"),
        "study_wall_seconds": rec["timing"]["wall_seconds"],
        "wall_seconds": wall,
    }
    print(json.dumps(line))
    with open(HERE / "results.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
