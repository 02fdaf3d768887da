"""Faults: a study of independent inference tasks on a real Dask cluster survives the loss of a worker.

The test starts ``dask scheduler`` and two ``dask worker`` processes (``--nthreads 1``, no nanny, no dashboard) on
127.0.0.1 with free ports, runs the study as a subprocess (``latentinfer run CONFIG --scheduler ...``: six NUTS
chains of a linear-Gaussian model, each chain one task), SIGKILLs a worker while it is processing a chain, and
checks that the study completes with every chain and exactly the numbers of a local run. The scheduler resubmits
the lost tasks to the surviving worker; mid-chain checkpoints written by the dead worker let it continue them.

After the merge, ``STUDY`` can be swapped for ``latentinfer coverage CONFIG --n ... --scheduler ...``.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from latentinfer.config import load_config
from latentinfer.posterior import Posterior
from latentinfer.runner import checkpoint_dir, run_config
from scale_fixtures import PYTHON, env, free_port, make_linear_problem, write_config

pytest.importorskip("distributed")

SETTINGS = dict(chains=6, warmup=30, draws=100, seed=21, jit=False)


def STUDY(cfg_path: Path, out: Path, scheduler: str) -> list[str]:
    """The command line of the study run on the cluster."""
    return [PYTHON, "-m", "latentinfer", "run", str(cfg_path), "--out", str(out), "--scheduler", scheduler, "--no-progress"]


def _stop(*procs: subprocess.Popen) -> None:
    """SIGTERM all, then SIGKILL whatever still runs after 5 s."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + 5
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


@pytest.fixture
def cluster(tmp_path):
    """A scheduler and two single-threaded workers on loopback; every process is stopped afterwards."""
    from distributed import Client

    procs: list[subprocess.Popen] = []
    client = None
    logs = tmp_path / "dask-logs"
    logs.mkdir()

    def start(name, args):
        f = open(logs / f"{name}.log", "wb")
        p = subprocess.Popen([PYTHON, "-m", "dask", *args], env=env(LATENTINFER_CHECKPOINT_SECONDS=0.1), stdout=f, stderr=subprocess.STDOUT, cwd=tmp_path)
        f.close()
        procs.append(p)
        return p

    try:
        port = free_port()
        address = f"tcp://127.0.0.1:{port}"
        start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"])
        workers = {}
        for i in range(2):
            wport = free_port()
            waddr = f"tcp://127.0.0.1:{wport}"
            workers[waddr] = start(
                f"worker{i}",
                ["worker", address, "--host", "127.0.0.1", "--worker-port", str(wport), "--nthreads", "1",
                 "--no-nanny", "--no-dashboard", "--local-directory", str(tmp_path / f"w{i}"),
                 "--preload", "latentinfer.methods.nuts"],  # import torch/pyro before registering
            )
        client = Client(address, timeout="30s", set_as_default=False)
        client.wait_for_workers(2, timeout=90)
        yield {"address": address, "workers": workers, "client": client, "logs": logs}
    finally:
        if client is not None:
            client.close()
        _stop(*reversed(procs))


