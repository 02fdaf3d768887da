"""``latentinfer run CONFIG.yaml --out DIR [--scheduler tcp://HOST:PORT]``: one inference run from a config.

Chains are independent tasks: local processes by default, a Dask cluster with ``--scheduler`` or the config's
``cluster:`` block. Interrupted runs (Ctrl-C, SIGKILL, a lost node) continue from their checkpoints when the
same command is started again.
"""

from __future__ import annotations

from ..execution import add_backend_arguments


def register(sub) -> None:
    p = sub.add_parser("run", help="run inference from a YAML config; writes posterior.nc, summary.json, config.yaml")
    p.add_argument("config", help="run config (YAML)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=None, help="override inference.seed")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_backend_arguments(p)
    p.set_defaults(func=_run)


def _run(args) -> int:
    from ..config import load_config
    from ..runner import run_config

    cfg = load_config(args.config)
    if args.seed is not None:
        cfg["inference"]["seed"] = args.seed
    if args.no_progress:
        cfg["inference"]["progress"] = False
    result = run_config(cfg, args.out, scheduler=args.scheduler)
    print(f"wrote {result['out']} ({result['method']}, {result['wall_seconds']:.1f} s)")
    if result["summary"].get("evidence"):
        from ..rundir import evidence_lines

        print("\n".join(evidence_lines(result["summary"]["evidence"])))
    for r in result["summary"].get("latent_references", []):
        print(f"reference: {r['text']}")
    cov = result["summary"].get("coverage") or {}
    if cov.get("study"):
        state = "passed" if cov.get("pass") else "FAILED"
        print(f"coverage: this configuration {state} a coverage study (N = {cov.get('n')}, verdict {cov.get('verdict')}; {cov['study']})")
    elif cov:
        print(f"coverage: {cov.get('note')}")
    return 0
