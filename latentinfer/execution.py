"""One place where independent tasks (chains, simulation chunks, coverage runs) are mapped onto workers.

``map_tasks(fn, tasks)`` runs ``fn(task)`` for each task: in this process, in local worker processes, on a
Dask cluster given by its scheduler address, or on a SLURM cluster that ``dask_jobqueue`` starts. Each finished
result is checkpointed to ``checkpoint_dir`` as it arrives, so that a restarted job skips what was done. Tasks
are seeded by their own arguments, so every backend gives the same numbers.

Commands pass the choice of backend through in one line::

    results = map_tasks(fn, tasks, keys=keys, checkpoint_dir=out / ".checkpoints", **backend_from(cfg, args))

where ``backend_from`` reads the config's ``cluster:`` block (``{address: tcp://HOST:PORT}`` or
``{slurm: {...}}``) and the command line's ``--scheduler`` (added by :func:`add_backend_arguments`).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, LatentInferError
from .io import atomic_write_bytes

__all__ = [
    "map_tasks",
    "default_workers",
    "TaskCheckpoint",
    "backend_from",
    "add_backend_arguments",
    "slurm_cluster",
    "BACKENDS",
]

#: Names accepted by ``map_tasks(backend=...)``.
BACKENDS = ("local", "dask", "slurm")

#: Keys of ``cluster: {slurm: {...}}`` that latentinfer reads itself; every other key goes to ``SLURMCluster``.
_SLURM_OWN = ("jobs",)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class TaskCheckpoint:
    """Finished task results stored as ``<dir>/<key>.npz`` (arrays only: no pickle) plus ``<key>.json`` metadata.

    The ``.json`` file is written last, so a result counts as present only when both files are complete.
    """

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
    cluster: Mapping[str, Any] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``fn`` on every task and return the results in task order.

    Parameters
    ----------
    fn : callable returning a dict of numpy arrays and JSON-able values; importable (top level of a module of
        the package) so that worker processes and Dask workers can unpickle it
    tasks : the arguments, one per task; each task carries its own seed
    keys : names of the tasks for checkpoints (default ``task-00000``, ...)
    workers : local worker processes (default: one per core; 1 runs in this process). Ignored by Dask.
    backend : ``"local"``, ``"dask"`` (``scheduler`` is the address ``tcp://HOST:PORT``) or ``"slurm"``
        (``cluster`` is the ``slurm`` mapping of a config, see :func:`slurm_cluster`)
    checkpoint_dir : folder where finished results are stored as they arrive and found again on restart
    progress : called as ``progress(done, total)`` after each task

    Tasks that die with their Dask worker are resubmitted by the scheduler to another worker; since a task's
    numbers depend only on its arguments, the results equal those of a local run.
    """
    keys = list(keys) if keys is not None else [f"task-{i:05d}" for i in range(len(tasks))]
    if len(keys) != len(tasks):
        raise ValueError("keys and tasks differ in length")
    if backend not in BACKENDS:
        raise LatentInferError(f"unknown execution backend '{backend}' (use {', '.join(BACKENDS)})")
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

    if not todo:
        pass
    elif backend == "dask":
        if not scheduler:
            raise LatentInferError("the dask backend needs a scheduler address (--scheduler tcp://HOST:PORT)")
        _run_dask(fn, tasks, todo, keys, scheduler, finish)
    elif backend == "slurm":
        with slurm_cluster(cluster or {}) as client_target:
            _run_dask(fn, tasks, todo, keys, client_target, finish)
    else:
        n = min(workers or default_workers(), len(todo))
        if n <= 1:
            for i in todo:
                finish(i, fn(tasks[i]))
        else:
            ctx = mp.get_context(_start_method())
            with ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_worker_init) as pool:
                futures = {pool.submit(fn, tasks[i]): i for i in todo}
                try:
                    for fut in as_completed(futures):
                        finish(futures[fut], fut.result())
                except BaseException:
                    for fut in futures:  # Ctrl-C or a failed task: stop what has not started
                        fut.cancel()
                    raise
    return [results[i] for i in range(total)]


def _start_method() -> str:
    """``fork`` on Linux (works from notebooks and scripts without a main guard), else ``spawn``.

    Once JAX is imported (harmonic's evidence) the process is multithreaded in a way that ``fork`` can deadlock,
    so ``spawn`` is used then. ``$LATENTINFER_MP_START`` overrides.
    """
    import sys

    env = os.environ.get("LATENTINFER_MP_START")
    if env:
        return env
    if "jax" in sys.modules:
        return "spawn"
    return "fork" if "fork" in mp.get_all_start_methods() and os.uname().sysname == "Linux" else "spawn"


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _run_dask(fn, tasks, todo, keys, target, finish) -> None:
    """Submit the tasks ``todo`` to a Dask cluster (``target``: an address or a cluster object) and hand each
    result to ``finish`` as it arrives. Workers that die take their tasks with them; the scheduler resubmits
    those to the remaining workers (up to ``distributed.scheduler.allowed-failures`` times per task)."""
    try:
        from concurrent.futures import CancelledError

        from distributed import Client, KilledWorker
        from distributed import as_completed as dask_completed
    except ImportError:  # pragma: no cover - distributed is a dependency
        raise LatentInferError("the dask backend needs the 'distributed' package") from None
    try:
        client = Client(target, set_as_default=False)  # waits distributed.comm.timeouts.connect (30 s)
    except (OSError, TimeoutError) as exc:
        raise LatentInferError(f"cannot connect to the Dask scheduler at {target}: {exc}") from None
    run = uuid.uuid4().hex[:8]
    with client:
        futures = {client.submit(fn, tasks[i], key=f"latentinfer-{run}-{keys[i]}", pure=False): i for i in todo}
        try:
            for fut in dask_completed(list(futures), loop=client.loop):
                try:
                    res = fut.result()
                except (KilledWorker, CancelledError) as exc:
                    raise LatentInferError(
                        f"task '{keys[futures[fut]]}' was lost on the Dask cluster ({type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:200]}); finished tasks are checkpointed: run the same command to resume"
                    ) from None
                finish(futures[fut], res)
        except BaseException:
            client.cancel(list(futures))
            raise


