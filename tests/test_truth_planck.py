"""Evidence and SBI checks on the real Planck posterior (latent space of the cmb-lcdm decoder).

These need the decoder bundle ``models/cmb-lcdm`` and the likelihood ``likelihoods/planck2018-plik-lite``,
which are built on other branches: the tests skip, saying so, until both exist. All are slow (minutes).

- Evidence: ln Z from NUTS chains + harmonic agrees with dynesty nested sampling within 3 combined sigma.
- SBI: NPE (embedding net for the long bandpower vector) vs NUTS on the real data: each latent's mean within
  0.2 NUTS sd, each sd within 20 %.
- Model selection: ln B(cmb-lcdm vs cmb-ede) with its error (needs ``models/cmb-ede`` too).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentinfer.paths import available

MODEL, LIK = "cmb-lcdm", "planck2018-plik-lite"


def _have(model=MODEL):
    return model in available("models") and LIK in available("likelihoods")


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not _have(), reason=f"needs models/{MODEL} and likelihoods/{LIK} (built on the ive and lik branches)"),
]


def _analysis(model=MODEL):
    from latentinfer.config import validate_config
    from latentinfer.runner import build_analysis

    return build_analysis(validate_config({"model": model, "likelihoods": [LIK]}))


@pytest.fixture(scope="module")
def nuts():
    a = _analysis()
    return a, a.sample("nuts", chains=4, warmup=500, draws=1500, seed=0, progress=False)


def test_planck_harmonic_vs_dynesty(nuts):
    from latentinfer.evidence import bayes_factor, compute_evidence

    a, post = nuts
    harm = a.evidence(post, method="harmonic")
    nest = compute_evidence(a, None, method="dynesty", nlive=500)
    diff, err = bayes_factor(harm, nest)
    assert abs(diff) < 3 * err, (harm, nest)


def test_planck_npe_vs_nuts(nuts):
    a, post = nuts
    amo = a.train_sbi("npe", num_simulations=20000, seed=0, embedding="mlp")
    npe = amo.posterior({lik.name: lik.data for lik in a.likelihoods}, num_samples=10000, seed=0)
    m_ref, s_ref = post.mean(), np.sqrt(np.diag(post.cov()))
    m, s = npe.mean(), np.sqrt(np.diag(npe.cov()))
    latents = [i for i, n in enumerate(a.parameter_names) if n in a.input_names]
    assert (np.abs(m - m_ref)[latents] < 0.2 * s_ref[latents]).all(), (m, m_ref, s_ref)
    assert (np.abs(s / s_ref - 1)[latents] < 0.2).all(), (s, s_ref)


@pytest.mark.skipif(not _have("cmb-ede"), reason="needs models/cmb-ede (early dark energy decoder, ive branch)")
def test_planck_lcdm_vs_ede(nuts):
    from latentinfer.evidence import bayes_factor, jeffreys_reading

    a, post = nuts
    b = _analysis("cmb-ede")
    post_b = b.sample("nuts", chains=4, warmup=500, draws=1500, seed=0, progress=False)
    za, zb = a.evidence(post), b.evidence(post_b)
    ln_b, err = bayes_factor(za, zb)
    print(f"ln B(LCDM vs EDE) = {ln_b:.2f} +- {err:.2f}: {jeffreys_reading(ln_b, 'LCDM', 'EDE')}")
    assert np.isfinite(ln_b) and 0 < err < 1.0
