"""Amortized SBI on the same program: simulator, NPE accuracy (C2ST vs the exact posterior), save/load, errors.

C2ST: a classifier (sbi.utils.metrics.c2st, 5-fold MLP) separating 2,000 NPE draws from 2,000 exact posterior
draws; 0.5 means indistinguishable. The issue's bound is < 0.6.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from truth_models import LinearGaussian

from latentinfer import LatentInferError
from latentinfer.amortized import AmortizedPosterior, simulate
from latentinfer.priors import to_distribution


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def lg():
    return LinearGaussian(d=2, n=8, seed=2)


@pytest.fixture(scope="module")
def npe(lg):
    return lg.analysis.train_sbi("npe", num_simulations=2000, seed=0, max_num_epochs=60)


def test_simulator_is_the_program(lg):
    """Vectorised simulations: parameters ~ N(0, 1) prior, data ~ N(A z + b, C): check the data covariance."""
    sims = simulate(lg.analysis, 4000, seed=1)
    assert sims["x"].shape == (4000, lg.n) and sims["u"].shape == (4000, lg.d)
    resid = sims["x"] - sims["u"] @ lg.A.T - lg.b
    cov = torch.cov(resid.T)
    # MC error of a covariance entry ~ sqrt((C_ii C_jj + C_ij^2) / n): 5 sigma with n = 4000
    tol = 5 * torch.sqrt((torch.outer(lg.C.diagonal(), lg.C.diagonal()) + lg.C**2) / 4000)
    assert ((cov - lg.C).abs() < tol).all()
    again = simulate(lg.analysis, 10, seed=1)
    assert torch.equal(again["x"], simulate(lg.analysis, 10, seed=1)["x"])


def test_npe_matches_exact_posterior(lg, npe):
    from sbi.utils.metrics import c2st

    post = npe.posterior(lg.y, num_samples=10000, seed=0)
    assert post.method == "npe" and post.num_draws == 10000
    g = torch.Generator().manual_seed(0)
    exact = lg.post_mean() + torch.randn(2000, lg.d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(lg.post_cov).T
    score = float(c2st(torch.as_tensor(post.samples()[:2000]).float(), exact.float(), seed=0))
    assert score < 0.6, score


def test_save_load_roundtrip(lg, npe, tmp_path):
    npe.save(tmp_path / "npe")
    assert not list((tmp_path / "npe").glob("*.pt")) and (tmp_path / "npe" / "estimator-0.safetensors").is_file()
    back = AmortizedPosterior.load(tmp_path / "npe", lg.analysis)
    u = torch.randn(7, lg.d, dtype=torch.float64)
    torch.testing.assert_close(npe.log_prob_unconstrained(u, lg.y), back.log_prob_unconstrained(u, lg.y))
    a = npe.posterior(lg.y, num_samples=500, seed=3).samples()
    b = back.posterior(lg.y, num_samples=500, seed=3).samples()
    np.testing.assert_allclose(a, b)
    # tampered weights are refused
    f = tmp_path / "npe" / "estimator-0.safetensors"
    f.write_bytes(f.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(LatentInferError, match="sha256"):
        AmortizedPosterior.load(tmp_path / "npe", lg.analysis)


def test_observed_as_dict_or_vector(lg, npe):
    a = npe.posterior({"lin": lg.y}, num_samples=200, seed=1).samples()
    b = npe.posterior(lg.y.numpy(), num_samples=200, seed=1).samples()
    np.testing.assert_allclose(a, b)
    with pytest.raises(LatentInferError, match="need 8"):
        npe.posterior(torch.zeros(5))
    with pytest.raises(LatentInferError, match="missing"):
        npe.posterior({"other": lg.y})


def test_bad_input(lg):
    from latentinfer import GaussianLikelihood
    from latentinfer.analysis import Analysis

    class NoSim(GaussianLikelihood):
        can_simulate = False

    a = Analysis(lg.forward, NoSim(lg.y, lg.C, name="nosim"))
    with pytest.raises(LatentInferError, match="likelihood 'nosim' cannot simulate"):
        a.train_sbi("npe", num_simulations=100)

    class Raises(GaussianLikelihood):
        def simulate(self, theory, nuisance, generator=None):
            raise NotImplementedError

    with pytest.raises(LatentInferError, match="likelihood 'raises' cannot simulate"):
        Analysis(lg.forward, Raises(lg.y, lg.C, name="raises")).train_sbi("npe", num_simulations=100)
    with pytest.raises(LatentInferError, match="method must be one of npe, nle, nre"):
        lg.analysis.train_sbi("abc")
    with pytest.raises(LatentInferError, match="unknown settings"):
        lg.analysis.train_sbi("npe", num_simulations=100, hidden=3)


@pytest.mark.slow
def test_ensemble_embedding_nle_nre(lg, tmp_path):
    """Ensembles, the MLP embedding, NLE and NRE train, sample and round-trip through save/load."""
    ens = lg.analysis.train_sbi("npe", num_simulations=2000, seed=1, ensemble=2, embedding="mlp", max_num_epochs=80)
    ens.save(tmp_path / "ens")
    back = AmortizedPosterior.load(tmp_path / "ens", lg.analysis)
    assert len(back.estimators) == 2
    m = back.posterior(lg.y, num_samples=4000, seed=0).mean()
    sd = lg.post_cov.diagonal().sqrt().numpy()
    assert (np.abs(m - lg.post_mean().numpy()) < 0.3 * sd).all()
    for method in ("nle", "nre"):
        amo = lg.analysis.train_sbi(method, num_simulations=2000, seed=0, max_num_epochs=80)
        post = amo.posterior(lg.y, num_samples=1000, seed=0)
        assert (np.abs(post.mean() - lg.post_mean().numpy()) < 0.5 * sd).all(), (method, post.mean())


def test_restricted_prior_is_the_prior_inside_the_box(lg):
    """The TSNPE proposal: same density shape inside the box (normal -> truncnormal), nothing outside."""
    box = {"z0": (-0.5, 1.0), "z1": (0.2, 0.3)}
    r = lg.analysis.restricted(box)
    assert r._prior["z0"] == {"truncnormal": [0.0, 1.0, -0.5, 1.0]} and lg.analysis._prior["z0"] == {"normal": [0.0, 1.0]}
    draws = r.sample_prior(4000, seed=0)
    for name, (lo, hi) in box.items():
        v = draws[name].numpy()
        assert v.min() >= lo and v.max() <= hi
    # inside the box the density ratio restricted / original is one constant
    z = torch.tensor([[0.0, 0.25], [0.7, 0.21], [-0.4, 0.29]], dtype=torch.float64)
    def lp(a):
        return sum(to_distribution(a.prior_of(n)).log_prob(z[:, i]) for i, n in enumerate(lg.names))
    ratio = (lp(r) - lp(lg.analysis)).numpy()
    np.testing.assert_allclose(ratio, ratio[0])
    with pytest.raises(LatentInferError, match="unknown parameter 'zz'"):
        lg.analysis.restricted({"zz": (0, 1)})


@pytest.fixture(scope="module")
def narrow():
    """Posterior sd ~ 0.03 of the prior's: one round of NPE spends most simulations where the data are not."""
    return LinearGaussian(d=2, n=8, seed=2, noise=0.004)


