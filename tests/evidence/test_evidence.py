"""The evidence against closed forms (linear-Gaussian) and against nested sampling (dynesty).

Tolerances: |ln Z_est - ln Z_exact| < 0.1 (the issue's bound) and < 3 reported sigma, where the reported error
is harmonic's block estimate (about 0.003-0.02 here). The samples are iid exact posterior draws, so the test
checks the estimator, not the sampler.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from truth_models import LinearGaussian, mlp_toy

from latentinfer import LatentInferError
from latentinfer.evidence import bayes_factor, compute_evidence, jeffreys_reading
from latentinfer.evidence.nested import prior_transform


def _check_exact(d: int, seed: int = 0):
    lg = LinearGaussian(d=d, n=12, seed=seed)
    post = lg.exact_posterior(chains=8, draws=1000, seed=seed)
    res = lg.analysis.evidence(post, method="harmonic", seed=seed)
    exact = lg.ln_z()
    diff = abs(res.ln_z - exact)
    assert diff < 0.1, (d, res, exact)
    assert diff < 3 * res.ln_z_err + 1e-3, (d, res, exact)  # 1e-3: float32 flow arithmetic
    assert 0 < res.ln_z_err < 0.1
    return res


@pytest.mark.parametrize("d", [2, 6])
def test_harmonic_matches_closed_form(d):
    res = _check_exact(d)
    assert res.method == "harmonic" and res.n_samples == 8000
    json.dumps(res.to_dict())  # JSON-able record


@pytest.mark.slow
@pytest.mark.parametrize("d", [2, 3, 4, 5, 6, 7, 8, 9, 10])
def test_harmonic_matches_closed_form_sweep(d):
    _check_exact(d, seed=d)


def test_evidence_bad_input():
    lg = LinearGaussian(d=2)
    with pytest.raises(LatentInferError, match="at least 2 independent chains"):
        lg.analysis.evidence(lg.exact_posterior(chains=1, draws=4000))
    with pytest.raises(LatentInferError, match="at least 1000 posterior samples"):
        lg.analysis.evidence(lg.exact_posterior(chains=4, draws=100))
    with pytest.raises(LatentInferError, match="unknown evidence method 'bogus'"):
        lg.analysis.evidence(lg.exact_posterior(chains=4, draws=300), method="bogus")
    with pytest.raises(LatentInferError, match="temperature"):
        lg.analysis.evidence(lg.exact_posterior(chains=4, draws=300), temperature=1.5)


def test_prior_transform_is_the_prior():
    """Unit-cube quantiles map to the program's prior quantiles (icdf of N(0, 1) here)."""
    from scipy.stats import norm

    lg = LinearGaussian(d=2)
    q = np.array([[0.1, 0.5], [0.975, 0.3]])
    import torch

    vals = prior_transform(lg.analysis, torch.as_tensor(q))
    np.testing.assert_allclose(vals["z0"].numpy(), norm.ppf(q[:, 0]), atol=1e-10)
    np.testing.assert_allclose(vals["z1"].numpy(), norm.ppf(q[:, 1]), atol=1e-10)


def test_jeffreys_and_bayes_factor():
    from latentinfer.evidence import EvidenceResult

    a, b = EvidenceResult(-10.0, 0.03, "harmonic"), EvidenceResult(-13.0, 0.04, "harmonic")
    ln_b, err = bayes_factor(a, b)
    assert ln_b == pytest.approx(3.0) and err == pytest.approx(0.05)
    assert jeffreys_reading(ln_b, "A", "B").startswith("moderate evidence for A")
    assert jeffreys_reading(-0.5).startswith("inconclusive")
    assert jeffreys_reading(-6).startswith("strong evidence for B")


@pytest.mark.slow
def test_dynesty_matches_closed_form():
    lg = LinearGaussian(d=3)
    res = compute_evidence(lg.analysis, None, method="dynesty", nlive=400)
    assert abs(res.ln_z - lg.ln_z()) < 3 * res.ln_z_err + 0.05


@pytest.mark.slow
def test_harmonic_vs_dynesty_on_mlp_posterior():
    """A non-Gaussian posterior (tanh-MLP decoder): NUTS + harmonic vs nested sampling, within 3 combined sigma."""
    analysis, _ = mlp_toy(d=2, seed=0)
    post = analysis.sample("nuts", chains=4, warmup=300, draws=1500, seed=1, progress=False, parallel=False)
    harm = analysis.evidence(post, method="harmonic")
    nest = compute_evidence(analysis, None, method="dynesty", nlive=500)
    ln_b, err = bayes_factor(harm, nest)
    print(f"MLP toy: harmonic {harm}, dynesty {nest}")
    assert abs(ln_b) < 3 * err + 0.05, (harm, nest)
    assert math.isfinite(harm.ln_z)
