"""``latentinfer report RUN [RUN ...] --out report.html``: one self-contained HTML report."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("report", help="write one self-contained HTML report (diagnostics, PPC, provenance) of one or more runs")
    p.add_argument("runs", nargs="+", help="run folders (and/or folders holding tension.json)")
    p.add_argument("--out", default="report.html", help="output HTML file (default report.html)")
    p.add_argument("--title", default=None, help="title of the page")
    p.set_defaults(func=_report)


def _report(args) -> int:
    import time

    from ..report import write_report

    t0 = time.perf_counter()
    out = write_report(args.runs, args.out, title=args.title)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - t0:.1f} s)")
    return 0
