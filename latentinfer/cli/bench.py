"""``latentinfer bench [--quick | --full] [--only NAME]``: the benchmark suite (same code as ``python -m benchmarks``).

The benchmarks live in the repository's top-level ``benchmarks/`` folder (a source checkout), not in the wheel.
"""

from __future__ import annotations

import sys

from ..errors import LatentInferError
from ..paths import _PKG


def register(sub) -> None:
    p = sub.add_parser("bench", help="run every benchmark (benchmarks/bench_*.py), print one table, write benchmarks/results.json")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="quick", action="store_true", default=True, help="small sizes (default)")
    mode.add_argument("--full", dest="quick", action="store_false", help="the sizes quoted in the README")
    p.add_argument("--only", action="append", metavar="NAME", help="run only this benchmark (repeatable)")
    p.add_argument("--out", default=None, help="results file (default benchmarks/results.json)")
    p.set_defaults(func=_bench)


def _bench(args) -> int:
    root = _PKG.parent
    if not (root / "benchmarks" / "__init__.py").is_file():
        raise LatentInferError(f"no benchmarks/ folder beside the package ({root}): run from a source checkout")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    import benchmarks

    argv = ["--quick" if args.quick else "--full"]
    for name in args.only or []:
        argv += ["--only", name]
    if args.out:
        argv += ["--out", args.out]
    return benchmarks.main(argv)
