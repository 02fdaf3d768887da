"""Evidence and SBI checks on the real Planck posterior (latent space of the shipped cmb-lcdm decoder).

All are slow (minutes to tens of minutes). The posterior is that of ``examples/planck_latent.yaml`` (Planck 2018
plik_lite TT/TE/EE + low-ell TT). So that the examples and these checks do not pay for the same chains twice,
finished runs can be handed in:

    LATENTINFER_PLANCK_RUN=runs/planck_vs_spt/planck     # a run of planck_latent.yaml-like config with evidence
    LATENTINFER_LCDM_VS_EDE=runs/lcdm_vs_ede             # the output folder of examples/lcdm_vs_ede.sh
    pytest -m slow tests/test_truth_planck.py

Without them the fixtures sample the chains themselves (4 x (500 + 1000) NUTS).

- Evidence: ln Z from NUTS chains + harmonic agrees with dynesty nested sampling within 3 combined sigma
  (measured 2026-12-02: harmonic 4959.80 +- 0.05 in 33 s, dynesty rwalk nlive 500 4959.87 +- 0.19 in 16 min).
- SBI: truncated sequential NPE (with an embedding net for the long bandpower vector) vs NUTS on the real data; the
  issue's goal (means within 0.2 NUTS sd, sds within 20 %) is printed, what is reached (0.5 sd, 30 %) asserted.
- Model selection: ln B(cmb-lcdm vs cmb-ede) on Planck with its error: finite, error below 1.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from latentinfer.paths import available

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not ({"cmb-lcdm", "cmb-ede"} <= set(available("models")) and "planck2018-plik-lite" in available("likelihoods")),
        reason="needs models/cmb-lcdm, models/cmb-ede and likelihoods/planck2018-plik-lite",
    ),
]


def _run_or_sample(config_path: Path, run_dir: str | None):
    """(analysis, posterior, summary) of a finished run folder, or of a fresh run of ``config_path``."""
    from latentinfer.config import load_config, validate_config
    from latentinfer.rundir import load_run
    from latentinfer.runner import build_analysis

    if run_dir:
        run = load_run(run_dir)
        return build_analysis(validate_config(run.config)), run.posterior, run.summary
    cfg = load_config(config_path)
    a = build_analysis(cfg)
    inf = {k: v for k, v in cfg["inference"].items() if k in ("chains", "warmup", "draws", "seed")}
    post = a.sample("nuts", progress=False, **inf)
    return a, post, {}


@pytest.fixture(scope="module")
def planck():
    return _run_or_sample(EXAMPLES / "planck_latent.yaml", os.environ.get("LATENTINFER_PLANCK_RUN"))


def test_planck_harmonic_vs_dynesty(planck):
    from latentinfer.evidence import bayes_factor, compute_evidence

    a, post, _ = planck
    harm = a.evidence(post, method="harmonic")
    nest = compute_evidence(a, None, method="dynesty", nlive=500, sample="rwalk")
    diff, err = bayes_factor(harm, nest)
    print(f"ln Z harmonic {harm.ln_z:.3f} +- {harm.ln_z_err:.3f}, dynesty {nest.ln_z:.3f} +- {nest.ln_z_err:.3f}")
    assert abs(diff) < 3 * err, (harm, nest)


def test_planck_npe_vs_nuts(planck):
    """Truncated sequential NPE (4 rounds x 10,000 simulations, MLP embedding) against NUTS on the real data.

    The issue's goal is each latent's mean within 0.2 NUTS sd and each sd within 20 %. Not reached yet: on
    2026-12-02 three TSNPE runs gave worst mean offsets of 0.33-0.40 sd and worst sd ratios of 0.75-0.81 (one
    round of 20,000 simulations: 0.6-0.8 sd). This test guards what is reached (0.5 sd, 30 %) so that it can fail
    on a regression; the goal stays open in issue #5.
    """
    a, post, _ = planck
    obs = {lik.name: lik.data for lik in a.likelihoods}
    amo = a.train_sbi("npe", num_simulations=40000, seed=0, embedding="mlp", rounds=4, observed=obs, stop_after_epochs=50)
    npe = amo.posterior(obs, num_samples=10000, seed=0)
    names = list(post.parameter_names)
    assert list(npe.parameter_names) == names
    m_ref, s_ref = post.mean(), np.sqrt(np.diag(post.cov()))
    m, s = npe.mean(), np.sqrt(np.diag(npe.cov()))
    latents = [i for i, n in enumerate(names) if n in a.input_names]  # indices in the posteriors' order
    for i in latents:
        print(f"{names[i]}: NUTS {m_ref[i]:+.3f} +- {s_ref[i]:.3f}  NPE {m[i]:+.3f} +- {s[i]:.3f}")
    goal = (np.abs(m - m_ref)[latents] < 0.2 * s_ref[latents]).all() and (np.abs(s / s_ref - 1)[latents] < 0.2).all()
    print("issue #5 goal (0.2 sd, 20 %) met:", bool(goal))
    assert npe.attrs["outside_truncation"] < 0.01
    assert (np.abs(m - m_ref)[latents] < 0.5 * s_ref[latents]).all(), (m, m_ref, s_ref)
    assert (np.abs(s / s_ref - 1)[latents] < 0.3).all(), (s, s_ref)


def test_planck_lcdm_vs_ede():
    from latentinfer.evidence import EvidenceResult, bayes_factor, jeffreys_reading

    out = os.environ.get("LATENTINFER_LCDM_VS_EDE")
    z = {}
    for name in ("lcdm", "ede"):
        a, post, summary = _run_or_sample(EXAMPLES / "lcdm_vs_ede" / f"{name}.yaml", out and str(Path(out) / name))
        ev = summary.get("evidence")
        z[name] = EvidenceResult(ln_z=ev["ln_z"], ln_z_err=ev["ln_z_err"], method=ev.get("method", "harmonic")) if ev else a.evidence(post)
    ln_b, err = bayes_factor(z["lcdm"], z["ede"])
    print(f"ln B(LCDM vs EDE) = {ln_b:.2f} +- {err:.2f}: {jeffreys_reading(ln_b, 'LCDM', 'EDE')}")
    assert np.isfinite(ln_b) and 0 < err < 1.0
