"""The HTML report: self-contained, right numbers (PPC chi2 against numpy), flags that fire on a case built to
fail, optional pieces (coverage, tension, interpretation), and clear errors for missing or corrupt files."""

from __future__ import annotations

import base64
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _linear_models import run_config, split_problem, write_exact_run, write_problem_files  # noqa: E402
from latentinfer.cli import main  # noqa: E402
from latentinfer.errors import LatentInferError  # noqa: E402
from latentinfer.posterior import Posterior  # noqa: E402
from latentinfer.report import build_report, check_convergence, write_report  # noqa: E402
from latentinfer.report.ppc import check_ppc, run_ppc  # noqa: E402


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    prob = split_problem(d=3, n=80, seed=5)
    model, liks = write_problem_files(root, prob)
    out = {"root": root, "prob": prob, "model": model, "liks": liks}
    for key, ls in (("A", [liks["A"]]), ("AB", [liks["A"], liks["B"]])):
        cfg = run_config(model, ls)
        cfg["name"] = f"run{key}"
        out[key] = write_exact_run(cfg, root / f"run{key}", n=2000)
    return out


def _self_contained(text: str) -> None:
    assert "<script" not in text.lower()
    refs = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert refs and all(r.startswith(("data:", "#")) for r in refs), [r[:40] for r in refs if not r.startswith(("data:", "#"))]
    for uri in re.findall(r'src="data:image/png;base64,([^"]+)"', text):
        assert base64.b64decode(uri).startswith(b"\x89PNG")


def test_report_of_a_run_is_self_contained_and_complete(runs, tmp_path):
    out = write_report([runs["root"] / "runA", runs["root"] / "runAB"], tmp_path / "report.html")
    text = out.read_text()
    _self_contained(text)
    for needle in ("Parameters and convergence", "R-hat", "ESS bulk", "MCSE", "Trace", "Rank", "Corner", "Posterior predictive checks", "Provenance", "sha256", "Overview", "Evidence"):
        assert needle in text, needle
    assert text.count("<img") >= 2 * 4  # trace, rank, corner and a PPC figure per run (AB has two PPC figures)
    # data files of the likelihood folders with their sha256
    from latentinfer.io import sha256_file

    assert sha256_file(runs["liks"]["A"] / "data.txt") in text
    assert "converged: all R-hat" in text


def test_ppc_numbers_match_an_independent_computation(runs):
    A = runs["A"]
    an, post = A["analysis"], A["post"]
    ppc = run_ppc(an, post, n_draws=100, seed=0)["likA"]
    lp = post.idata.sample_stats["lp"].values.reshape(-1)
    best = int(np.argmax(lp))
    z = post.samples()[best]
    prob = runs["prob"]
    sl = prob["parts"]["A"]
    r = prob["y"][sl] - (prob["M"][sl] @ z + prob["c"][sl])
    chi2 = float(((r / prob["sig"][sl]) ** 2).sum())
    assert ppc["chi2_best_fit"] == pytest.approx(chi2, rel=1e-5)  # float32 bundle weights
    assert ppc["pte_best_fit"] == pytest.approx(stats.chi2.sf(chi2, 40), rel=1e-4)
    assert 0.01 < ppc["ppc_p_value"] < 0.99 and check_ppc({"likA": ppc})["likA"]["ok"]


