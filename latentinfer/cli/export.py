"""``latentinfer export RUN --format getdist [--out PREFIX]``: chains for GetDist (and cobaya-style tools)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("export", help="export a run's chains (GetDist text: PREFIX_1.txt ..., .paramnames, .ranges)")
    p.add_argument("run", help="run folder")
    p.add_argument("--format", default="getdist", help="export format (default getdist)")
    p.add_argument("--out", default=None, help="file prefix (default RUN/<format>/<run name>)")
    p.set_defaults(func=_export)


def _export(args) -> int:
    from ..export import export_run

    files = export_run(args.run, args.format, args.out)
    print(f"wrote {len(files)} files: {', '.join(str(f) for f in files)}")
    return 0
