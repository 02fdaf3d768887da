"""One verdict from the coverage diagnostics: the reading of each built case, and the advice per method.

The cases are Gaussian posteriors over N = 1000 simulated data sets of a 2-d linear-Gaussian problem (exact
posterior: marginal sds 0.2, 0.3, correlation 0.9; L = 200 draws), as in tests/coverage/test_coverage_joint.py:
exact, over-confident (covariance x 0.5), under-confident (x 2), biased (+1 sd), and a wrong joint (the
correlation flipped to -0.9, or dropped). The fixed seed does not pick the outcome: over 200 studies (seeds
1000-1199) each broken case got the overall reading asserted below in >= 199 (the misreads: over- and
under-confident read "biased" once each, at the SBC mean-rank test's 0.5 % false-alarm rate), and the exact
posterior read "calibrated" in 189 (five checks at alpha = 0.01 each). The slow test reruns 50 of them.
"""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from coverage_cases import judge
from truth_models import LinearGaussian, write_toy_project

from latentinfer.cli import main
from latentinfer.coverage.verdict import READINGS, coverage_verdict, next_step

N = 1000
#: The cases read here, by the names of coverage_cases.POSTERIORS ("under-confident": covariance x 2).
CASES = {"exact": "exact", "overconfident": "overconfident", "underconfident": "conservative", "biased": "biased",
         "flipped": "flipped", "independent": "independent"}


def _diagnostics(case, seed=11):
    return judge(CASES[case], N, seed)


@pytest.fixture(scope="module")
def built():
    return {case: _diagnostics(case) for case in CASES}


def test_calibrated(built):
    v = coverage_verdict(built["exact"], "npe")
    assert v["overall"] == "calibrated" and v["acceptable"] and not v["joint_only"]
    assert set(v["readings"].values()) == {"calibrated"} and v["next_step"] is None and v["evidence"] == []


def test_over_confident(built):
    v = coverage_verdict(built["overconfident"], "npe")
    assert v["overall"] == "over-confident" and not v["acceptable"] and not v["joint_only"]
    assert v["readings"] == {
        "sbc": "over-confident",
        "tarp": "miscalibrated",  # prior-box references: fails, side unknown
        "hpd": "over-confident",
        "density_rank": "over-confident",
        "tarp_local": "over-confident",
    }
    assert "more simulations" in v["next_step"] and "ensemble" in v["next_step"] and "importance-weight" in v["next_step"]
    assert "guide" in coverage_verdict(built["overconfident"], "vi")["next_step"]
    assert "R-hat" in coverage_verdict(built["overconfident"], "nuts")["next_step"]
    assert "R-hat" in coverage_verdict(built["overconfident"], "emcee")["next_step"]


def test_under_confident_is_acceptable_and_flagged(built):
    v = coverage_verdict(built["underconfident"], "npe")
    assert v["overall"] == "under-confident" and v["acceptable"]
    assert v["readings"]["sbc"] == v["readings"]["hpd"] == v["readings"]["density_rank"] == "under-confident"
    assert "acceptable, flagged" in v["next_step"]
    # an exact sampler should not be conservative: the advice says where to look
    assert "noisier than the simulator" in coverage_verdict(built["underconfident"], "nuts")["next_step"]


def test_biased(built):
    v = coverage_verdict(built["biased"], "npe")
    # the joint statistics read over-confident (the truth in the outskirts); marginal SBC's mean rank names the bias
    assert v["overall"] == "biased" and not v["acceptable"]
    assert v["readings"]["sbc"] == "biased" and v["readings"]["density_rank"] == "over-confident"
    assert "embedding" in v["next_step"] and "simulator" in v["next_step"]
    assert any("draws above the truth" in e for e in v["evidence"])
    assert "simulator" in coverage_verdict(built["biased"], "nuts")["next_step"]


