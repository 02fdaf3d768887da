"""Prior specs: the truncated normal against scipy, restriction of priors to a model's valid box, and an Analysis
whose forward model has bounds (no prior mass outside them, NUTS never leaves them)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import latentinfer as li
from latentinfer.errors import ConfigError
from latentinfer.priors import TruncatedNormal, check_spec, describe, moments, restrict, to_distribution
from latentinfer.likelihoods.gaussian import GaussianLikelihood

ARGS = (0.0544, 0.0073, 0.02, 0.06)  # the Planck lowE tau prior cut by a box edge inside one sd


def _scipy(m, s, lo, hi):
    return stats.truncnorm((lo - m) / s, (hi - m) / s, loc=m, scale=s)


def test_truncnormal_density_and_moments_match_scipy():
    d = TruncatedNormal(*(torch.tensor(a, dtype=torch.float64) for a in ARGS))
    x = np.linspace(0.0, 0.08, 81)
    ref = _scipy(*ARGS).logpdf(x)
    got = d.log_prob(torch.as_tensor(x)).numpy()
    inside = np.isfinite(ref)
    np.testing.assert_allclose(got[inside], ref[inside], rtol=1e-10)
    assert np.all(np.isneginf(got[~inside]))
    q = np.array([0.01, 0.3, 0.5, 0.99])
    np.testing.assert_allclose(d.icdf(torch.as_tensor(q)).numpy(), _scipy(*ARGS).ppf(q), rtol=1e-9)
    np.testing.assert_allclose(d.cdf(torch.as_tensor(x)).numpy(), _scipy(*ARGS).cdf(x), atol=1e-12)
    m, v = moments({"truncnormal": list(ARGS)})
    assert m == pytest.approx(_scipy(*ARGS).mean(), rel=1e-10) and v == pytest.approx(_scipy(*ARGS).var(), rel=1e-9)


def test_truncnormal_samples_follow_scipy():
    torch.manual_seed(3)
    d = TruncatedNormal(*(torch.tensor(a, dtype=torch.float64) for a in ARGS))
    x = d.sample((20000,)).numpy()
    assert x.min() >= 0.02 and x.max() <= 0.06
    assert stats.kstest(x, _scipy(*ARGS).cdf).pvalue > 1e-3  # fails for a wrong sampler (e.g. the untruncated normal)
    wrong = np.random.default_rng(0).normal(0.0544, 0.0073, 20000).clip(0.02, 0.06)
    assert stats.kstest(wrong, _scipy(*ARGS).cdf).pvalue < 1e-3


def test_restrict_specs():
    assert restrict({"normal": [0.0544, 0.0073]}, 0.02, 0.09, "tau") == {"truncnormal": [0.0544, 0.0073, 0.02, 0.09]}
    assert restrict({"uniform": [0.0, 1.0]}, 0.02, 0.09, "tau") == {"uniform": [0.02, 0.09]}
    assert restrict({"truncnormal": [0.05, 0.01, 0.0, 0.07]}, 0.02, 0.09, "tau") == {"truncnormal": [0.05, 0.01, 0.02, 0.07]}
    assert restrict({"fixed": 0.05}, 0.02, 0.09, "tau") == {"fixed": 0.05}
    with pytest.raises(ConfigError, match="prior of 'tau': fixed value 0.5 lies outside the model's valid range"):
        restrict({"fixed": 0.5}, 0.02, 0.09, "tau")
    with pytest.raises(ConfigError, match=r"prior of 'tau': \[0.1, 0.2\] does not overlap"):
        restrict({"uniform": [0.1, 0.2]}, 0.02, 0.09, "tau")
    with pytest.raises(ConfigError, match="prior of 'tau': N\\(0.5, 0.01\\) has almost no mass inside"):
        restrict({"normal": [0.5, 0.01]}, 0.02, 0.09, "tau")
    assert describe({"truncnormal": [0.0544, 0.0073, 0.02, 0.09]}) == "N(0.0544, 0.0073) on [0.02, 0.09]"


@pytest.mark.parametrize("bad", [[0.05, 0.01, 0.1, 0.0], [0.05, -1.0, 0.0, 0.1], [0.05, 0.01, 0.0], [0.9, 0.001, 0.0, 0.1]])
def test_truncnormal_spec_errors(bad):
    with pytest.raises(ConfigError, match="prior of 'tau'"):
        check_spec({"truncnormal": bad}, "tau")


class _Identity(GaussianLikelihood):
    def check_theory(self, sizes):
        pass


def _bounded_analysis(priors):
    """y = (a, b) observed with sd 0.1 at a = 0.95, inside a model valid only on a in [0, 1]."""
    fm = li.ForwardModel.from_module(torch.nn.Identity(), ["a", "b"], default_priors={"a": {"uniform": [0, 1]}},
                                     bounds={"a": (0.0, 1.0)})
    lik = _Identity(torch.tensor([0.95, 0.0], dtype=torch.float64), 0.01 * torch.eye(2, dtype=torch.float64), name="d", output="y")
    return li.Analysis(fm, lik, priors=priors)


def test_analysis_restricts_priors_to_model_bounds():
    an = _bounded_analysis({"a": {"normal": [0.9, 0.5]}})
    assert an.prior_of("a") == {"truncnormal": [0.9, 0.5, 0.0, 1.0]}
    assert an.prior_of("b") == {"normal": [0.0, 1.0]}  # unbounded input: untouched
    a = an.sample_prior(4000, seed=2)["a"].numpy()
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert abs(a.mean() - moments(an.prior_of("a"))[0]) < 4 * math.sqrt(moments(an.prior_of("a"))[1] / 4000)
    # outside the box the log joint is -inf (no mass), inside it is finite
    assert torch.isneginf(an.log_joint({"a": torch.tensor(1.2, dtype=torch.float64), "b": torch.tensor(0.0, dtype=torch.float64)}))
    assert torch.isfinite(an.log_joint({"a": torch.tensor(0.5, dtype=torch.float64), "b": torch.tensor(0.0, dtype=torch.float64)}))
    post = an.sample(method="nuts", chains=1, warmup=150, draws=300, seed=0, progress=False, parallel=False)
    a = post.samples("a")
    assert a.min() >= 0.0 and a.max() <= 1.0
    with pytest.raises(ConfigError, match="prior of 'a': fixed value 2 lies outside"):
        _bounded_analysis({"a": {"fixed": 2.0}})


def test_forward_model_bounds_errors():
    with pytest.raises(li.LatentInferError, match="bounds: unknown input 'c'"):
        li.ForwardModel.from_module(torch.nn.Identity(), ["a"], bounds={"c": (0, 1)})
    with pytest.raises(li.LatentInferError, match="bounds of 'a' need low < high"):
        li.ForwardModel.from_module(torch.nn.Identity(), ["a"], bounds={"a": (1, 0)})


def test_to_distribution_truncnormal_dtype():
    d = to_distribution({"truncnormal": list(ARGS)}, torch.float32)
    assert d.sample().dtype == torch.float32