# -- choosing a backend from a config or a command line -----------------------------------------------------
def add_backend_arguments(parser) -> None:
    """Add ``--scheduler tcp://HOST:PORT`` to an argparse (sub)parser."""
    parser.add_argument(
        "--scheduler",
        default=None,
        metavar="tcp://HOST:PORT",
        help="run independent tasks on this Dask scheduler (overrides the config's cluster: block)",
    )


def backend_from(source: Any = None, args: Any = None, *, scheduler: str | None = None) -> dict[str, Any]:
    """The backend keyword arguments of :func:`map_tasks` chosen by a config and/or a command line.

    ``source`` is a run config (a mapping whose ``cluster`` key is ``None``, ``{address: ...}`` or
    ``{slurm: {...}}``) or parsed command-line arguments; ``args`` more command-line arguments (their
    ``scheduler`` attribute wins over the config); ``scheduler`` wins over both. Returns
    ``{"backend": "local"}``, ``{"backend": "dask", "scheduler": ADDRESS}`` or
    ``{"backend": "slurm", "cluster": {...}}``.

    >>> backend_from({"cluster": {"address": "tcp://10.0.0.1:8786"}})
    {'backend': 'dask', 'scheduler': 'tcp://10.0.0.1:8786'}
    >>> backend_from(None)
    {'backend': 'local'}
    """
    cluster = None
    address = None
    for src in (source, args):
        if src is None:
            continue
        if isinstance(src, Mapping):
            cluster = src.get("cluster", cluster)
        else:
            address = getattr(src, "scheduler", None) or address
            cluster = getattr(src, "cluster", None) or cluster
    address = scheduler or address
    if address is not None:
        return {"backend": "dask", "scheduler": _check_address(address, "--scheduler")}
    if cluster is None:
        return {"backend": "local"}
    if not isinstance(cluster, Mapping):
        raise ConfigError(f"cluster: must be a mapping with key 'address' or 'slurm', got {cluster!r}")
    unknown = set(cluster) - {"address", "slurm"}
    if unknown:
        raise ConfigError(f"cluster: unknown key '{sorted(map(str, unknown))[0]}' (allowed: address, slurm)")
    if "address" in cluster and "slurm" in cluster:
        raise ConfigError("cluster: give either 'address' or 'slurm', not both")
    if "address" in cluster:
        return {"backend": "dask", "scheduler": _check_address(cluster["address"], "cluster: address")}
    if "slurm" in cluster:
        slurm = cluster["slurm"]
        if not isinstance(slurm, Mapping):
            raise ConfigError(f"cluster: key 'slurm' must be a mapping of SLURMCluster options, got {slurm!r}")
        return {"backend": "slurm", "cluster": dict(slurm)}
    return {"backend": "local"}


def _check_address(address: Any, where: str) -> str:
    if not isinstance(address, str) or "://" not in address or not address.split("://", 1)[1]:
        raise ConfigError(f"{where}: a Dask scheduler address looks like tcp://HOST:PORT, got {address!r}")
    return address


class slurm_cluster:
    """Context manager: a ``dask_jobqueue.SLURMCluster`` from the config's ``cluster: {slurm: {...}}``.

    ``jobs`` (default 1) is how many SLURM jobs to start; every other key is passed to ``SLURMCluster``
    (``cores``, ``memory``, ``processes``, ``walltime``, ``queue``, ``account``, ``job_extra_directives``,
    ``job_script_prologue``, ``python``, ``scheduler_options``, ...). Yields the cluster, to be given to
    ``distributed.Client``. Needs ``dask-jobqueue`` (``pip install dask-jobqueue``), imported only here, and
    ``sbatch`` on the path (run from a login node). ``scale=False`` builds the cluster without submitting jobs
    (to inspect ``cluster.job_script()``).
    """

    def __init__(self, options: Mapping[str, Any], scale: bool = True):
        self.options = dict(options)
        self.scale = scale
        self.cluster = None

    def __enter__(self):
        import shutil

        try:
            from dask_jobqueue import SLURMCluster
        except ImportError:
            raise LatentInferError("cluster: slurm needs the 'dask-jobqueue' package (pip install dask-jobqueue)") from None
        opts = {str(k): v for k, v in self.options.items() if k not in _SLURM_OWN}
        jobs = self.options.get("jobs", 1)
        if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
            raise ConfigError(f"cluster: slurm: key 'jobs' must be an integer >= 1, got {jobs!r}")
        if self.scale and shutil.which("sbatch") is None:
            raise LatentInferError("cluster: slurm: 'sbatch' not found; run from a SLURM login node, or give cluster: {address: ...}")
        opts.setdefault("cores", 1)
        opts.setdefault("memory", "4GB")
        try:
            self.cluster = SLURMCluster(**opts)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"cluster: slurm: {' '.join(str(exc).split())}") from None
        if self.scale:
            self.cluster.scale(jobs=jobs)
        return self.cluster

    def __exit__(self, *exc):
        if self.cluster is not None:
            self.cluster.close()
        return False


def iter_chunks(n: int, size: int) -> Iterable[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)
