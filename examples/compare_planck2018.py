"""Our Planck 2018 LCDM posterior (examples/planck_physical.yaml) against the published constraints.

    python examples/compare_planck2018.py runs/planck_physical [--max-shift 0.5]

Prints, per parameter, our mean and sd, the published mean and sd (Planck 2018 VI, Table 2, TT,TE,EE+lowE,
68% limits), the shift of the means in units of the published sd, and the ratio of the sds. With
``--max-shift X`` it exits with code 1 when any mean differs by more than X published sd.
"""

from __future__ import annotations

import argparse
import sys

#: Planck 2018 TT,TE,EE+lowE (Planck Collaboration 2020, A&A 641, A6, Table 2): mean, sd.
PUBLISHED = {
    "ombh2": (0.02236, 0.00015),
    "omch2": (0.1202, 0.0014),
    "H0": (67.27, 0.60),
    "logA": (3.045, 0.016),
    "ns": (0.9649, 0.0044),
    "tau": (0.0544, 0.0073),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="run folder of examples/planck_physical.yaml")
    p.add_argument("--max-shift", type=float, default=None, help="fail (exit 1) if a mean is off by more than this many published sd")
    args = p.parse_args(argv)

    from latentinfer.errors import LatentInferError
    from latentinfer.rundir import load_run

    try:
        post = load_run(args.run).posterior
    except LatentInferError as exc:
        print(f"compare_planck2018: error: {exc}", file=sys.stderr)
        return 2
    missing = [n for n in PUBLISHED if n not in post.parameter_names]
    if missing:
        print(f"compare_planck2018: error: the run has no parameters {missing} (is it a space: physical run?)", file=sys.stderr)
        return 2
    print(f"{'parameter':<10} {'ours':>22} {'Planck 2018':>22} {'shift/sd':>9} {'sd ratio':>9}")
    worst = 0.0
    for name, (mu, sd) in PUBLISHED.items():
        x = post.samples(name)
        m, s = float(x.mean()), float(x.std(ddof=1))
        shift = (m - mu) / sd
        worst = max(worst, abs(shift))
        print(f"{name:<10} {m:>12.5g} +- {s:<7.2g} {mu:>12.5g} +- {sd:<7.2g} {shift:>+9.2f} {s / sd:>9.2f}")
    print("note: the tau row is prior-dominated (tau ~ N(0.0506, 0.0086), Planck lowE alone, stands in for the low-ell EE likelihood)")
    if args.max_shift is not None and worst > args.max_shift:
        print(f"largest shift {worst:.2f} sd exceeds --max-shift {args.max_shift}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
