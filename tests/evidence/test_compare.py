"""``evidence: harmonic`` in a run config and ``latentinfer compare``."""

from __future__ import annotations

import json

import pytest
from truth_models import LinearGaussian, write_toy_project

from latentinfer.cli import main
from latentinfer.config import validate_config
from latentinfer.io import write_json
from latentinfer.runner import run_config


def test_run_records_evidence_and_compare(tmp_path, capsys):
    lg = LinearGaussian(d=2, n=12, seed=3)
    raw = write_toy_project(tmp_path, lg)
    raw.update(evidence="harmonic", inference={"method": "emcee", "walkers": 16, "warmup": 300, "draws": 500, "seed": 0, "progress": False})
    cfg = validate_config(raw)
    out = tmp_path / "run_a"
    run_config(cfg, out)
    summary = json.loads((out / "summary.json").read_text())
    ev = summary["evidence"]
    assert ev["method"] == "harmonic"
    # emcee walkers are correlated chains: allow 0.1 (issue bound) or 3 sigma, whichever is larger
    assert abs(ev["ln_z"] - lg.ln_z()) < max(0.1, 3 * ev["ln_z_err"]), (ev, lg.ln_z())

    # a second run folder with a hand-made evidence record: B is worse by 3 in ln Z
    run_b = tmp_path / "run_b"
    write_json(run_b / "summary.json", {"evidence": {"ln_z": ev["ln_z"] - 3.0, "ln_z_err": 0.04, "method": "harmonic"}, "config": summary["config"]})
    assert main(["compare", str(out), str(run_b), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["ln_b"] == pytest.approx(3.0)
    assert rec["ln_b_err"] == pytest.approx((ev["ln_z_err"] ** 2 + 0.04**2) ** 0.5)
    assert rec["jeffreys"].startswith("moderate evidence for run_a") and rec["warning"] is None
    assert main(["compare", str(out), str(run_b)]) == 0
    text = capsys.readouterr().out
    assert "ln B = ln Z_A - ln Z_B = 3.000" in text and "Jeffreys scale: moderate evidence for run_a" in text


def test_compare_bad_input(tmp_path, capsys):
    (tmp_path / "norun").mkdir()
    assert main(["compare", str(tmp_path / "norun"), str(tmp_path / "norun")]) == 2
    assert "missing file: " in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "summary.json").write_text("{not json")
    assert main(["compare", str(tmp_path / "bad"), str(tmp_path / "bad")]) == 2
    assert "corrupt file " in capsys.readouterr().err
    write_json(tmp_path / "noev" / "summary.json", {"method": "nuts"})
    assert main(["compare", str(tmp_path / "noev"), str(tmp_path / "noev")]) == 2
    assert "has no evidence; rerun with 'evidence: harmonic'" in capsys.readouterr().err


def test_config_rejects_unknown_evidence_method(tmp_path):
    from latentinfer.errors import ConfigError

    raw = write_toy_project(tmp_path, LinearGaussian(d=2))
    with pytest.raises(ConfigError, match="key 'evidence' must be one of harmonic"):
        validate_config({**raw, "evidence": "laplace"})