def test_ppc_flags_a_bad_fit_and_groups_by_spectrum_and_ell():
    from latentinfer import Analysis, GaussianLikelihood
    from _linear_models import linear_forward, posterior_from_exact

    ell = np.tile(np.arange(30.0, 2530.0, 100.0), 2)
    spectrum = np.array(["TT"] * 25 + ["TE"] * 25)
    M = np.random.default_rng(0).normal(size=(50, 2))
    data = M @ np.array([0.3, -0.2]) + 6.0 * (spectrum == "TE")  # TE is off by 6 sigma everywhere
    lik = GaussianLikelihood(data, np.eye(50), name="cmb", meta={"ell": ell, "spectrum": spectrum})
    an = Analysis(linear_forward(M, np.zeros(50)), lik)
    post = posterior_from_exact(an, np.array([0.3, -0.2]), 0.001 * np.eye(2), n=400)
    ppc = run_ppc(an, post, n_draws=50)["cmb"]
    assert ppc["spectrum"][:1] == ["TT"] and ppc["ell"][0] == 30.0
    res = np.asarray(ppc["residual_sigma"])
    assert abs(res[spectrum == "TT"]).max() < 1.0 and res[spectrum == "TE"].min() > 5.0
    blocks = ppc["chi2_by_spectrum"]
    assert blocks["TT"]["n"] == 25 and blocks["TT"]["pte"] > 0.01 and blocks["TE"]["pte"] < 1e-10
    verdict = check_ppc({"cmb": ppc})["cmb"]
    assert not verdict["ok"] and any("PTE" in r for r in verdict["reasons"])
    from latentinfer.report.ppc import plot_ppc

    fig = plot_ppc("cmb", ppc)
    assert len(fig.axes) == 4  # (data, residual) x (TT, TE)
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_convergence_flags_fire_on_stuck_chains(tmp_path):
    rng = np.random.default_rng(0)
    good = rng.normal(size=(4, 500))
    stuck = np.stack([rng.normal(m, 0.1, 500) for m in (0.0, 0.0, 1.0, 1.0)])  # chains disagree: R-hat >> 1.01
    sticky = np.cumsum(rng.normal(size=(4, 500)), 1) * 0.01  # random walk: tiny ESS
    div = np.zeros((4, 500), dtype=bool)
    div[0, :3] = True
    post = Posterior.from_arrays({"good": good, "stuck": stuck, "sticky": sticky}, sample_stats={"diverging": div})
    verdict = check_convergence(post.summary(), post.divergences())
    assert not verdict["ok"] and verdict["divergences"] == 3
    assert verdict["parameters"]["good"] == []
    assert any("R-hat" in r for r in verdict["parameters"]["stuck"])
    assert any("ess_bulk" in r for r in verdict["parameters"]["sticky"])
    # and the report shows it
    from latentinfer.report import sections

    class R:
        posterior = post

    html = sections.parameters(R)
    assert "do not trust yet" in html and "3 divergent transitions" in html and 'class="bad"' in html


def test_optional_pieces_coverage_tension_interpretation(runs, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs["root"] / "runA", run)
    (run / "coverage.json").write_text(json.dumps({"sbc": {"z0": {"ks_p": 0.42, "pass": True}, "z1": {"ks_p": 0.001, "pass": False}}, "tarp": {"area": 0.03, "pass": True}}))
    (run / "tension.json").write_text(json.dumps({"parameters": ["z0"], "labels": ["A", "B"], "metrics": {"q_dm": {"value": 9.0, "n_sigma": 3.0, "pte": 0.0027, "dof": 1}}, "skipped": {"suspiciousness": "needs a joint run"}}))
    interp = runs["model"] / "interpretation"
    interp.mkdir(exist_ok=True)
    (interp / "mi.json").write_text(json.dumps({"latent_latent": {"z0": {"z0": 3.1, "z1": 0.01}, "z1": {"z0": 0.01, "z1": 3.0}}, "labels": {"z0": "omch2"}}))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(2, 2))
    fig.savefig(interp / "traversal_z0.png")
    plt.close(fig)
    try:
        text = build_report([run])
    finally:
        shutil.rmtree(interp)
    _self_contained(text)
    assert "ks_p" in text and 'class="bad"' in text  # the failed SBC row is marked
    assert "needs a joint run" in text and "q_dm" in text
    assert "Mutual information" in text and "omch2" in text and "traversal_z0" in text


