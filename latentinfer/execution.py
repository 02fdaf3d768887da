"""One place where independent tasks (chains, simulation chunks, coverage runs) are mapped onto workers.

``map_tasks(fn, tasks)`` runs ``fn(task)`` for each task: in this process, in local worker processes, or on a
Dask cluster, and checkpoints each finished result to ``checkpoint_dir`` as it arrives, so that a restarted
job skips what was done. Tasks are seeded by their own arguments, so every backend gives the same numbers.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LatentInferError
from .io import atomic_write_bytes

__all__ = ["map_tasks", "default_workers", "TaskCheckpoint"]


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class TaskCheckpoint:
    """Finished task results stored as ``<dir>/<key>.npz`` (arrays only: no pickle) plus ``<key>.json`` metadata."""

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.dir / f"{key}.npz"

    def has(self, key: str) -> bool:
        return self._path(key).is_file() and (self.dir / f"{key}.json").is_file()

    def load(self, key: str) -> dict[str, Any]:
        with np.load(self._path(key), allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        meta = json.loads((self.dir / f"{key}.json").read_text())
        return {**arrays, **meta}

    def save(self, key: str, result: dict[str, Any]) -> None:
        import io as _io

        arrays = {k: np.asarray(v) for k, v in result.items() if isinstance(v, np.ndarray)}
        meta = {k: v for k, v in result.items() if not isinstance(v, np.ndarray)}
        buf = _io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(self._path(key), buf.getvalue())
        atomic_write_bytes(self.dir / f"{key}.json", json.dumps(meta, default=float).encode())


def map_tasks(
    fn: Callable[[Any], dict[str, Any]],
    tasks: Sequence[Any],
    *,
    keys: Sequence[str] | None = None,
    workers: int | None = None,
    backend: str = "local",
    scheduler: str | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``fn`` on every task and return the results in task order.

    Parameters
    ----------
    fn : picklable callable returning a dict of numpy arrays and JSON-able values
    tasks : the arguments, one per task
    keys : names of the tasks for checkpoints (default ``task-00000``, ...)
    workers : local worker processes (default: one per core; 1 runs in this process)
    backend : ``"local"`` or ``"dask"`` (then ``scheduler`` is the address ``tcp://host:port``)
    checkpoint_dir : folder where finished results are stored and found again on restart
    progress : called as ``progress(done, total)`` after each task
    """
    keys = list(keys) if keys is not None else [f"task-{i:05d}" for i in range(len(tasks))]
    if len(keys) != len(tasks):
        raise ValueError("keys and tasks differ in length")
    ckpt = TaskCheckpoint(checkpoint_dir) if checkpoint_dir is not None else None
    results: dict[int, dict[str, Any]] = {}
    todo = []
    for i, key in enumerate(keys):
        if ckpt is not None and ckpt.has(key):
            results[i] = ckpt.load(key)
        else:
            todo.append(i)
    total = len(tasks)

    def finish(i, res):
        if ckpt is not None:
            ckpt.save(keys[i], res)
            res = ckpt.load(keys[i])
        results[i] = res
        if progress is not None:
            progress(len(results), total)

    if backend == "dask":
        _run_dask(fn, tasks, todo, scheduler, finish)
    elif backend != "local":
        raise LatentInferError(f"unknown execution backend '{backend}' (use local or dask)")
    else:
        n = min(workers or default_workers(), len(todo)) if todo else 1
        if n <= 1:
            for i in todo:
                finish(i, fn(tasks[i]))
        else:
            ctx = mp.get_context(_start_method())
            with ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_worker_init) as pool:
                futures = {pool.submit(fn, tasks[i]): i for i in todo}
                for fut in as_completed(futures):
                    finish(futures[fut], fut.result())
    return [results[i] for i in range(total)]


def _start_method() -> str:
    """``fork`` on Linux (works from notebooks and scripts without a main guard), else ``spawn``;
    ``$LATENTINFER_MP_START`` overrides."""
    env = os.environ.get("LATENTINFER_MP_START")
    if env:
        return env
    return "fork" if "fork" in mp.get_all_start_methods() and os.uname().sysname == "Linux" else "spawn"


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _run_dask(fn, tasks, todo, scheduler, finish) -> None:
    if not scheduler:
        raise LatentInferError("the dask backend needs a scheduler address (--scheduler tcp://HOST:PORT)")
    try:
        from distributed import Client, as_completed as dask_completed
    except ImportError:  # pragma: no cover
        raise LatentInferError("the dask backend needs the 'distributed' package") from None
    with Client(scheduler, timeout="30s") as client:
        futures = {client.submit(fn, tasks[i], key=f"latentinfer-{os.getpid()}-{i}", pure=False, retries=3): i for i in todo}
        for fut in dask_completed(list(futures)):
            finish(futures[fut], fut.result())


def iter_chunks(n: int, size: int) -> Iterable[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)
