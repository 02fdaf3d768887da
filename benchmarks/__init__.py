"""latentinfer benchmarks: ``python -m benchmarks [--quick | --full] [--only NAME ...]`` (or ``latentinfer bench``).

Every module ``benchmarks/bench_<topic>.py`` defines ``run(quick: bool = True) -> list[dict]`` whose rows are
``{"benchmark", "metric", "value", "unit", "note"}``; ratios against a peer measured in the same run (NUTS vs
emcee ESS/s, decoder vs CAMB, batched vs single likelihood) sit beside the absolute times. This package finds the
modules, runs them one after the other, prints one table and writes ``benchmarks/results.json`` with the machine
it ran on. A module that raises is reported as a failed row carrying its error line; the others still run.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

__all__ = ["discover", "run_all", "machine_info", "format_table", "main", "ROW_KEYS"]

HERE = Path(__file__).resolve().parent
ROW_KEYS = ("benchmark", "metric", "value", "unit", "note")


def discover(folder: str | os.PathLike = HERE, only: list[str] | None = None) -> dict[str, Path]:
    """``{topic: path}`` of the ``bench_<topic>.py`` modules in ``folder`` (all, or those named in ``only``,
    with or without the ``bench_`` prefix)."""
    found = {p.stem.removeprefix("bench_"): p for p in sorted(Path(folder).glob("bench_*.py"))}
    if only:
        wanted = {n.removeprefix("bench_").removesuffix(".py") for n in only}
        unknown = wanted - set(found)
        if unknown:
            raise LookupError(f"unknown benchmark {sorted(unknown)[0]!r} (available: {', '.join(found) or 'none'})")
        found = {k: v for k, v in found.items() if k in wanted}
    return found


def _load(topic: str, path: Path):
    spec = importlib.util.spec_from_file_location(f"benchmarks.bench_{topic}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _failed(topic: str, exc: BaseException) -> dict[str, Any]:
    line = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()[-1]
    return {"benchmark": topic, "metric": "FAILED", "value": None, "unit": "", "note": line[:300]}


def _check_rows(topic: str, rows: Any) -> list[dict[str, Any]]:
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise TypeError(f"run() must return a list of dicts, got {type(rows).__name__}")
    out = []
    for r in rows:
        missing = [k for k in ("benchmark", "metric", "value") if k not in r]
        if missing:
            raise KeyError(f"row {r!r} lacks {missing}")
        out.append({k: r.get(k, "") for k in ROW_KEYS})
    return out


def run_all(folder: str | os.PathLike = HERE, quick: bool = True, only: list[str] | None = None, echo=print) -> dict[str, Any]:
    """Run the benchmark modules; returns ``{"rows": [...], "modules": {topic: {"seconds", "status"}}}``."""
    rows: list[dict[str, Any]] = []
    modules: dict[str, dict[str, Any]] = {}
    for topic, path in discover(folder, only).items():
        echo(f"[benchmarks] {topic} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            got = _check_rows(topic, _load(topic, path).run(quick=quick))
            status = "ok"
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # a failing module is a failed row, not the end of the run
            got, status = [_failed(topic, exc)], "failed"
        modules[topic] = {"seconds": round(time.perf_counter() - t0, 2), "status": status}
        rows += got
    return {"rows": rows, "modules": modules}


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory, load, Python and package versions, date: what a timing depends on."""
    from latentinfer.io import versions

    cpu = platform.processor() or platform.machine()
    mem_gb = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "memory_gb": mem_gb,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def format_table(rows: list[dict[str, Any]]) -> str:
    """One plain-text table (also valid Markdown) of all rows."""
    head = list(ROW_KEYS)
    cells = [[_fmt(r.get(k, "")) for k in head] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(head)]
    line = lambda cs: "| " + " | ".join(c.ljust(w) for c, w in zip(cs, widths)) + " |"  # noqa: E731
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(c) for c in cells])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description="run every latentinfer benchmark, print one table")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="quick", action="store_true", default=True, help="small sizes, a few minutes in all (default)")
    mode.add_argument("--full", dest="quick", action="store_false", help="the sizes quoted in the README")
    p.add_argument("--only", action="append", metavar="NAME", help="run only this benchmark (repeatable), e.g. --only execution")
    p.add_argument("--out", default=str(HERE / "results.json"), help="where to write the results (default benchmarks/results.json)")
    p.add_argument("--dir", default=str(HERE), help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from latentinfer.io import write_json

    t0 = time.perf_counter()
    try:
        result = run_all(args.dir, quick=args.quick, only=args.only)
    except LookupError as exc:
        print(f"benchmarks: error: {exc.args[0]}", file=sys.stderr)
        return 2
    record = {
        "mode": "quick" if args.quick else "full",
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": machine_info(),
        **result,
    }
    print(format_table(result["rows"]))
    m = record["machine"]
    print(f"\n{m['cpu']}, {m['cores_usable']}/{m['cores']} cores, {m['memory_gb']} GB, load {m['load_average']}, "
          f"Python {m['python']}; {record['seconds']} s in all; written to {args.out}")
    write_json(args.out, record)
    return 1 if any(v["status"] != "ok" for v in result["modules"].values()) else 0
