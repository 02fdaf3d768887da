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


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small networks train faster single-threaded on a shared machine; restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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
