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
    assert "flagged" not in text and ev["flags"] == [] and ev["details"]["reliable"]

    # a flagged estimate: compare says so, in text and in JSON
    run_c = tmp_path / "run_c"
    flag = "kurtosis 47.0 of the block estimates > 5.4 (Gaussian block means, p = 0.001): a few blocks carry the estimate"
    write_json(run_c / "summary.json", {"evidence": {"ln_z": ev["ln_z"] - 1.0, "ln_z_err": 0.15, "method": "harmonic",
                                                     "flags": [flag]}, "config": summary["config"]})
    assert main(["compare", str(out), str(run_c)]) == 0
    text = capsys.readouterr().out
    assert f"warning: the evidence of {run_c} is flagged ({flag})" in text and "latentinfer evidence" in text
    assert main(["compare", str(out), str(run_c), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["flagged"] == {str(run_c): [flag]}

    # latentinfer evidence: refit from the same draws with other settings; the old entry is kept
    assert main(["evidence", str(out), "--set", "blocks=10", "--set", "seed=3"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("evidence: ln Z = ") and "(harmonic, 8000 draws; no flags)" in text
    new = json.loads((out / "summary.json").read_text())
    assert new["evidence_previous"]["ln_z"] == ev["ln_z"]
    assert new["evidence"]["details"]["blocks_eval"] == 10 and new["evidence"]["details"]["settings"]["seed"] == 3
    assert abs(new["evidence"]["ln_z"] - lg.ln_z()) < max(0.1, 3 * new["evidence"]["ln_z_err"])
    for bad, msg in ((["--set", "bogus=1"], "unknown settings ['bogus']"), (["--set", "epochs"], "expected KEY=VALUE"),
                     (["--set", "epochs=0"], "epochs must be 'auto' or an integer >= 1")):
        assert main(["evidence", str(out), *bad]) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1, err
    assert main(["evidence", str(tmp_path / "norun")]) == 2
    assert "run folder not found" in capsys.readouterr().err


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


def test_config_evidence_settings(tmp_path):
    """``evidence:`` is a method name or a mapping with the method's settings, checked when the config loads."""
    from latentinfer.config import evidence_request
    from latentinfer.errors import ConfigError

    raw = write_toy_project(tmp_path, LinearGaussian(d=2))
    cfg = validate_config({**raw, "evidence": {"method": "harmonic", "epochs": 200, "temperature": 0.7}})
    assert evidence_request(cfg) == ("harmonic", {"epochs": 200, "temperature": 0.7})
    assert evidence_request(validate_config({**raw, "evidence": {"blocks": 20}})) == ("harmonic", {"blocks": 20})
    assert evidence_request(validate_config(raw)) is None
    with pytest.raises(ConfigError, match="evidence harmonic|config: evidence: unknown settings \\['epoch'\\]"):
        validate_config({**raw, "evidence": {"epoch": 200}})
    with pytest.raises(ConfigError, match="config: evidence: temperature must be in \\(0, 1\\)"):
        validate_config({**raw, "evidence": {"method": "harmonic", "temperature": 1.2}})
    with pytest.raises(ConfigError, match="config: evidence: key 'method' must be one of harmonic"):
        validate_config({**raw, "evidence": {"method": "laplace"}})


def test_evidence_flags_of_older_and_newer_records():
    from latentinfer.rundir import evidence_flags, evidence_line

    assert evidence_flags(None) == [] and evidence_flags({"ln_z": 1.0, "ln_z_err": 0.1}) == []
    assert evidence_flags({"ln_z": 1.0, "flags": ["x"]}) == ["x"]
    old = {"ln_z": 1.0, "ln_z_err": 0.1, "details": {"diagnostics_pass": False, "kurtosis": 46.9}}
    assert evidence_flags(old) == ["harmonic's own diagnostics failed (kurtosis 46.9)"]
    assert evidence_line({**old, "method": "harmonic", "n_samples": 4000}) == (
        "evidence: ln Z = 1.000 +- 0.100 (harmonic, 4000 draws; 1 flag(s): take the error as a lower bound)")