def test_truncated_sequential_npe_matches_exact_posterior(narrow):
    from sbi.utils.metrics import c2st

    lg = narrow
    amo = lg.analysis.train_sbi("npe", num_simulations=3000, seed=0, rounds=3, observed=lg.y)
    assert amo.config["simulations_per_round"] == [1000, 1000, 1000] and len(amo.config["truncation_boxes"]) == 2
    post = amo.posterior(lg.y, num_samples=4000, seed=0)
    g = torch.Generator().manual_seed(0)
    exact = lg.post_mean() + torch.randn(2000, lg.d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(lg.post_cov).T
    score = float(c2st(torch.as_tensor(post.samples()[:2000]).float(), exact.float(), seed=0))
    assert score < 0.6, score
    # the final box holds the exact posterior (mean +- 4 sd) and is far narrower than the prior
    sd, m = lg.post_cov.diagonal().sqrt().numpy(), lg.post_mean().numpy()
    for i, name in enumerate(lg.names):
        lo, hi = amo.config["truncation"][name]
        assert lo < m[i] - 4 * sd[i] and m[i] + 4 * sd[i] < hi and hi - lo < 2.0, (name, lo, hi)
    assert post.attrs["outside_truncation"] < 0.01
    # data far from the focus: the draws leave the box and the user is told
    far = lg.A @ torch.tensor([-2.5, 2.5], dtype=torch.float64) + lg.b
    with pytest.warns(UserWarning, match="outside the truncation region"):
        amo.posterior(far, num_samples=1000, seed=0)


def test_truncation_region_draws(lg):
    """TSNPE's proposal: draws inside box and ellipsoid, distributed as the prior restricted there (checked against
    plain rejection from prior draws, KS per coordinate), and simulations at given parameters use exactly them."""
    from scipy.stats import ks_2samp

    from latentinfer.amortized.posterior import _draw_in_region, _in_region
    from latentinfer.amortized.simulate import prior_draws

    a, tr = lg.analysis, lg.analysis.transforms()
    box = {n: [-0.5, 1.5] for n in lg.names}
    ell = [{"mean": [0.3] * lg.d, "cov": (0.25 * np.eye(lg.d)).tolist(), "radius": 1.5}]
    vals = _draw_in_region(a, box, ell, 3000, seed=0, batch=20000)
    assert all(v.shape == (3000,) for v in vals.values())
    assert _in_region(vals, a.unconstrain(vals, tr), box, ell).all()
    ref = prior_draws(a, 100000, seed=1)
    ref = {k: v[_in_region(ref, a.unconstrain(ref, tr), box, ell)] for k, v in ref.items()}
    for n in lg.names:
        assert ks_2samp(vals[n].numpy(), ref[n].numpy()).pvalue > 1e-3, n
    sims = simulate(a, 40, seed=0, parameters={k: v[:40] for k, v in vals.items()})
    for n in lg.names:
        torch.testing.assert_close(sims[n], vals[n][:40])
    torch.testing.assert_close(sims["u"], a.unconstrain({k: v[:40] for k, v in vals.items()}, tr))
    with pytest.raises(LatentInferError, match="fell in the truncation region"):
        _draw_in_region(a, {n: [-0.5, 1.5] for n in lg.names}, [{**ell[0], "mean": [9.0] * lg.d}], 10, seed=0, batch=100)


def test_truncated_sequential_npe_bad_input(lg):
    with pytest.raises(LatentInferError, match="pass observed"):
        lg.analysis.train_sbi("npe", num_simulations=200, rounds=2)
    with pytest.raises(LatentInferError, match="needs method 'npe'"):
        lg.analysis.train_sbi("nle", num_simulations=200, rounds=2, observed=lg.y)
    with pytest.raises(LatentInferError, match="rounds must be an integer >= 1"):
        lg.analysis.train_sbi("npe", num_simulations=200, rounds=0, observed=lg.y)
    with pytest.raises(LatentInferError, match="< 50 per round"):
        lg.analysis.train_sbi("npe", num_simulations=120, rounds=3, observed=lg.y)


def _check_exact_and_round_trip(lg, amo, folder):
    """NPE on ``lg.y`` is indistinguishable from the exact posterior (C2ST < 0.6), and save/load keeps the density."""
    from sbi.utils.metrics import c2st

    post = amo.posterior(lg.y, num_samples=4000, seed=0)
    g = torch.Generator().manual_seed(0)
    exact = lg.post_mean() + torch.randn(2000, lg.d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(lg.post_cov).T
    assert float(c2st(torch.as_tensor(post.samples()[:2000]).float(), exact.float(), seed=0)) < 0.6
    amo.save(folder)
    back = AmortizedPosterior.load(folder, lg.analysis)
    u = torch.randn(5, lg.d, dtype=torch.float64)
    torch.testing.assert_close(amo.log_prob_unconstrained(u, lg.y), back.log_prob_unconstrained(u, lg.y))


def test_score_compression_embedding(lg, tmp_path):
    """embedding='score': the data enter as the Fisher-scaled score at the MAP (one number per parameter); for a
    linear-Gaussian model that is a sufficient statistic, so NPE still matches the exact posterior; the fixed
    compression travels in the safetensors and survives save/load."""
    from latentinfer.amortized.posterior import _score_compression

    W, b, info = _score_compression(lg.analysis, lg.y, seed=0)
    assert W.shape == (lg.d, lg.n) and info["fiducial"] == "MAP of the observed data"
    # t = (u_MLE - u_MAP) / sd with the GLS estimator u_MLE = F^-1 A^T C^-1 (y - b); for the N(0, 1) prior the MAP
    # obeys F (u_MLE - u_MAP) = u_MAP, so t(y) = F^-1 u_MAP / sd
    sd = torch.tensor(info["fisher_sd"], dtype=torch.float64)
    Ci = torch.linalg.inv(lg.C)
    F = lg.A.T @ Ci @ lg.A
    torch.testing.assert_close(W, torch.linalg.solve(F, lg.A.T @ Ci) / sd[:, None], rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(sd, torch.linalg.inv(F).diagonal().sqrt())
    u_map = lg.post_mean()
    torch.testing.assert_close(W @ lg.y + b, torch.linalg.solve(F, u_map) / sd, rtol=1e-4, atol=1e-6)
    amo = lg.analysis.train_sbi("npe", num_simulations=2000, seed=0, max_num_epochs=60, embedding="score", observed=lg.y)
    _check_exact_and_round_trip(lg, amo, tmp_path / "score")
    with pytest.raises(LatentInferError, match="embedding must be null, 'mlp', 'pca' or 'score'"):
        lg.analysis.train_sbi("npe", num_simulations=200, embedding="moped")


def test_pca_compression_embedding(lg, tmp_path):
    """embedding='pca': whitened principal components of the simulated noiseless data. For a linear model the
    data move in a d-dimensional subspace, so d components are kept and they are a sufficient statistic (the
    GLS estimator is a linear function of them); NPE then matches the exact posterior and survives save/load.
    The simulations' mean data come out of simulate(with_mean=True) without changing the draws."""
    from latentinfer.amortized.posterior import _pca_compression

    sims = simulate(lg.analysis, 3000, seed=3, with_mean=True)
    assert torch.equal(sims["x"], simulate(lg.analysis, 3000, seed=3)["x"])
    torch.testing.assert_close(sims["mean"], sims["u"] @ lg.A.T + lg.b)
    W, b, info = _pca_compression(lg.analysis, sims["mean"], None, 0.01)
    assert info["components"] == lg.d and W.shape == (lg.d, lg.n) and info["chi2_lost_p99"] < 1e-8
    torch.testing.assert_close(W @ sims["mean"].mean(0) + b, torch.zeros(lg.d, dtype=W.dtype), atol=1e-9, rtol=0)
    # unit noise: W C W^T = I (orthonormal directions of the whitened data)
    torch.testing.assert_close(W @ lg.C @ W.T, torch.eye(lg.d, dtype=W.dtype), atol=1e-8, rtol=0)
    # sufficiency: A^T C^-1 = M W for some M (the GLS normal equations see the data only through t)
    G = lg.A.T @ torch.linalg.inv(lg.C)
    M = torch.linalg.lstsq(W.T, G.T).solution.T
    torch.testing.assert_close(M @ W, G, atol=1e-8, rtol=1e-8)
    assert _pca_compression(lg.analysis, sims["mean"], 1, 0.01)[2]["components"] == 1  # a fixed k is kept
    amo = lg.analysis.train_sbi("npe", num_simulations=2000, seed=0, max_num_epochs=60, embedding="pca", observed=lg.y)
    assert amo.config["embedding_dim"] == lg.d
    _check_exact_and_round_trip(lg, amo, tmp_path / "pca")
    with pytest.raises(LatentInferError, match="embedding_dim must be an integer >= 1"):
        lg.analysis.train_sbi("npe", num_simulations=200, embedding="pca", embedding_dim=0)
    with pytest.raises(LatentInferError, match="pca_tolerance must be a number > 0"):
        lg.analysis.train_sbi("npe", num_simulations=200, embedding="pca", pca_tolerance=-1)


def test_npe_as_a_run_method(lg, tmp_path):
    """`latentinfer run` with inference: {method: npe, rounds: 2}: same config as NUTS, exact posterior reached."""
    import json

    import yaml
    from sbi.utils.metrics import c2st
    from truth_models import write_toy_project

    import latentinfer as li
    from latentinfer.cli import main

    cfg = write_toy_project(tmp_path, lg)
    cfg.update(report=False, inference={"method": "npe", "num_simulations": 2000, "rounds": 2, "num_samples": 2000, "seed": 0, "progress": False})
    path = tmp_path / "npe.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["method"] == "npe" and summary["config"]["inference"]["rounds"] == 2
    post = li.Posterior.from_netcdf(tmp_path / "out" / "posterior.nc")
    g = torch.Generator().manual_seed(0)
    exact = lg.post_mean() + torch.randn(2000, lg.d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(lg.post_cov).T
    assert float(c2st(torch.as_tensor(post.samples()).float(), exact.float(), seed=0)) < 0.6
    cfg["inference"].update(embedding="moped")
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(path), "--out", str(tmp_path / "bad")]) == 2