def test_missing_or_corrupt_files_name_the_file(runs, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs["root"] / "runA", run)
    (run / "summary.json").write_text("{ not json")
    with pytest.raises(LatentInferError, match=r"corrupt file .*summary\.json"):
        build_report([run])
    shutil.copy(runs["root"] / "runA" / "summary.json", run / "summary.json")
    (run / "config.yaml").write_text("model: [unclosed")
    with pytest.raises(LatentInferError, match=r"corrupt file .*config\.yaml"):
        build_report([run])
    shutil.copy(runs["root"] / "runA" / "config.yaml", run / "config.yaml")
    (run / "posterior.nc").write_bytes(b"garbage")
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "posterior.nc" in err and err.count("\n") == 1
    (run / "posterior.nc").unlink()
    with pytest.raises(LatentInferError, match=r"posterior file not found: .*posterior\.nc"):
        build_report([run])
    (run / "coverage.json").write_text("[1, 2")
    shutil.copy(runs["root"] / "runA" / "posterior.nc", run / "posterior.nc")
    with pytest.raises(LatentInferError, match=r"corrupt file .*coverage\.json"):
        build_report([run])
    assert not (tmp_path / "r.html").exists()


def test_run_writes_report_by_default(runs, tmp_path, capsys):
    """A real (short) NUTS run through the CLI writes report.html beside posterior.nc."""
    import yaml

    cfg = run_config(runs["model"], [runs["liks"]["A"]], chains=2, warmup=60, draws=60, parallel=False, jit=False)
    cfg["report"] = True
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    text = (tmp_path / "out" / "report.html").read_text()
    _self_contained(text)
    assert "nuts" in text and "likA" in text


def test_latent_reference_section(runs, tmp_path):
    """A run whose summary holds latent_references (a latent-space run of a bundle with a reference model) gets the
    section: the sentence, the numbers and the posterior plot with the reference band; a run without it has none."""
    import shutil

    from latentinfer.bundle.references import reference_readings
    from latentinfer.rundir import load_run

    run = tmp_path / "run"
    shutil.copytree(runs["root"] / "runA", run)
    post = load_run(run).posterior
    card = {"latent_names": post.parameter_names,
            "latent_references": {"LCDM": {"parameter": "f", "latents": {"z0": {"median": 5.0, "sd": 0.1}}}}}
    readings = reference_readings(card, {n: post.samples(n) for n in post.parameter_names})
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "latent_references": readings}))
    text = build_report([run])
    _self_contained(text)
    assert "Latents against reference models" in text and "departs from LCDM at" in text
    assert "z0 against LCDM" in text  # the plot's alt text
    assert "Latents against reference models" not in build_report([runs["root"] / "runA"])


def test_evidence_section_shows_values_and_flags():
    """ln Z to 3 decimals (Planck's are ~5000: 4 significant digits would hide ln B), ln B against the first run, and
    each flag of a flagged estimate listed by run."""
    from types import SimpleNamespace

    from latentinfer.report.sections import evidence_section

    flag = "kurtosis 46.9 of the block estimates > 5.4 (Gaussian block means, p = 0.001): a few blocks carry the estimate"
    runs = [SimpleNamespace(name="lcdm", evidence={"ln_z": 4959.5947, "ln_z_err": 0.0101, "method": "harmonic", "flags": []}),
            SimpleNamespace(name="ede", evidence={"ln_z": 4958.4878, "ln_z_err": 0.1481, "method": "harmonic", "flags": [flag]}),
            SimpleNamespace(name="none", evidence=None)]
    out = evidence_section(runs)
    assert "4959.595" in out and "4958.488" in out and "0.148" in out
    assert "-1.107" in out and "ede vs lcdm" in out and "none" in out and "1 flag(s)" in out
    assert "<b>ede</b>: kurtosis 46.9" in out and "latentinfer evidence RUN" in out
    assert "Flagged" not in evidence_section(runs[:1])
