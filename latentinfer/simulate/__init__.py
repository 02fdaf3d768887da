"""The CAMB simulator: scrambled Sobol designs over a prior box, chunked and resumable (``latentinfer simulate``).

``simulate(model, n, seed, out, ...)`` writes ``out/chunks/chunk-XXXXX.{npz,json}`` through
:func:`latentinfer.execution.map_tasks` (local processes, or Dask with the same call), so an interrupted run
resumes with the chunks it has, then assembles ``out/<model>.npz`` in the corpus format.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..execution import map_tasks
from ..io import atomic_write_bytes
from ..grid import corpus_ell_grid
from .camb_runner import DERIVED_NAMES, camb_spectra, run_chunk
from .design import BOXES, SEEDS, parse_box, parse_rows, sobol_design

__all__ = ["simulate", "chunk_keys", "sobol_design", "camb_spectra", "run_chunk", "BOXES", "SEEDS", "parse_box", "parse_rows"]


def chunk_keys(model: str, n: int, seed: int, idx: np.ndarray, chunk: int, box: dict) -> list[str]:
    """Checkpoint keys of the chunks of a run: model, seed, design size and rows, and (when it is not the model's
    default box) a hash of the box, so a resumed run never reuses chunks of another design."""
    tag = ""
    if {k: tuple(map(float, v)) for k, v in box.items()} != {k: tuple(map(float, v)) for k, v in BOXES[model].items()}:
        text = ",".join(f"{k}={float(v[0])!r}:{float(v[1])!r}" for k, v in box.items())
        tag = "-box" + hashlib.sha256(text.encode()).hexdigest()[:8]
    idx = np.asarray(idx, int)
    return [f"chunk-{model}-s{seed}-n{n}{tag}-{idx[s]:06d}-{idx[min(s + chunk, len(idx)) - 1]:06d}"
            for s in range(0, len(idx), chunk)]


def simulate(model: str, n: int, seed: int, out: str | os.PathLike, *, box: dict | None = None, chunk: int = 25,
             workers: int | None = None, backend: str = "local", scheduler: str | None = None,
             rows: np.ndarray | None = None, progress=None) -> Path:
    """Run CAMB over a Sobol design and write ``out/<model>.npz`` (keys as the shared corpus). Returns its path.

    ``rows`` restricts the run to some design rows (e.g. to reproduce two corpus rows); the design is always
    drawn for all ``n`` points, so row ``i`` is the same point whatever subset is run.
    """
    if model not in ("lcdm", "ede"):
        raise ConfigError(f"--model must be lcdm or ede, got {model!r}")
    if n < 1 or chunk < 1:
        raise ConfigError(f"--n and --chunk must be >= 1 (got n={n}, chunk={chunk})")
    box = box or dict(BOXES[model])
    names = list(box)
    theta = sobol_design(box, n, seed)
    idx = np.arange(n) if rows is None else np.asarray(rows, int)
    keys = chunk_keys(model, n, seed, idx, chunk, box)
    tasks = [{"params": theta[idx[s : s + chunk]].tolist(), "names": names} for s in range(0, len(idx), chunk)]
    out = Path(out)
    results = map_tasks(run_chunk, tasks, keys=keys, workers=workers, backend=backend, scheduler=scheduler,
                        checkpoint_dir=out / "chunks", progress=progress)
    arrays = {k: np.concatenate([r[k] for r in results]) for k in ("params", "TT", "TE", "EE", "PP", "derived", "ok")}
    arrays.update(names=np.array(names), box_low=np.array([v[0] for v in box.values()]),
                  box_high=np.array([v[1] for v in box.values()]), ell=corpus_ell_grid(),
                  derived_names=np.array(DERIVED_NAMES), rows=idx)
    arrays["ok"] = arrays["ok"].astype(bool)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path = out / f"{model}.npz"
    atomic_write_bytes(path, buf.getvalue())
    return path
