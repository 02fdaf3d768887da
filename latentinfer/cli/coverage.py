"""``latentinfer coverage CONFIG --method METHOD --n N --out DIR``: a calibration study of a method.

Draws N (theta, data) pairs from the config's prior predictive, runs the method on each (parallel, checkpointed
in DIR/checkpoints: run the same command again to continue), and writes DIR/coverage.json (verdicts with
thresholds, seed, versions, config) and PNG plots.
"""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("coverage", help="coverage study (SBC, TARP, HPD expected coverage) of an inference method")
    p.add_argument("config", help="run config (YAML); its inference block gives the method's settings")
    # no argparse choices: an unknown method is refused by run_coverage in one line (exit code 2)
    p.add_argument("--method", required=True, help="inference method to test: any registered method (npe, chees, nuts, vi, emcee, ...)")
    p.add_argument("--n", type=int, required=True, help="number of simulated data sets (>= 20; NPE/VI >= 500, NUTS >= 100 for a claim)")
    p.add_argument("--out", required=True, help="output folder (coverage.json, plots, checkpoints/)")
    p.add_argument("--workers", type=int, default=None, help="parallel worker processes (default: one per core)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated data sets and of NPE training")
    p.add_argument("--draws", type=int, default=100, help="posterior draws kept per run (SBC rank resolution)")
    p.add_argument("--simulations", type=int, default=None, help="NPE training simulations (default: the config's num_simulations when its method is npe, else NPE's default)")
    p.add_argument("--importance", action="store_true", help="NPE: importance-weight each data set's NPE draws by the program's density (as inference: {method: npe, importance: true})")
    from ..execution import add_backend_arguments

    add_backend_arguments(p)
    p.set_defaults(func=_coverage)


def _coverage(args) -> int:
    from ..config import load_config
    from ..coverage.study import run_coverage

    from ..execution import backend_from

    cfg = load_config(args.config)
    backend = backend_from(cfg, args)
    if backend["backend"] == "slurm":
        from ..errors import ConfigError

        raise ConfigError("coverage: cluster.slurm is not supported here yet; start the cluster and pass --scheduler")
    inf = cfg["inference"]
    # an NPE config's own estimator settings (embedding, ensemble) are what its coverage study must test
    own = inf.get("method") == "npe"
    sbi = {k: inf[k] for k in ("embedding", "ensemble") if own and inf.get(k) is not None}
    from ..inference import get_method

    sims = args.simulations if args.simulations is not None else (inf["num_simulations"] if own else get_method("npe").default("num_simulations"))
    rec = run_coverage(
        cfg, args.method, args.n, args.out, workers=args.workers, seed=args.seed, num_draws=args.draws,
        num_simulations=sims, backend=backend["backend"], scheduler=backend.get("scheduler"),
        sbi_settings=sbi or None, importance=bool(args.importance or (own and args.method == "npe" and inf.get("importance"))),
    )
    for name, v in rec["diagnostics"].items():
        print(f"{name:5s} {'PASS' if v['pass'] else 'FAIL'}")
    verdict = rec.get("verdict")
    if verdict:
        flag = " (acceptable, flagged)" if verdict["overall"] == "under-confident" else ""
        print(f"verdict: {verdict['overall']}{flag}; " + ", ".join(f"{k} {r}" for k, r in verdict["readings"].items()))
        if verdict["next_step"]:
            print(f"next step: {verdict['next_step']}")
    t = rec["timing"]
    print(f"wrote {args.out}/coverage.json ({args.method}, N = {args.n}, {t['wall_seconds']:.1f} s; {t['seconds_per_100_runs']:.1f} s per 100 runs)")
    if rec["warning"]:
        print(f"warning: {rec['warning']}")
    return 0
