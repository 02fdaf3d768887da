"""``latentinfer coverage``: the study end to end (NPE, small N), restart from checkpoints, bad input.

The default test uses N = 30 (the minimum is 20) so it runs in well under a minute; it checks the files,
the record and the restart, not the calibration claim (which needs N >= 500 for NPE: see the slow tests).
"""

from __future__ import annotations

import json

import pytest
import numpy as np
import torch
import yaml
from truth_models import LinearGaussian, write_toy_project

from latentinfer import LatentInferError
from latentinfer.cli import main


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _config(tmp_path, **inference):
    lg = LinearGaussian(d=2, n=8, seed=4)
    raw = write_toy_project(tmp_path, lg)
    raw["inference"] = {"method": "nuts", **inference}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_coverage_cli_npe_and_restart(tmp_path, capsys):
    cfg = _config(tmp_path)
    out = tmp_path / "cov"
    args = ["coverage", str(cfg), "--method", "npe", "--n", "30", "--out", str(out), "--simulations", "600", "--draws", "50"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "sbc" in text and "warning: N = 30 < 500" in text
    rec = json.loads((out / "coverage.json").read_text())
    assert set(rec["diagnostics"]) == {"sbc", "tarp", "hpd", "density_rank", "tarp_local"}
    for v in rec["diagnostics"].values():
        assert isinstance(v["pass"], bool) and v["thresholds"]
    assert rec["seed"] == 0 and rec["versions"]["sbi"] and rec["config"]["inference"]["method"] == "nuts"
    assert len(rec["curves"]["sbc_ranks"]) == 30
    # NPE's defaults (issue 22): an ensemble of two estimators, trained once and saved with the study
    assert rec["settings"]["ensemble"] == 2 and len(rec["settings"]["epochs"]) == 2
    assert len(list((out / "npe").glob("estimator-*.safetensors"))) == 2
    for png in ("sbc_ranks.png", "tarp.png", "hpd_coverage.png"):
        assert (out / png).stat().st_size > 1000
    ckpts = sorted((out / "checkpoints").glob("run-*.npz"))
    assert len(ckpts) == 30

    # restart: drop 5 finished runs and the result; the rerun redoes only those and gives the same record
    stamps = {p.name: p.stat().st_mtime_ns for p in ckpts}
    for p in ckpts[:5]:
        p.unlink()
    (out / "coverage.json").unlink()
    assert main(args) == 0
    rec2 = json.loads((out / "coverage.json").read_text())
    assert rec2["curves"] == rec["curves"] and rec2["diagnostics"] == rec["diagnostics"]
    again = {p.name: p.stat().st_mtime_ns for p in sorted((out / "checkpoints").glob("run-*.npz"))}
    assert sum(again[k] != stamps[k] for k in stamps) == 5


def test_coverage_bad_input(tmp_path, capsys):
    cfg = _config(tmp_path)
    assert main(["coverage", str(cfg), "--method", "npe", "--n", "10", "--out", str(tmp_path / "x")]) == 2
    assert "coverage needs N >= 20 runs (got 10)" in capsys.readouterr().err
    assert main(["coverage", str(tmp_path / "missing.yaml"), "--method", "vi", "--n", "30", "--out", str(tmp_path / "x")]) == 2
    assert "config file not found" in capsys.readouterr().err
    from latentinfer.config import load_config
    from latentinfer.coverage.study import run_coverage

    with pytest.raises(LatentInferError, match=r"amortized over the whole prior \(rounds: 1\)"):
        run_coverage(load_config(cfg), "npe", 30, tmp_path / "y", sbi_settings={"rounds": 3})


@pytest.mark.slow
def test_coverage_vi_nuts_small(tmp_path):
    """VI and NUTS go through the parallel, checkpointed path (small N: exercises code, not a claim)."""
    from latentinfer.config import load_config
    from latentinfer.coverage.study import run_coverage

    cfg = load_config(_config(tmp_path, steps=400, num_samples=400, chains=1, warmup=200, draws=400))
    for method in ("vi", "nuts"):
        rec = run_coverage(cfg, method, 20, tmp_path / method, workers=2, num_draws=50)
        assert rec["n"] == 20 and set(rec["diagnostics"]) == {"sbc", "tarp", "hpd", "density_rank", "tarp_local"}


@pytest.mark.slow
@pytest.mark.parametrize("method,n", [("npe", 500), ("vi", 500), ("nuts", 100)])
def test_real_coverage_runs(tmp_path, method, n):
    """The real claim on the linear-Gaussian toy: every diagnostic passes with the issue's N."""
    from latentinfer.config import load_config
    from latentinfer.coverage.study import run_coverage

    cfg = load_config(_config(tmp_path, steps=1500, num_samples=1000, chains=2, warmup=300, draws=500))
    rec = run_coverage(cfg, method, n, tmp_path / method, num_draws=100)
    assert rec["pass"], rec["diagnostics"]


def test_coverage_with_batched_chees_passes_on_a_linear_gaussian_model(tmp_path, capsys):
    """``--method chees``: the N data sets go through the batched sampler together (groups of 4 chains, one group per
    data set, each with its own Laplace start and adaptation). The posteriors are exact up to MCMC error, so every
    diagnostic passes at N = 100; a restart reuses the finished batch (same record)."""
    cfg = _config(tmp_path)
    out = tmp_path / "cov"
    args = ["coverage", str(cfg), "--method", "chees", "--n", "100", "--out", str(out), "--draws", "100"]
    assert main(args) == 0
    rec = json.loads((out / "coverage.json").read_text())
    assert rec["settings"]["chains"] == 4 and rec["settings"]["batch"] == 100
    failed = {k: v for k, v in rec["diagnostics"].items() if not v["pass"]}
    assert not failed, failed
    assert rec["pass"]
    assert main(args) == 0
    again = json.loads((out / "coverage.json").read_text())
    assert again["curves"] == rec["curves"]


def test_run_says_whether_its_configuration_passed_a_coverage_study(tmp_path, capsys):
    """A study made with ``--out RUN/coverage`` (or named by the config key ``coverage:``) is found by ``run`` when its
    fingerprint (model, likelihoods, priors, method and its settings) matches: summary.json and the command say whether
    it passed, and the report shows it. Changed settings do not match."""
    from latentinfer.rundir import load_run
    from latentinfer.report import write_report

    cfg = _config(tmp_path, num_simulations=600, num_samples=200)
    raw = yaml.safe_load(cfg.read_text())
    raw["inference"]["method"] = "npe"
    cfg.write_text(yaml.safe_dump(raw))
    run = tmp_path / "run"
    assert main(["coverage", str(cfg), "--method", "npe", "--n", "30", "--out", str(run / "coverage"), "--simulations", "600", "--draws", "50"]) == 0
    capsys.readouterr()
    other_sims = tmp_path / "cov900"  # a study with other simulations than the config's does not speak for it
    assert main(["coverage", str(cfg), "--method", "npe", "--n", "30", "--out", str(other_sims), "--simulations", "900", "--draws", "50"]) == 0
    raw_other = dict(raw, coverage=str(other_sims))
    cfg_other = tmp_path / "other.yaml"
    cfg_other.write_text(yaml.safe_dump(raw_other))
    assert main(["run", str(cfg_other), "--out", str(tmp_path / "o9"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "o9" / "summary.json").read_text())["coverage"]["study"] is None
    capsys.readouterr()
    assert main(["run", str(cfg), "--out", str(run), "--no-progress"]) == 0
    text = capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    cov = summary["coverage"]
    assert cov["study"] == str(run / "coverage") and cov["n"] == 30 and isinstance(cov["pass"], bool)
    assert "coverage: this configuration" in text
    page = write_report([run], tmp_path / "r.html").read_text()
    assert "a coverage study: N = 30" in page
    # more draws per run do not change the claim; fewer simulations do
    raw["inference"]["num_samples"] = 300
    raw["coverage"] = str(run / "coverage")  # the config names the study
    cfg.write_text(yaml.safe_dump(raw))
    assert main(["run", str(cfg), "--out", str(tmp_path / "more"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "more" / "summary.json").read_text())["coverage"]["study"] == str(run / "coverage")
    raw["inference"]["num_simulations"] = 500
    cfg.write_text(yaml.safe_dump(raw))  # still naming the study, which no longer matches
    capsys.readouterr()
    assert main(["run", str(cfg), "--out", str(tmp_path / "third"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "third" / "summary.json").read_text())["coverage"]["study"] is None
    assert "coverage: no coverage study of this configuration with method npe" in capsys.readouterr().out


def test_coverage_bad_input_is_one_line_with_exit_code_2(tmp_path, capsys, monkeypatch):
    """Issue 22's bad input for ``coverage``: a method that is not registered, a likelihood without ``simulate``,
    importance weighting for a method other than NPE or on a likelihood without a log-density: one line, exit 2,
    before anything is simulated or trained (no output folder is made)."""
    import latentinfer as li

    cfg = _config(tmp_path)

    def refused(args, text):
        capsys.readouterr()
        assert main(["coverage", str(cfg), *args, "--n", "30", "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and text in err, err
        assert not (tmp_path / "x").exists()

    # every registered method can be covered (emcee included, tests/layout); an unknown one cannot
    refused(["--method", "gibbs"], "coverage: --method must be one of chees, emcee, nle, npe, nre, nuts, vi, got 'gibbs'")
    refused(["--method", "vi", "--importance"], "importance weighting is for NPE proposals (--method npe), got --method vi")
    monkeypatch.setattr(li.GaussianLikelihood, "tractable", False, raising=False)
    refused(["--method", "npe", "--importance"], "importance sampling needs each likelihood's log-density")
    monkeypatch.setattr(li.GaussianLikelihood, "can_simulate", False, raising=False)
    refused(["--method", "npe"], "cannot simulate data (can_simulate=False)")


def test_coverage_of_importance_weighted_npe_passes_on_a_linear_gaussian_model(tmp_path, capsys):
    """``--importance``: each data set's NPE draws are weighted by the program's own density (PSIS) and resampled.
    A deliberately small NPE (600 simulations, 2 transforms) weighted so is exact up to Monte-Carlo error, so every
    diagnostic passes at N = 100; k-hat and ESS per run are summarised in the record."""
    cfg = _config(tmp_path)
    out = tmp_path / "cov"
    assert main(["coverage", str(cfg), "--method", "npe", "--importance", "--n", "100", "--out", str(out), "--simulations", "600", "--draws", "50"]) == 0
    rec = json.loads((out / "coverage.json").read_text())
    s = rec["settings"]
    assert s["importance"] is True and s["num_proposals"] == 1000
    assert s["fraction_khat_below_0_7"] >= 0.95 and s["ess_median"] >= 50, s
    failed = {k: v for k, v in rec["diagnostics"].items() if not v["pass"]}
    assert not failed, failed


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="issue 22 goal not met yet: with ensemble 2 local TARP reads under-confident (ATC +0.046 > 0.039)")
def test_default_npe_on_the_planck_demo_passes_every_check_at_n_500(tmp_path, capsys):
    """Issue 22's goal: ``latentinfer coverage examples/demo.yaml --method npe --n 500`` with NPE's defaults passes
    SBC, TARP, HPD and the two joint checks (about 1.5 min on one core; seed 0, so the numbers are reproducible).
    Strict xfail: SBC, TARP, HPD and the density rank pass with ``ensemble: 2``, local TARP does not; when defaults
    that pass everything land, this reports XPASS (a failure) and the marker goes."""
    from pathlib import Path

    demo = Path(__file__).parents[1] / "examples" / "demo.yaml"
    out = tmp_path / "cov"
    assert main(["coverage", str(demo), "--method", "npe", "--n", "500", "--out", str(out)]) == 0
    rec = json.loads((out / "coverage.json").read_text())
    failed = {k: v.get("reading") for k, v in rec["diagnostics"].items() if not v["pass"]}
    assert not failed and rec["verdict"]["overall"] == "calibrated", (failed, rec["curves"]["hpd"])


def test_run_records_follow_the_program_parameter_order():
    """A posterior lists its variables in arviz's (sorted) order; a coverage record must hold draws in the program's
    order, the order of theta. Built to fail: latents named so that sorting reverses them (the Planck demo's
    A_planck sorts before z1: before the fix, every importance-weighted NPE study read 'biased', HPD 1.0)."""
    import latentinfer as li
    from latentinfer.coverage.study import _task_method

    from conftest import make_linear_gaussian

    lg = make_linear_gaussian(dim=2, n=20, seed=4)
    lin = torch.nn.Linear(2, lg.A.shape[0]).double()
    with torch.no_grad():
        lin.weight.copy_(lg.A)
        lin.bias.copy_(lg.b)
    an = li.Analysis(li.ForwardModel.from_module(lin, latent_names=["zz_first", "aa_second"]), lg.likelihood())
    assert an.parameter_names == ["zz_first", "aa_second"]
    mu, S = lg.posterior()
    theta = np.array([0.3, -0.2])
    rec = _task_method((an, "vi", {"steps": 300, "progress": False, "num_samples": 2000}, {"data": lg.y.numpy()}, theta, 0, 2000))
    assert np.all(np.abs(rec["samples"].mean(0) - mu) < 0.2 * np.sqrt(np.diag(S)))


def test_vi_study_runs_data_sets_as_a_batch(tmp_path):
    """A VI study with a Gaussian guide goes through the batched path (one task for up to VI_BATCH data sets) and, on
    a linear-Gaussian model whose posteriors a full-rank Gaussian represents exactly, reads calibrated."""
    from latentinfer.coverage.study import VI_BATCH, run_coverage

    from conftest import make_linear_gaussian

    lg = make_linear_gaussian(dim=3, n=20, seed=1)
    rec = run_coverage({"inference": {"method": "vi", "steps": 100}}, "vi", 20, tmp_path / "cov", analysis=lg.analysis(),
                       num_draws=50, workers=1)
    assert rec["settings"]["engine"] == "batched" and rec["settings"]["batch"] == VI_BATCH
    assert rec["settings"]["steps"] == 100 and rec["settings"]["guide"] == "multivariate_normal"
    assert sorted(p.name for p in (tmp_path / "cov" / "checkpoints").glob("*.json")) == ["vi-00000-00020.json"]
    assert rec["verdict"]["overall"] == "calibrated"
