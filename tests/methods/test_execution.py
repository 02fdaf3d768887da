"""The execution backend: choosing it from config/command line, per-task checkpoints, SLURM job scripts."""

from __future__ import annotations

import argparse
import importlib.util
import shutil

import numpy as np
import pytest

from latentinfer import LatentInferError
from latentinfer.config import validate_config
from latentinfer.errors import ConfigError
from latentinfer.execution import add_backend_arguments, backend_from, map_tasks, slurm_cluster


def _args(*argv):
    p = argparse.ArgumentParser()
    add_backend_arguments(p)
    return p.parse_args(list(argv))


def test_backend_from_config_and_command_line():
    cfg = {"cluster": {"address": "tcp://10.1.2.3:8786"}}
    assert backend_from(None) == {"backend": "local"}
    assert backend_from({"cluster": None}) == {"backend": "local"}
    assert backend_from(_args()) == {"backend": "local"}
    assert backend_from(cfg) == {"backend": "dask", "scheduler": "tcp://10.1.2.3:8786"}
    assert backend_from(cfg, _args("--scheduler", "tcp://127.0.0.1:1")) == {"backend": "dask", "scheduler": "tcp://127.0.0.1:1"}
    assert backend_from(cfg, scheduler="tls://h:2")["scheduler"] == "tls://h:2"
    assert backend_from({"cluster": {"slurm": {"cores": 4, "jobs": 3}}}) == {"backend": "slurm", "cluster": {"cores": 4, "jobs": 3}}


@pytest.mark.parametrize(
    "cluster, word",
    [({"address": "127.0.0.1:8786"}, "address"), ({"address": 8786}, "address"), ({"slurm": "big"}, "slurm"),
     ({"address": "tcp://h:1", "slurm": {}}, "either"), ({"adress": "tcp://h:1"}, "adress"), (["tcp://h:1"], "cluster")],
)
def test_bad_cluster_blocks_fail_at_load(cluster, word):
    with pytest.raises(ConfigError, match=word):
        validate_config({"model": "m", "likelihoods": ["l"], "cluster": cluster})


def test_results_are_checkpointed_as_they_arrive_and_reused(tmp_path):
    calls = []

    def fn(task):
        calls.append(task)
        if task == 2 and len(calls) < 4:
            raise KeyboardInterrupt  # the user stops the job at the third task
        return {"x": np.arange(task + 1, dtype=float), "seed": task}

    with pytest.raises(KeyboardInterrupt):
        map_tasks(fn, [0, 1, 2, 3], workers=1, checkpoint_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["task-00000.json", "task-00001.json"]
    out = map_tasks(fn, [0, 1, 2, 3], workers=1, checkpoint_dir=tmp_path)
    assert calls == [0, 1, 2, 2, 3]  # finished tasks were not run again
    assert [r["seed"] for r in out] == [0, 1, 2, 3]
    np.testing.assert_array_equal(out[3]["x"], np.arange(4.0))


def test_unknown_backend_is_an_error():
    with pytest.raises(LatentInferError, match="backend"):
        map_tasks(abs, [1], backend="kubernetes")
    with pytest.raises(LatentInferError, match="scheduler"):
        map_tasks(abs, [1], backend="dask")


@pytest.mark.skipif(importlib.util.find_spec("dask_jobqueue") is None, reason="dask-jobqueue is not installed")
def test_slurm_block_becomes_a_job_script():
    opts = backend_from({"cluster": {"slurm": {
        "cores": 2, "memory": "3GB", "walltime": "00:10:00", "queue": "short", "account": "cosmo", "jobs": 4,
        "job_extra_directives": ["--constraint=cpu"], "scheduler_options": {"host": "127.0.0.1", "dashboard_address": ":0"},
    }}})["cluster"]
    with slurm_cluster(opts, scale=False) as cluster:  # builds the job script, submits nothing
        script = cluster.job_script()
    for line in ("#SBATCH -p short", "#SBATCH -A cosmo", "#SBATCH --cpus-per-task=2", "#SBATCH -t 00:10:00", "#SBATCH --constraint=cpu"):
        assert line in script
    assert "tcp://127.0.0.1:" in script
    if shutil.which("sbatch") is None:
        with pytest.raises(LatentInferError, match="sbatch"):
            map_tasks(abs, [1], backend="slurm", cluster=opts)
    with pytest.raises(ConfigError, match="jobs"):
        with slurm_cluster({"jobs": 0}, scale=False):
            pass