@pytest.mark.parametrize("case,overall", [("flipped", "over-confident"), ("independent", "miscalibrated")])
def test_wrong_joint(built, case, overall):
    v = coverage_verdict(built[case], "npe")
    assert v["overall"] == overall and v["joint_only"] and v["readings"]["sbc"] == "calibrated"
    assert "marginals are right and the joint is not" in v["next_step"]
    assert "multivariate_normal" in coverage_verdict(built[case], "vi")["next_step"]


EXPECTED = {
    "exact": "calibrated",
    "overconfident": "over-confident",
    "underconfident": "under-confident",
    "biased": "biased",
    "flipped": "over-confident",
    "independent": "miscalibrated",
}


@pytest.mark.slow
def test_readings_hold_across_seeds():
    """50 fresh seeds per case. Misread rates measured above: <= 0.005 per broken case (P(> 3 of 50) < 0.002)
    and 0.055 for the exact case (P(> 9 of 50) < 0.001)."""
    for case, want in EXPECTED.items():
        wrong = sum(coverage_verdict(_diagnostics(case, seed=s), "npe")["overall"] != want for s in range(2000, 2050))
        assert wrong <= (9 if case == "exact" else 3), (case, wrong)


def test_rules_on_hand_built_results():
    ok = {"pass": True, "reading": "calibrated"}
    over = {"pass": False, "reading": "over-confident", "ks_pvalue": 1e-5, "mean_rank": 0.4}
    under = {"pass": False, "reading": "under-confident", "ks_pvalue": 1e-5, "mean_rank": 0.6}
    tarp_fail = {"pass": False, "reading": "ECP below the diagonal (e.g. over-confident)", "ks_pvalue": 1e-4, "atc": -0.1}
    # over-confidence wins over a conflicting under-confident reading
    assert coverage_verdict({"density_rank": over, "tarp_local": under}, "npe")["overall"] == "over-confident"
    # prior-box TARP failing alone has no side; with a sided under-confident reading it confirms it
    assert coverage_verdict({"tarp": tarp_fail, "density_rank": ok}, "npe")["overall"] == "miscalibrated"
    assert coverage_verdict({"tarp": tarp_fail, "density_rank": under}, "npe")["overall"] == "under-confident"
    # an older record with only HPD passing but conservative
    hpd = {"pass": True, "reading": "under-confident", "levels": {"0.5": {"reading": "conservative", "coverage": 0.6}}}
    v = coverage_verdict({"hpd": hpd}, "nuts")
    assert v["overall"] == "under-confident" and v["acceptable"] and not v["joint_only"]
    assert set(READINGS) >= set(v["readings"].values())
    assert next_step("calibrated", "npe") is None


def test_coverage_cli_prints_verdict(tmp_path, capsys):
    """coverage.json carries the joint statistics and the verdict; the CLI prints the verdict and next step."""
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        raw = write_toy_project(tmp_path, LinearGaussian(d=2, n=8, seed=4))
        raw["inference"] = {"method": "nuts"}
        cfg = tmp_path / "config.yaml"
        cfg.write_text(yaml.safe_dump(raw))
        out = tmp_path / "cov"
        args = ["coverage", str(cfg), "--method", "npe", "--n", "20", "--out", str(out), "--simulations", "300", "--draws", "50"]
        assert main(args) == 0
    finally:
        torch.set_num_threads(n_threads)
    text = capsys.readouterr().out
    rec = json.loads((out / "coverage.json").read_text())
    assert {"sbc", "tarp", "hpd", "density_rank", "tarp_local"} == set(rec["diagnostics"])
    v = rec["verdict"]
    assert v["overall"] in READINGS and set(v["readings"]) == set(rec["diagnostics"]) and v["method"] == "npe"
    assert f"verdict: {v['overall']}" in text
    assert ("next step: " in text) == (v["next_step"] is not None)
    assert rec["pass"] == all(d["pass"] for d in rec["diagnostics"].values())
