"""The Pyro program: prior choices, overrides, nuisance parameters (incl. a correlated block), batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import latentinfer as li
from latentinfer.likelihoods import Nuisance
from conftest import make_linear_gaussian


class Calibrated(li.GaussianLikelihood):
    """data ~ N(cal_t * y, cov): a likelihood with nuisance parameters."""

    def predict(self, theory, nuisance):
        return nuisance["cal_t"].unsqueeze(-1) * theory["y"] + nuisance["cal_e"].unsqueeze(-1)


def _calibrated(lg):
    block = Nuisance(("cal_t", "cal_e"), {"mvnormal": [[1.0, 0.0], [[0.01, 0.006], [0.006, 0.0144]]]})
    return Calibrated(lg.y, lg.C, name="cal", nuisance=[block])


def test_gaussian_block_prior_is_the_joint_gaussian():
    lg = make_linear_gaussian(dim=2, n=5)
    an = li.Analysis(lg.forward(), _calibrated(lg))
    assert an.parameter_names == ["z0", "z1", "cal_t", "cal_e"]
    draws = an.sample_prior(4000, seed=0)
    x = torch.stack([draws["cal_t"], draws["cal_e"]], -1).numpy()
    # 4000 draws: sd of the sample covariance entries ~ 0.01 * sqrt(2/4000) ~ 2.2e-4; 4 sigma tolerance
    np.testing.assert_allclose(np.cov(x.T), [[0.01, 0.006], [0.006, 0.0144]], atol=1.0e-3)
    np.testing.assert_allclose(x.mean(0), [1.0, 0.0], atol=4 * 0.12 / np.sqrt(4000))


def test_priors_override_and_fixed():
    lg = make_linear_gaussian(dim=2, n=5)
    an = li.Analysis(lg.forward(), _calibrated(lg), priors={"z1": {"uniform": [-1, 1]}, "cal_e": {"fixed": 0.0}})
    assert an.parameter_names == ["z0", "z1", "cal_t"]
    draws = an.sample_prior(500, seed=1)
    assert draws["z1"].abs().max() <= 1
    # the override of one member of a block leaves the other with its marginal prior
    assert abs(float(draws["cal_t"].std()) - 0.1) < 0.015


def test_uniform_latent_prior_and_batched_log_joint():
    lg = make_linear_gaussian(dim=3, n=8)
    an = li.Analysis(lg.forward(), lg.likelihood(), prior="uniform")
    vals = {f"z{i}": torch.linspace(-1, 1, 7, dtype=torch.float64) for i in range(3)}
    lj = an.log_joint(vals)
    assert lj.shape == (7,)
    one = an.log_joint({k: v[2] for k, v in vals.items()})
    assert torch.allclose(lj[2], one)
    # uniform density on [-4, 4]^3 plus the Gaussian likelihood
    z = torch.stack([v[2] for v in vals.values()])
    expected = 3 * np.log(1 / 8) + lg.likelihood().log_prob({"y": lg.A @ z + lg.b}, {})
    assert torch.allclose(one, expected.to(one.dtype))


def test_unconstrained_density_has_jacobian():
    lg = make_linear_gaussian(dim=1, n=3)
    an = li.Analysis(lg.forward(), lg.likelihood(), prior={"uniform": [0.0, 2.0]})
    u = torch.tensor([[0.3]], dtype=torch.float64)
    t = an.transforms()["z0"]
    x = t(u[..., 0])
    expected = an.log_joint({"z0": x}) + t.log_abs_det_jacobian(u[..., 0], x)
    assert torch.allclose(an.unconstrained_log_density(u), expected)


def test_log_likelihood_per_likelihood_matches_direct():
    lg = make_linear_gaussian(dim=2, n=6)
    an = lg.analysis()
    vals = {"z0": torch.tensor(0.2, dtype=torch.float64), "z1": torch.tensor(-0.1, dtype=torch.float64)}
    ll = an.log_likelihoods(vals)["data"]
    direct = torch.distributions.MultivariateNormal(lg.A @ torch.stack(list(vals.values())) + lg.b, lg.C).log_prob(lg.y)
    assert torch.allclose(ll, direct)


def test_forward_model_outputs_dict_and_batches():
    class Two(torch.nn.Module):
        def forward(self, z):
            return {"TT": z.sum(-1, keepdim=True).expand(*z.shape[:-1], 4), "EE": z}

    fm = li.ForwardModel.from_module(Two(), latent_names=["a", "b"])
    out = fm(torch.zeros(3, 5, 2))
    assert out["TT"].shape == (3, 5, 4) and out["EE"].shape == (3, 5, 2)
    assert fm.output_sizes() == {"TT": 4, "EE": 2}
    with pytest.raises(li.LatentInferError, match="expects 2 inputs"):
        fm(torch.zeros(3))
