"""Tension metrics against exact answers (linear-Gaussian posteriors), attribution, bad input, CLI.

Exact reference: for Gaussian posteriors A ~ N(mu_A, C_A), B ~ N(mu_B, C_B) the parameter difference is Gaussian
and every metric's number of sigma is ``Phi^-1(1 - chi2.sf(Q, d) / 2)`` with ``Q = Delta^T (C_A + C_B)^-1 Delta``
(Q_DM and the shift probability exactly; S in the limit of priors much wider than the posteriors).
Tolerances: 3 times the metric's own Monte-Carlo error plus a stated bias allowance.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import latentinfer  # noqa: E402
from _linear_models import (  # noqa: E402
    build_runs,
    exact_posterior,
    run_config,
    split_problem,
    write_exact_run,
    write_problem_files,
)
from latentinfer.errors import LatentInferError  # noqa: E402
from latentinfer.posterior import Posterior  # noqa: E402
from latentinfer.tension import available_metrics, check_tension, prior_covariance  # noqa: E402


def _exact_sigma(q, d):
    return float(stats.norm.isf(stats.chi2.sf(q, d) / 2))


def _gaussian_pair(d, target, seed, n=8000):
    """Exact draws of two Gaussian posteriors whose means differ by exactly ``target`` sigma (d-dim)."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(d, d))
    B = rng.normal(size=(d, d))
    CA, CB = A @ A.T / d + 0.3 * np.eye(d), B @ B.T / d + 0.3 * np.eye(d)
    u = rng.normal(size=d)
    q = stats.chi2.isf(2 * stats.norm.sf(target), d)
    delta = u * np.sqrt(q / (u @ np.linalg.solve(CA + CB, u)))
    names = [f"z{i}" for i in range(d)]
    xa = rng.multivariate_normal(np.zeros(d), CA, size=(2, n // 2))
    xb = rng.multivariate_normal(delta, CB, size=(2, n // 2))
    cfg = json.dumps({"model": "toy", "space": "latent"})
    pa = Posterior.from_arrays({k: xa[..., i] for i, k in enumerate(names)}, attrs={"config": cfg})
    pb = Posterior.from_arrays({k: xb[..., i] for i, k in enumerate(names)}, attrs={"config": cfg})
    return pa, pb


@pytest.mark.parametrize("d,target,seed", [(1, 2.0, 0), (2, 3.0, 1), (3, 2.0, 2), (3, 1.0, 3), (6, 2.0, 4)])
def test_offset_gaussians_give_the_exact_number_of_sigma(d, target, seed):
    pa, pb = _gaussian_pair(d, target, seed)
    res = latentinfer.tension(pa, pb, attribution=False, seed=seed)
    qdm, shift = res["q_dm"], res["parameter_shift"]
    assert qdm.dof == d  # no prior recorded: every direction counts
    # Q_DM: Monte-Carlo error of the means and covariances only
    assert abs(qdm.n_sigma - target) < 3 * qdm.n_sigma_err + 0.02, (qdm.n_sigma, qdm.n_sigma_err)
    # KDE shift probability: binomial + jackknife error; 0.05 sigma allowance for the kernel bias (see shift.py)
    assert abs(shift.n_sigma - target) < 3 * shift.n_sigma_err + 0.05, (shift.n_sigma, shift.n_sigma_err)
    assert shift.n_sigma_err < 0.25
    assert set(res.skipped) == {"suspiciousness", "evidence_ratio"}


def test_shift_probability_is_reproducible_and_seeded():
    pa, pb = _gaussian_pair(2, 2.0, 5, n=4000)
    r1 = latentinfer.tension(pa, pb, attribution=False, seed=7, metrics=["parameter_shift"])
    r2 = latentinfer.tension(pa, pb, attribution=False, seed=7, metrics=["parameter_shift"])
    assert r1["parameter_shift"].value == r2["parameter_shift"].value


@pytest.fixture(scope="module")
def shifted():
    """A genuine shift between two halves of linear-Gaussian data, exact posteriors of A, B and A+B."""
    prob = split_problem(d=3, n=120, seed=1, offset=[0.8, -0.5, 0.3])
    return prob, build_runs(prob, n=6000)


def test_suspiciousness_and_qdm_match_the_exact_gaussian_answer(shifted):
    prob, runs = shifted
    A, B, J = runs["A"], runs["B"], runs["joint"]
    delta = A["mean"] - B["mean"]
    exact = _exact_sigma(delta @ np.linalg.solve(A["cov"] + B["cov"], delta), 3)
    assert exact > 2.5  # the case is built to be in tension
    res = latentinfer.tension(A["post"], B["post"], J["post"], analyses={"A": A["analysis"], "B": B["analysis"]})
    for name in ("q_dm", "parameter_shift", "suspiciousness"):
        m = res[name]
        # S: 0.1 sigma allowance for the prior (sd 10 vs posterior sd ~0.3) and the noise of d
        tol = {"q_dm": 0.02, "parameter_shift": 0.05, "suspiciousness": 0.1}[name]
        assert abs(m.n_sigma - exact) < 3 * m.n_sigma_err + tol, (name, m.n_sigma, m.n_sigma_err, exact)
    s = res["suspiciousness"]
    assert abs(s.dof - 3) < 0.5  # Bayesian model dimensionality: 3 constrained parameters
    q = res["q_dm"]
    assert q.dof == 3 and all(abs(q.details[k] - 3) < 0.01 for k in ("n_eff_a", "n_eff_b"))
    assert check_tension(res, 2.0)["tension"] and not check_tension(res, 5.0)["tension"]


def test_halves_of_the_same_data_show_no_tension():
    prob = split_problem(d=3, n=120, seed=4)
    runs = build_runs(prob, n=4000)
    res = latentinfer.tension(runs["A"]["post"], runs["B"]["post"], runs["joint"]["post"], attribution=False)
    # tolerance: no tension means every metric below 2 sigma (a fixed seed; 95% of realisations pass)
    for name in ("q_dm", "parameter_shift", "suspiciousness"):
        assert res[name].n_sigma < 2.0, (name, res[name].n_sigma)
    assert not check_tension(res)["tension"]


def test_qdm_is_calibrated_over_data_realisations():
    """Without a shift, Q_DM's PTE over 40 independent data sets is uniform (KS p > 0.01)."""
    ptes = []
    for seed in range(40):
        prob = split_problem(d=3, n=60, seed=100 + seed)
        posts = []
        for key, sl in prob["parts"].items():
            M, c, y, sig = prob["M"][sl], prob["c"][sl], prob["y"][sl], prob["sig"][sl]
            mean, cov = exact_posterior(M, c, y, np.diag(sig**2), prob["prior_sd"])
            x = np.random.default_rng(seed).multivariate_normal(mean, cov, size=(1, 3000))
            posts.append(Posterior.from_arrays({f"z{i}": x[..., i] for i in range(3)}))
        res = latentinfer.tension(*posts, metrics=["q_dm"], attribution=False)
        ptes.append(res["q_dm"].pte)
    assert stats.kstest(ptes, "uniform").pvalue > 0.01


def test_attribution_maps_the_shift_through_the_decoder(shifted):
    prob, runs = shifted
    A, B = runs["A"], runs["B"]
    res = latentinfer.tension(A["post"], B["post"], metrics=["q_dm"], analyses={"A": A["analysis"], "B": B["analysis"]})
    attr = res.attribution
    shift = A["post"].samples().mean(0) - B["post"].samples().mean(0)
    for i, n in enumerate(res.names):
        assert attr["parameters"][n]["shift"] == pytest.approx(shift[i])
    modes = attr["modes"]
    assert sum(m["fraction"] for m in modes) == pytest.approx(1.0)
    assert sum(m["n_sigma"] ** 2 for m in modes) == pytest.approx(res["q_dm"].value, rel=1e-8)  # no prior: all modes kept
    ds = attr["data_space"]
    h = prob["M"].shape[0] // 2
    # the decoder is linear: its Jacobian is M, so the data-space pattern is M @ shift exactly
    np.testing.assert_allclose(ds["outputs"]["y"]["delta"], prob["M"][:h] @ shift, rtol=1e-8, atol=1e-10)
    lik = ds["likelihoods"]["B:dataB"]
    np.testing.assert_allclose(lik["delta_sigma"], prob["M"][h:] @ shift / prob["sig"][h:], rtol=1e-8)
    assert sum(b["fraction"] for b in lik["bands"]) == pytest.approx(1.0)


def test_data_space_bands_follow_spectrum_and_ell():
    from latentinfer import Analysis, GaussianLikelihood
    from latentinfer.tension.attribution import ELL_BANDS

    from _linear_models import linear_forward, posterior_from_exact

    ell = np.tile(np.arange(100, 2600, 50.0), 2)
    spectrum = np.array(["TT"] * 50 + ["EE"] * 50)
    M = np.zeros((100, 2))
    M[(spectrum == "TT") & (ell >= 1200) & (ell < 1600), 0] = 1.0  # z0 moves TT at 1200 <= ell < 1600 only
    M[spectrum == "EE", 1] = 0.01
    fm = linear_forward(M, np.zeros(100))
    lik = GaussianLikelihood(np.zeros(100), np.eye(100), name="cmb", meta={"ell": ell, "spectrum": spectrum})
    an = Analysis(fm, lik)
    pa = posterior_from_exact(an, np.zeros(2), 0.01 * np.eye(2), n=2000, seed=1)
    pb = posterior_from_exact(an, np.array([0.5, 0.0]), 0.01 * np.eye(2), n=2000, seed=2)
    res = latentinfer.tension(pa, pb, metrics=["q_dm"], analyses={"A": an, "B": an})
    top = res.attribution["data_space"]["likelihoods"]["A:cmb"]["bands"][0]
    assert top["spectrum"] == "TT" and 1200 <= top["ell_min"] and top["ell_max"] < 1600 and top["fraction"] > 0.99
    assert 1200 in ELL_BANDS and 1600 in ELL_BANDS


def test_prior_covariance_from_recorded_program_and_n_eff():
    program = {
        "inputs": {"z0": {"normal": [0.0, 2.0]}, "z1": {"uniform": [-3.0, 3.0]}},
        "nuisance": {"Tcal": {"mvnormal": [[1.0, 1.0], [[0.01, 0.005], [0.005, 0.04]]]}, "Ecal": {"mvnormal": [[1.0, 1.0], [[0.01, 0.005], [0.005, 0.04]]]}},
    }
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 4000, 4))
    post = Posterior.from_arrays({n: x[..., i] for i, n in enumerate(["z0", "z1", "Tcal", "Ecal"])}, attrs={"program": program})
    C = prior_covariance(post, ["z0", "z1", "Tcal", "Ecal"])
    np.testing.assert_allclose(C, [[4, 0, 0, 0], [0, 3, 0, 0], [0, 0, 0.01, 0.005], [0, 0, 0.005, 0.04]])
    # z1 constrained by the data (sd 0.1); z0 is prior-dominated (posterior = prior N(0, 2)): one direction counts
    prog = {"inputs": {"z0": {"normal": [0.0, 2.0]}, "z1": {"normal": [0.0, 2.0]}}}
    xa = np.stack([rng.normal(0, 2.0, (1, 8000)), rng.normal(0.0, 0.1, (1, 8000))], -1)
    xb = np.stack([rng.normal(0, 2.0, (1, 8000)), rng.normal(0.35, 0.1, (1, 8000))], -1)
    pa = Posterior.from_arrays({"z0": xa[..., 0], "z1": xa[..., 1]}, attrs={"program": prog})
    pb = Posterior.from_arrays({"z0": xb[..., 0], "z1": xb[..., 1]}, attrs={"program": prog})
    q = latentinfer.tension(pa, pb, metrics=["q_dm"], attribution=False)["q_dm"]
    assert q.dof == 1
    assert abs(q.details["n_eff_a"] - 1.0) < 0.1
    assert abs(q.n_sigma - 0.35 / np.sqrt(0.02)) < 3 * q.n_sigma_err + 0.05


def test_evidence_ratio_and_information_against_closed_forms(tmp_path):
    """log R from closed-form ln Z of each run; its log I = log R - log S against the exact KL divergences."""
    prob = split_problem(d=2, n=80, seed=6, offset=[0.4, 0.0])
    model, liks = write_problem_files(tmp_path, prob)
    M, c, y, sig, sd = prob["M"], prob["c"], prob["y"], prob["sig"], prob["prior_sd"]
    h = M.shape[0] // 2
    exact = {}
    for key, sl in (("A", slice(0, h)), ("B", slice(h, None)), ("AB", slice(None))):
        Cd = np.diag(sig[sl] ** 2)
        ln_z = stats.multivariate_normal(c[sl], Cd + sd**2 * M[sl] @ M[sl].T).logpdf(y[sl])
        mean, cov = exact_posterior(M[sl], c[sl], y[sl], Cd, sd)
        kl = 0.5 * (np.trace(cov) / sd**2 + mean @ mean / sd**2 - 2 + np.log(sd**4 / np.linalg.det(cov)))
        exact[key] = {"ln_z": ln_z, "kl": kl}
        cfg = run_config(model, [liks[k] for k in (key if key != "AB" else "AB")], d=2)
        write_exact_run(cfg, tmp_path / f"run{key}", n=6000, extra={"evidence": {"ln_z": ln_z, "ln_z_err": 0.01}})
    res = latentinfer.tension(tmp_path / "runA", tmp_path / "runB", tmp_path / "runAB", attribution=False)
    r = res["evidence_ratio"]
    log_r = exact["AB"]["ln_z"] - exact["A"]["ln_z"] - exact["B"]["ln_z"]
    assert r.value == pytest.approx(log_r, abs=1e-9)
    log_i = exact["A"]["kl"] + exact["B"]["kl"] - exact["AB"]["kl"]
    assert abs(r.details["log_i"] - log_i) < 3 * res["suspiciousness"].value_err + 0.02
    assert r.n_sigma == pytest.approx(res["suspiciousness"].n_sigma)
    assert r.value_err == pytest.approx(np.sqrt(3) * 0.01)


def test_runs_of_different_models_or_parameters_are_refused():
    pa, pb = _gaussian_pair(2, 1.0, 0, n=400)
    other = Posterior.from_arrays({k: pb.samples(k, flat=False) for k in pb.parameter_names}, attrs={"config": json.dumps({"model": "cmb-ede", "space": "latent"})})
    with pytest.raises(LatentInferError, match="same model: run A has model 'toy', run B has 'cmb-ede'"):
        latentinfer.tension(pa, other)
    phys = Posterior.from_arrays({k: pb.samples(k, flat=False) for k in pb.parameter_names}, attrs={"config": json.dumps({"model": "toy", "space": "physical"})})
    with pytest.raises(LatentInferError, match="same space"):
        latentinfer.tension(pa, phys)
    fewer = Posterior.from_arrays({"z0": pb.samples("z0", flat=False)}, attrs={"config": json.dumps({"model": "toy"})})
    with pytest.raises(LatentInferError, match=r"same parameters in both runs: run A samples \['z0', 'z1'\], run B samples \['z0'\]"):
        latentinfer.tension(pa, fewer)
    with pytest.raises(LatentInferError, match="unknown tension metric 'nope'"):
        latentinfer.tension(pa, pb, metrics=["nope"])
    with pytest.raises(LatentInferError, match="run folder not found"):
        latentinfer.tension("/nonexistent/run", pb)
    assert {"parameter_shift", "q_dm", "suspiciousness", "evidence_ratio"} <= set(available_metrics())


def test_joint_run_must_hold_both_likelihoods(shifted):
    prob, runs = shifted
    with pytest.raises(LatentInferError, match="joint run's likelihoods"):
        latentinfer.tension(runs["A"]["post"], runs["B"]["post"], runs["A"]["post"], metrics=["suspiciousness"], attribution=False)


def test_cli_tension_writes_json_and_plots(tmp_path, capsys):
    from latentinfer.cli import main

    prob = split_problem(d=2, n=60, seed=2, offset=[0.5, 0.5])
    model, liks = write_problem_files(tmp_path, prob)
    for key, ls in (("A", [liks["A"]]), ("B", [liks["B"]]), ("AB", [liks["A"], liks["B"]])):
        cfg = run_config(model, ls, d=2)
        cfg["name"] = f"half{key}"
        write_exact_run(cfg, tmp_path / f"run{key}", n=2000)
    out = tmp_path / "tension"
    assert main(["tension", str(tmp_path / "runA"), str(tmp_path / "runB"), "--joint", str(tmp_path / "runAB"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "q_dm" in text and "suspiciousness" in text and "verdict" in text
    data = json.loads((out / "tension.json").read_text())
    assert data["labels"] == ["halfA", "halfB"] and set(data["metrics"]) == {"parameter_shift", "q_dm", "suspiciousness"}
    assert "data_space" in data["attribution"]  # rebuilt from the run folders' configs
    for f in ("tension_shifts.png", "tension_posteriors.png", "tension_data_pattern.png"):
        assert (out / f).read_bytes().startswith(b"\x89PNG")
    # a run folder with a missing file: exit code 2, one line naming it
    (tmp_path / "runB" / "summary.json").unlink()
    assert main(["tension", str(tmp_path / "runA"), str(tmp_path / "runB"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "summary.json" in err and err.count("\n") == 1


def _banana(n, point, seed):
    """A curved posterior A (x ~ N(0,1), y ~ N(x^2, 0.4^2)) against a nearly exact point B; exact P from the
    analytic density with 2e6 Monte-Carlo draws."""
    r = np.random.default_rng(seed)
    x = r.normal(size=n)
    a = np.stack([x, x**2 + 0.4 * r.normal(size=n)], 1)
    b = np.asarray(point) + 1e-3 * r.normal(size=(n, 2))

    def logp(x, y):
        return stats.norm.logpdf(x) + stats.norm.logpdf(y, x**2, 0.4)

    X = r.normal(size=2_000_000)
    Y = X**2 + 0.4 * r.normal(size=X.size)
    exact = float(stats.norm.isf((1 - np.mean(logp(X, Y) > logp(*point))) / 2))
    to_post = lambda arr: Posterior.from_arrays({"x": arr[None, :, 0], "y": arr[None, :, 1]})  # noqa: E731
    return to_post(a), to_post(b), exact


def test_flow_shift_on_a_gaussian_quick():
    from latentinfer.tension.base import TensionInputs
    from latentinfer.tension.flow_shift import ParameterShiftFlow

    pa, pb = _gaussian_pair(2, 2.0, 8, n=6000)
    inp = latentinfer.tension.prepare_inputs(pa, pb)
    assert isinstance(inp, TensionInputs)
    m = ParameterShiftFlow(n_pairs=6000, n_eval=30000, steps=250).compute(inp)
    # binomial error only; 0.15 sigma allowance for a short flow fit
    assert abs(m.n_sigma - 2.0) < 3 * m.n_sigma_err + 0.15, (m.n_sigma, m.n_sigma_err)
    assert "parameter_shift_flow" not in latentinfer.tension.available_metrics(default_only=True)


@pytest.mark.slow
def test_flow_follows_a_curved_posterior_where_the_kde_fails():
    pa, pb, exact = _banana(8000, (0.0, -0.8), seed=0)
    res = latentinfer.tension(pa, pb, metrics=["parameter_shift", "parameter_shift_flow", "q_dm"], attribution=False)
    assert abs(exact - 1.49) < 0.03
    assert abs(res["parameter_shift_flow"].n_sigma - exact) < 0.15  # flow: close to the exact answer
    assert exact - res["parameter_shift"].n_sigma > 0.25  # single-bandwidth KDE: oversmooths the curve (documented)
