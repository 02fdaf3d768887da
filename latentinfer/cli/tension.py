"""``latentinfer tension RUN_A RUN_B [--joint RUN_AB] --out DIR``: do two experiments agree?"""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "tension",
        help="tension between two runs of the same model (parameter shift, Q_DM, S, R, attribution); writes tension.json + plots",
    )
    p.add_argument("run_a", help="run folder of data set A")
    p.add_argument("run_b", help="run folder of data set B")
    p.add_argument("--joint", default=None, help="run folder of A and B together (for suspiciousness S and evidence ratio R)")
    p.add_argument("--out", required=True, help="output folder (tension.json, tension_*.png)")
    p.add_argument("--params", default=None, help="comma-separated parameters to compare (default: the model's inputs)")
    p.add_argument("--metrics", default=None, help="comma-separated metrics (default: parameter_shift, q_dm, suspiciousness, evidence_ratio; add parameter_shift_flow for non-Gaussian posteriors)")
    p.add_argument("--seed", type=int, default=0, help="seed of the pairings and KDE subsets")
    p.add_argument("--threshold", type=float, default=3.0, help="n_sigma above which a metric reports tension (default 3)")
    p.add_argument("--no-attribution", action="store_true", help="skip the per-direction and data-space attribution")
    p.set_defaults(func=_tension)


def _split(s):
    return None if s is None else [x.strip() for x in s.split(",") if x.strip()]


def _tension(args) -> int:
    from ..rundir import load_run
    from ..tension import check_tension, tension, write_tension

    ra, rb = load_run(args.run_a), load_run(args.run_b)
    rj = load_run(args.joint) if args.joint else None
    labels = (ra.name, rb.name) if ra.name != rb.name else ("A", "B")
    res = tension(ra, rb, rj, params=_split(args.params), metrics=_split(args.metrics), seed=args.seed, attribution=not args.no_attribution, labels=labels)
    import numpy as np

    a = np.stack([ra.posterior.samples(n) for n in res.names], -1)
    b = np.stack([rb.posterior.samples(n) for n in res.names], -1)
    files = write_tension(res, args.out, a, b)
    verdict = check_tension(res, args.threshold)
    print(f"tension between {labels[0]} and {labels[1]} in {', '.join(res.names)}")
    print(res.table())
    shifts = res.attribution.get("parameters", {})
    if shifts:
        worst = max(shifts, key=lambda n: abs(shifts[n]["n_sigma"]))
        print(f"largest shift: {worst} ({shifts[worst]['n_sigma']:+.2f} sigma)")
    if "data_space_skipped" in res.attribution:
        print(f"data-space attribution skipped: {res.attribution['data_space_skipped']}")
    print(f"verdict (threshold {args.threshold:g} sigma): {'TENSION' if verdict['tension'] else 'no tension'}")
    print(f"wrote {', '.join(str(f) for f in files)}")
    return 0