def test_study_survives_a_killed_worker_with_identical_results(cluster, tmp_path):
    problem = make_linear_problem(tmp_path)
    cfg_path = write_config(tmp_path / "study.yaml", problem, **SETTINGS)
    cfg = load_config(cfg_path)
    out = tmp_path / "on-dask"
    ckpt = checkpoint_dir(cfg, out)

    study = subprocess.Popen(STUDY(cfg_path, out, cluster["address"]), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # wait until a chain has finished (workers are warm) and both workers are busy with more, then kill one
        client, killed, lost = cluster["client"], None, []
        t0 = time.monotonic()
        while killed is None:
            assert study.poll() is None, f"study ended before a worker could be killed: {study.communicate()[1].decode()[-2000:]}"
            assert time.monotonic() - t0 < 90, "no chain finished on the cluster in time"
            finished = list(ckpt.glob("nuts-chain-*.json")) if ckpt.is_dir() else []
            if finished and len(finished) <= SETTINGS["chains"] - 3:
                processing = client.processing()
                busy = [w for w, keys in processing.items() if keys and w in cluster["workers"]]
                if busy:
                    killed, lost = busy[0], list(processing[busy[0]])
                    cluster["workers"][killed].send_signal(signal.SIGKILL)
            time.sleep(0.05)
        cluster["workers"][killed].wait(timeout=10)
        assert lost, "the killed worker held no task"
        _, err = study.communicate(timeout=60)
        assert study.returncode == 0, err.decode()[-3000:]
    finally:
        _stop(study)
        if study.stderr is not None:
            study.stderr.close()
    assert len(client.scheduler_info()["workers"]) == 1  # the study really finished on one worker

    on_dask = Posterior.from_netcdf(out / "posterior.nc")
    local = run_config(cfg, tmp_path / "local")["posterior"]
    assert on_dask.num_chains == SETTINGS["chains"] and on_dask.num_draws == SETTINGS["draws"]
    for group in ("posterior", "sample_stats", "log_likelihood"):
        for name, arr in getattr(local.idata, group).data_vars.items():
            np.testing.assert_array_equal(getattr(on_dask.idata, group)[name].values, arr.values, err_msg=f"{group}/{name}")


def test_unreachable_scheduler_is_one_clear_error(tmp_path, capsys):
    import dask

    from latentinfer.cli import main

    problem = make_linear_problem(tmp_path)
    cfg_path = write_config(tmp_path / "study.yaml", problem, chains=1, warmup=5, draws=5)
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code = main(["run", str(cfg_path), "--out", str(tmp_path / "o"), "--scheduler", address])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1 and address in lines[0], lines


def test_bad_cluster_config_is_one_clear_error(tmp_path, capsys):
    from latentinfer.cli import main

    problem = make_linear_problem(tmp_path)
    for cluster, word in (({"address": "localhost"}, "address"), ({"adress": "tcp://x:1"}, "adress"), ({"slurm": 3}, "slurm")):
        cfg_path = write_config(tmp_path / "c.yaml", problem)
        text = cfg_path.read_text() + f"cluster: {cluster!r}\n".replace("'", '"')
        cfg_path.write_text(text)
        assert main(["run", str(cfg_path), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "cluster" in err[0] and word in err[0], err


@pytest.mark.slow
def test_coverage_study_survives_a_killed_worker_with_identical_results(cluster, tmp_path):
    """The issue's case: a small coverage study (NUTS on 20 simulated data sets) through the two workers, one
    SIGKILLed mid-study; every run finishes and each run's result equals that of a local study."""
    problem = make_linear_problem(tmp_path)
    cfg_path = write_config(tmp_path / "cov.yaml", problem, chains=1, warmup=30, draws=60, seed=3, jit=False)
    base = [PYTHON, "-m", "latentinfer", "coverage", str(cfg_path), "--method", "nuts", "--n", "20", "--seed", "4", "--draws", "50"]
    out = tmp_path / "cov-dask"
    study = subprocess.Popen(base + ["--out", str(out), "--scheduler", cluster["address"]], env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        client, killed = cluster["client"], None
        t0 = time.monotonic()
        while killed is None:
            assert study.poll() is None, f"study ended before a worker could be killed: {study.communicate()[1].decode()[-2000:]}"
            assert time.monotonic() - t0 < 120, "no coverage run finished on the cluster in time"
            done = list((out / "checkpoints").glob("*.npz")) if (out / "checkpoints").is_dir() else []
            if 2 <= len(done) <= 12:
                busy = [w for w, keys in client.processing().items() if keys and w in cluster["workers"]]
                if busy:
                    killed = busy[0]
                    cluster["workers"][killed].send_signal(signal.SIGKILL)
            time.sleep(0.05)
        _, err = study.communicate(timeout=300)
        assert study.returncode == 0, err.decode()[-3000:]
    finally:
        _stop(study)
        if study.stderr is not None:
            study.stderr.close()
    local = subprocess.run(base + ["--out", str(tmp_path / "cov-local"), "--workers", "1"], env=env(), capture_output=True, timeout=600)
    assert local.returncode == 0, local.stderr.decode()[-2000:]
    ref = sorted((tmp_path / "cov-local" / "checkpoints").glob("*.npz"))
    assert len(ref) == 20
    for f in ref:
        g = out / "checkpoints" / f.name
        with np.load(f) as x, np.load(g) as y:
            for k in x.files:
                np.testing.assert_array_equal(x[k], y[k], err_msg=f"{f.name}/{k}")
