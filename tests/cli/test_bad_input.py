"""Bad input: one clear line naming the problem, exit code 2, no traceback."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import latentinfer as li
from latentinfer.cli import main
from latentinfer.errors import DataError, LatentInferError
from conftest import write_config, write_gaussian_likelihood


def _run_cli(cfg, tmp_path, capsys):
    code = main(["run", str(write_config(tmp_path / "bad.yaml", cfg)), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda c, d: c.update(model="no-such-model"), "unknown model 'no-such-model'"),
        (lambda c, d: c.update(likelihoods=["no-such-likelihood"]), "unknown likelihood 'no-such-likelihood'"),
        (lambda c, d: c.update(priors={"H0": {"normal": [67, 1]}}), "unknown parameter 'H0'"),
        (lambda c, d: c.update(colour="blue"), "unknown key 'colour'"),
        (lambda c, d: c["inference"].update(chains="four"), "key 'chains' must be int"),
        (lambda c, d: c["inference"].update(method="gibbs"), "key 'method' must be one of"),
        (lambda c, d: c["inference"].update(init="map"), "key 'init' must be one of laplace, prior"),
        (lambda c, d: c.update(priors={"z0": {"truncnormal": [0, 1, 2, 1]}}), "truncnormal needs low < high"),
        (lambda c, d: c.update(priors={"z0": {"normal": [0, -1]}}), "sd must be > 0"),
    ],
)
def test_bad_config(toy_run, tmp_path, capsys, mutate, needle):
    cfg = {**toy_run["config"], "inference": dict(toy_run["config"]["inference"])}
    mutate(cfg, tmp_path)
    code, err = _run_cli(cfg, tmp_path, capsys)
    assert code == 2
    assert needle in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize(
    "data, cov, needle",
    [
        ("nan", None, "NaN/inf"),
        ("inf", None, "NaN/inf"),
        (None, "asym", "not symmetric"),
        (None, "notpd", "not positive definite"),
        ("short", None, "has length 40 but the data has 39"),
    ],
)
def test_bad_data_files(toy_run, tmp_path, capsys, data, cov, needle):
    folder = toy_run["likelihood"]
    y = np.loadtxt(folder / "data.txt")
    C = np.loadtxt(folder / "cov.txt")
    if data == "nan":
        y[3] = np.nan
    elif data == "inf":
        y[5] = np.inf
    elif data == "short":
        y, C = y[:-1], C[:-1, :-1]
    if cov == "asym":
        C[0, 1] += 1e-3
    elif cov == "notpd":
        C[0, 0] = -1.0
    bad = write_gaussian_likelihood(tmp_path / "bad-lik", y, C)
    code, err = _run_cli({**toy_run["config"], "likelihoods": [str(bad)]}, tmp_path, capsys)
    assert code == 2 and needle in err and len(err.splitlines()) == 1, err


def test_missing_config_file(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.yaml"), "--out", str(tmp_path)]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_not_yaml(tmp_path, capsys):
    p = tmp_path / "x.yaml"
    p.write_text("model: [unclosed\n")
    assert main(["run", str(p), "--out", str(tmp_path)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_no_traceback_in_a_real_process(toy_run, tmp_path):
    cfg = {**toy_run["config"], "model": "no-such-model"}
    proc = subprocess.run(
        [sys.executable, "-m", "latentinfer", "run", str(write_config(tmp_path / "c.yaml", cfg)), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.strip().startswith("latentinfer: error: unknown model")


def test_python_api_errors_are_latentinfer_errors():
    with pytest.raises(DataError, match="NaN"):
        li.GaussianLikelihood(torch.tensor([1.0, float("nan")]), torch.eye(2))
    with pytest.raises(DataError, match="square"):
        li.GaussianLikelihood(torch.zeros(2), torch.ones(2))
    fm = li.ForwardModel.from_module(torch.nn.Linear(2, 3), latent_names=["a", "b"])
    with pytest.raises(LatentInferError, match="length 3 but the data has 4"):
        li.Analysis(fm, li.GaussianLikelihood(torch.zeros(4), torch.eye(4)))
    with pytest.raises(LatentInferError, match="output 'missing'|needs outputs"):
        li.Analysis(fm, li.GaussianLikelihood(torch.zeros(3), torch.eye(3), output="missing"))
