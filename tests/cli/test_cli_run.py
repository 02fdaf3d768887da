"""``latentinfer run`` on a toy bundle and a Gaussian likelihood given by files; the run folder's contents."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import yaml

import latentinfer as li
from latentinfer.cli import main
from conftest import write_config


def test_run_writes_posterior_summary_and_config(toy_run, tmp_path, capsys):
    cfg_path = write_config(tmp_path / "run.yaml", toy_run["config"])
    out = tmp_path / "out"
    assert main(["run", str(cfg_path), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "nuts" and summary["seed"] == 3
    assert set(summary["parameters"]) == {"z0", "z1", "z2"}
    for stats in summary["parameters"].values():
        assert set(stats) == {"mean", "sd", "hdi_3%", "hdi_97%", "r_hat", "ess_bulk", "ess_tail", "mcse_mean"}
    assert {"torch", "pyro-ppl", "arviz", "python"} <= set(summary["versions"])
    assert summary["config"]["inference"]["draws"] == 150 and summary["wall_seconds"] > 0
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["space"] == "latent" and resolved["inference"]["chains"] == 2
    post = li.Posterior.from_netcdf(out / "posterior.nc")
    assert post.num_chains == 2 and post.num_draws == 150
    assert "diverging" in post.idata.sample_stats and "step_size" in post.idata.sample_stats
    assert "toy-data" in post.idata.log_likelihood and "toy-data" in post.idata.observed_data
    pull = (post.mean() - toy_run["z_true"]) / post.samples().std(0)
    assert np.all(np.abs(pull) < 4)
    # the resolved config runs again to the same numbers
    out2 = tmp_path / "out2"
    assert main(["run", str(out / "config.yaml"), "--out", str(out2)]) == 0
    np.testing.assert_array_equal(li.Posterior.from_netcdf(out2 / "posterior.nc").samples(), post.samples())


def test_run_with_emcee_and_vi(toy_run, tmp_path):
    for inf in ({"method": "emcee", "walkers": 12, "warmup": 100, "draws": 100}, {"method": "vi", "steps": 100, "num_samples": 500}):
        cfg = dict(toy_run["config"], inference={**inf, "progress": False})
        out = tmp_path / inf["method"]
        assert main(["run", str(write_config(tmp_path / f"{inf['method']}.yaml", cfg)), "--out", str(out)]) == 0
        assert json.loads((out / "summary.json").read_text())["method"] == inf["method"]


def test_models_and_likelihoods_listing(toy_run, monkeypatch, capsys):
    monkeypatch.setenv("LATENTINFER_MODELS", str(toy_run["dir"]))
    monkeypatch.setenv("LATENTINFER_LIKELIHOODS", str(toy_run["dir"]))
    assert main(["models"]) == 0
    assert "toy-model" in capsys.readouterr().out
    assert main(["likelihoods"]) == 0
    assert "toy-data" in capsys.readouterr().out


def test_console_script_shows_progress(toy_run, tmp_path):
    cfg = dict(toy_run["config"], inference={**toy_run["config"]["inference"], "progress": True, "chains": 1})
    cfg_path = write_config(tmp_path / "p.yaml", cfg)
    proc = subprocess.run([sys.executable, "-m", "latentinfer", "run", str(cfg_path), "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "chain 0" in proc.stderr  # per-chain progress bar
