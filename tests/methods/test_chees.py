"""ChEES-HMC (method ``chees``): many chains in lockstep on the batched log density.

The same exact checks as NUTS (tests/methods/test_inference_exact.py): on the linear-Gaussian model with a closed-form
posterior, means within 4 Monte-Carlo standard errors, variances within 10 %, correlations within 0.1, ESS > 1000,
R-hat < 1.01; the MLP recovery of tests/program/test_nonlinear.py; same seed, same numbers; a run stopped after warmup resumes
to the same numbers; groups of chains with their own data sets each reach their own exact posterior.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import latentinfer as li
from conftest import check_exact, make_linear_gaussian, mlp_problem
from latentinfer.errors import ConfigError, LatentInferError
from latentinfer.methods.chees import OnePerGroup, batched_laplace, run_chees
from latentinfer.program import LogDensity


@pytest.fixture(scope="module")
def problem():
    lg = make_linear_gaussian(dim=4, n=30, seed=11)
    return lg, lg.analysis(), *lg.posterior()


_check = check_exact


def test_chees_matches_exact_posterior(problem):
    lg, an, mu, S = problem
    post = an.sample("chees", chains=16, draws=300, seed=1, progress=False)
    summ = post.summary()
    assert min(v["ess_bulk"] for v in summ.values()) > 1000
    assert min(v["ess_tail"] for v in summ.values()) > 1000
    assert max(v["r_hat"] for v in summ.values()) < 1.01
    assert post.divergences() == 0
    assert post.attrs["adapted"] and post.attrs["warmup_iterations"] < 1000  # stopped when adapted
    st = post.idata.sample_stats
    for key in ("diverging", "acceptance_rate", "n_steps", "step_size", "energy", "lp"):
        assert st[key].shape == (16, 300), key
    _check(post, mu, S, np.array([summ[n]["mcse_mean"] for n in post.parameter_names]))


def test_exact_check_bites_on_a_wrong_sampler(problem):
    """The same check fails when the step size is so large that every proposal is rejected for most of the run
    (the chains barely move from their Laplace starts): a check that can fail."""
    lg, an, mu, S = problem
    ld = LogDensity(an)
    u0 = torch.as_tensor(np.random.default_rng(0).multivariate_normal(mu, S, size=(1, 4)))
    res = run_chees(ld.value_and_grad, u0, torch.as_tensor(S)[None] * 1e-4, warmup=0, draws=300, seed=0)
    samples = {n: res["u"][0][..., i] for i, n in enumerate(an.parameter_names)}
    from latentinfer.posterior import build_posterior

    post = build_posterior(an, samples, method="chees", settings={})
    summ = post.summary()
    with pytest.raises(AssertionError):
        _check(post, mu, S, np.array([summ[n]["mcse_mean"] for n in post.parameter_names]))


def test_chees_recovers_known_latents_through_mlp():
    an, z_true = mlp_problem()
    post = an.sample("chees", chains=16, draws=300, seed=0, progress=False)
    summ = post.summary()
    assert max(v["r_hat"] for v in summ.values()) < 1.01
    assert post.divergences() == 0
    pull = (post.mean() - z_true.numpy()) / np.sqrt(np.diag(post.cov()))
    assert np.all(np.abs(pull) < 4), pull
    assert post.idata.log_likelihood["obs"].shape == (16, 300)


def test_same_seed_same_numbers(problem):
    lg, an, mu, S = problem
    a = an.sample("chees", chains=4, warmup=60, draws=20, seed=7, progress=False)
    b = an.sample("chees", chains=4, warmup=60, draws=20, seed=7, progress=False)
    c = an.sample("chees", chains=4, warmup=60, draws=20, seed=8, progress=False)
    assert np.array_equal(a.samples(), b.samples())
    assert not np.array_equal(a.samples(), c.samples())


def test_resume_from_checkpoint_gives_the_same_numbers(problem, tmp_path, monkeypatch):
    """A run interrupted during sampling continues from its checkpoint and ends with the uninterrupted numbers."""
    lg, an, mu, S = problem
    ld = LogDensity(an)
    u0 = torch.as_tensor(np.random.default_rng(0).multivariate_normal(mu, S, size=(1, 4)))
    cov0 = torch.as_tensor(S)[None]
    total = {"n": 0}

    def counted(u):
        total["n"] += 1
        return ld.value_and_grad(u)

    ref = run_chees(counted, u0, cov0, warmup=60, draws=40, seed=3)
    state = tmp_path / "chees.state.npz"
    monkeypatch.setenv("LATENTINFER_CHECKPOINT_SECONDS", "0")  # checkpoint after every draw
    calls = {"n": 0}

    def dies(u):  # interrupted a few draws before the end
        calls["n"] += 1
        if calls["n"] > total["n"] - 15:
            raise KeyboardInterrupt
        return ld.value_and_grad(u)

    with pytest.raises(KeyboardInterrupt):
        run_chees(dies, u0, cov0, warmup=60, draws=40, seed=3, state_path=state)
    assert state.is_file()
    again = run_chees(ld.value_and_grad, u0, cov0, warmup=60, draws=40, seed=3, state_path=state)
    assert again["resumed_at"] > 0
    assert np.array_equal(again["u"], ref["u"])
    assert np.array_equal(again["acceptance_rate"], ref["acceptance_rate"])


def test_groups_with_their_own_data_reach_their_own_posteriors():
    """Data sets as a batch dimension: G groups of K chains, group g observing data set g, each adapted on its own.
    Every group's draws match its exact posterior (means within 4 MCSE-like errors, variances within 15 %)."""
    lg = make_linear_gaussian(dim=3, n=20, seed=5)
    an = lg.analysis()
    G, K = 6, 8
    gen = torch.Generator().manual_seed(0)
    L = torch.linalg.cholesky(lg.C)
    z = torch.randn(G, 3, generator=gen, dtype=torch.float64)
    ys = z @ lg.A.T + lg.b + torch.randn(G, 20, generator=gen, dtype=torch.float64) @ L.T
    ld = LogDensity(an, data={"data": ys[:, None, :]})
    u_map, cov, ok = batched_laplace(OnePerGroup(ld), torch.zeros(G, 3, dtype=torch.float64))
    assert bool(ok.all())
    u0 = u_map[:, None, :] + torch.randn(G, K, 3, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(cov).transpose(-1, -2)
    res = run_chees(ld.value_and_grad, u0, cov, warmup=300, draws=200, seed=1)
    Ci = torch.linalg.inv(lg.C)
    S = torch.linalg.inv(lg.A.T @ Ci @ lg.A + torch.eye(3, dtype=torch.float64))
    for g in range(G):
        mu = (S @ lg.A.T @ Ci @ (ys[g] - lg.b)).numpy()
        np.testing.assert_allclose(cov[g].numpy(), S.numpy(), rtol=1e-6)  # Laplace is exact here
        draws = res["u"][g].reshape(-1, 3)
        se = np.sqrt(np.diag(S.numpy()) / (draws.shape[0] / 4))  # ESS >= N / 4 per group, generously
        assert np.all(np.abs(draws.mean(0) - mu) < 4 * se), (g, draws.mean(0), mu)
        assert np.all(np.abs(draws.var(0) / np.diag(S.numpy()) - 1) < 0.15)


def test_bad_input_one_line(problem):
    lg, an, mu, S = problem
    with pytest.raises(ConfigError, match="chains"):
        an.sample("chees", chains=1, draws=10, progress=False)
    with pytest.raises(ConfigError, match="unknown settings"):
        an.sample("chees", walkers=8, draws=10, progress=False)
    with pytest.raises(ConfigError, match="'walkers' is not a setting of method 'nuts'"):
        li.config.foreign_settings(li.config.validate_config(
            {"model": "cmb-lcdm", "likelihoods": ["planck2018-lowl-tt"], "inference": {"method": "nuts", "walkers": 8}}))
    with pytest.raises(ConfigError, match="must be >= 2 for method chees"):
        li.config.validate_config({"model": "cmb-lcdm", "likelihoods": ["planck2018-lowl-tt"], "inference": {"method": "chees", "chains": 1}})
    ld = LogDensity(an)

    def nan_density(u):
        lp, g = ld.value_and_grad(u)
        return lp * np.nan, g

    with pytest.raises(LatentInferError, match="not finite at the start"):
        run_chees(nan_density, torch.zeros(1, 4, 4, dtype=torch.float64), torch.eye(4, dtype=torch.float64)[None], warmup=10, draws=10, seed=0)


def test_cli_bad_chees_settings_exit_2(tmp_path):
    import subprocess
    import sys

    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model: cmb-lcdm\nlikelihoods: [planck2018-lowl-tt]\ninference: {method: chees, chains: 1}\n")
    r = subprocess.run([sys.executable, "-m", "latentinfer.cli", "run", str(cfg), "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "chains" in r.stderr
    cfg.write_text("model: cmb-lcdm\nlikelihoods: [planck2018-lowl-tt]\ninference: {method: nuts, walkers: 8}\n")
    r = subprocess.run([sys.executable, "-m", "latentinfer.cli", "run", str(cfg), "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "'walkers' is not a setting of method 'nuts'" in r.stderr


@pytest.mark.slow
def test_chees_agrees_with_nuts_on_the_planck_latent_posterior():
    """examples/planck_latent.yaml (Pyro NUTS, 4 x (500 + 1000)) against chees on the same program: every mean within
    0.1 NUTS sd, every sd within 10 % (about 6 min, NUTS almost all of it)."""
    from latentinfer.config import load_config
    from latentinfer.runner import build_analysis

    from pathlib import Path

    an = build_analysis(load_config(Path(__file__).resolve().parents[2] / "examples" / "planck_latent.yaml"))
    ref = an.sample("nuts", chains=4, warmup=500, draws=1000, seed=0, progress=False)
    got = an.sample("chees", seed=0, progress=False)
    sd_ref = np.sqrt(np.diag(ref.cov()))
    shift = np.abs(got.mean() - ref.mean()) / sd_ref
    ratio = np.sqrt(np.diag(got.cov())) / sd_ref
    assert np.all(shift < 0.1), dict(zip(ref.parameter_names, shift))
    assert np.all(np.abs(ratio - 1) < 0.1), dict(zip(ref.parameter_names, ratio))
