"""Start-up cost: wall time of fresh processes that import latentinfer or answer a quick CLI question.

Each command runs in a new Python process (nothing cached in ``sys.modules``; the OS file cache is warm after the
first run), median of 3 (quick) or 7 (full) runs. The heavy stacks (torch, pyro, arviz, sbi, jax) a command left
in ``sys.modules`` are named in the note, and one row says whether loading a model bundle imports the trainer
module ``latentinfer.ive.train`` (1) or not (0).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "pyro", "arviz", "sbi", "jax")
MODEL = "cmb-lcdm"

# Run inside the child process: do the thing, then print the heavy top-level packages it imported.
_REPORT = f"import sys as _s; print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in _s.modules))"
_CLI = "import sys; from latentinfer.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _cli(*args: str) -> list[str]:
    """The installed ``latentinfer`` console script beside this interpreter, else ``python -m latentinfer``."""
    script = Path(sys.executable).with_name("latentinfer")
    return [str(script), *args] if script.is_file() else [sys.executable, "-m", "latentinfer", *args]


def _run(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    dt = time.perf_counter() - t0
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        raise RuntimeError(f"{' '.join(cmd)[:120]} exited {done.returncode}: {tail}")
    return dt, done.stdout


def _heavy(cmd_code: str) -> str:
    """The heavy packages left in sys.modules by ``cmd_code`` (run in a fresh process)."""
    _, out = _run(_python(cmd_code + "\n" + _REPORT))
    line = [ln for ln in out.splitlines() if ln.startswith("HEAVY=")][-1]
    return line.removeprefix("HEAVY=") or "none"


def run(quick: bool = True) -> list[dict]:
    repeats = 3 if quick else 7
    cases = [
        ("python -c 'import latentinfer'", _python("import latentinfer"), "import latentinfer"),
        ("latentinfer --help", _cli("--help"), _CLI.format(argv=["--help"])),
        ("latentinfer models", _cli("models"), _CLI.format(argv=["models"])),
        ("latentinfer likelihoods", _cli("likelihoods"), _CLI.format(argv=["likelihoods"])),
        (f"load_model('{MODEL}')", _python(f"import latentinfer; latentinfer.load_model({MODEL!r})"),
         f"import latentinfer; latentinfer.load_model({MODEL!r})"),
    ]
    rows = []
    for label, cmd, probe in cases:
        times = [_run(cmd)[0] for _ in range(repeats)]
        rows.append({
            "benchmark": "imports",
            "metric": f"{label} wall time (fresh process)",
            "value": statistics.median(times),
            "unit": "s",
            "note": f"median of {repeats} (min {min(times):.2f}, max {max(times):.2f}); heavy modules loaded: {_heavy(probe)}",
        })
    _, out = _run(_python(f"import sys, latentinfer; latentinfer.load_model({MODEL!r}); print(int('latentinfer.ive.train' in sys.modules))"))
    rows.append({
        "benchmark": "imports",
        "metric": f"load_model('{MODEL}') imports latentinfer.ive.train",
        "value": int(out.strip().splitlines()[-1]),
        "unit": "1/0",
        "note": "1: loading a bundle pulls in the trainer module",
    })
    return rows


if __name__ == "__main__":  # pragma: no cover
    for r in run():
        print(r)
