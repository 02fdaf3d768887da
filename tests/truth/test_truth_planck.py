"""Evidence and SBI checks on the real Planck posterior (latent space of the shipped cmb-lcdm decoder).

All are slow (minutes to tens of minutes). The posterior is that of ``examples/planck_latent.yaml`` (Planck 2018
plik_lite TT/TE/EE + low-ell TT). So that the examples and these checks do not pay for the same chains twice,
finished runs can be handed in:

    LATENTINFER_PLANCK_RUN=runs/planck_vs_spt/planck     # a run of planck_latent.yaml-like config with evidence
    LATENTINFER_LCDM_VS_EDE=runs/lcdm_vs_ede             # the output folder of examples/lcdm_vs_ede.sh
    pytest -m slow tests/truth/test_truth_planck.py

Without them the fixtures sample the chains themselves (4 x (500 + 1000) NUTS).

- Evidence: ln Z from NUTS chains + harmonic agrees with dynesty nested sampling within 3 combined sigma
  (measured 2026-12-02: harmonic 4961.28 +- 0.15, dynesty rwalk nlive 500 4960.97 +- 0.18, 7 min together).
- SBI: truncated sequential NPE (PCA compression of the 615 bandpowers, ensemble of 3) vs NUTS on the real data:
  each latent's mean within 0.2 NUTS sd and each sd within 20 % (the issue's goal).
- Model selection: ln B(cmb-lcdm vs cmb-ede) on Planck with its error: finite, error below 1; the EDE evidence
  agrees with dynesty within 3 combined sigma and is unflagged.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from latentinfer.paths import available

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

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
    """Truncated sequential NPE (4 rounds x 10,000 simulations, PCA embedding, ensemble of 3) against NUTS on the
    real data: the issue's goal, each latent's mean within 0.2 NUTS sd and each sd within 20 %.

    Measured on 2026-12-02 (cmb-lcdm in its independent-components basis): worst offset 0.11 sd, sd ratios 0.92-0.95;
    before the change of basis, 0.10 (seed 0) and 0.09 (seed 1) sd, sd ratios 0.93-1.02 and 0.88-0.93.
    A single estimator scatters by about 0.2 sd between seeds (0.22-0.25 worst), hence the ensemble.
    About 10 minutes, plus the NUTS reference when no run is handed in.
    """
    a, post, _ = planck
    obs = {lik.name: lik.data for lik in a.likelihoods}
    amo = a.train_sbi("npe", num_simulations=40000, seed=0, embedding="pca", ensemble=3, rounds=4, observed=obs, stop_after_epochs=50)
    npe = amo.posterior(obs, num_samples=10000, seed=0)
    names = list(post.parameter_names)
    assert list(npe.parameter_names) == names
    m_ref, s_ref = post.mean(), np.sqrt(np.diag(post.cov()))
    m, s = npe.mean(), np.sqrt(np.diag(npe.cov()))
    latents = [i for i, n in enumerate(names) if n in a.input_names]  # indices in the posteriors' order
    for i in latents:
        print(f"{names[i]}: NUTS {m_ref[i]:+.3f} +- {s_ref[i]:.3f}  NPE {m[i]:+.3f} +- {s[i]:.3f}")
    assert npe.attrs["outside_truncation"] < 0.01
    assert amo.config["pca_compression"]["components"] < 100  # 615 bandpowers -> ~47 components
    assert (np.abs(m - m_ref)[latents] < 0.2 * s_ref[latents]).all(), (m, m_ref, s_ref)
    assert (np.abs(s / s_ref - 1)[latents] < 0.2).all(), (s, s_ref)


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


def test_ede_harmonic_vs_dynesty():
    """The EDE evidence of ``examples/lcdm_vs_ede`` (Pyro NUTS 4 x (500 + 1000), harmonic with its automatic epochs
    and blocks) against nested sampling on the same program: within 3 combined sigma, and unflagged.

    Measured 2026-12-05 (``scans/evidence/dynesty_lcdm_vs_ede.jsonl``): harmonic 4958.04 +- 0.05, dynesty (rwalk,
    nlive 500) 4958.01 +- 0.19 in 17 min; the 10-epoch flow used before gave 4958.49 +- 0.15 with kurtosis 47.
    LCDM: harmonic 4959.60 +- 0.01, dynesty 4959.49 +- 0.18."""
    from latentinfer.evidence import bayes_factor, compute_evidence

    out = os.environ.get("LATENTINFER_LCDM_VS_EDE")
    a, post, _ = _run_or_sample(EXAMPLES / "lcdm_vs_ede" / "ede.yaml", out and str(Path(out) / "ede"))
    harm = a.evidence(post, method="harmonic")
    assert harm.details["flags"] == [], harm.details["flags"]
    nest = compute_evidence(a, None, method="dynesty", nlive=500, sample="rwalk")
    diff, err = bayes_factor(harm, nest)
    print(f"EDE ln Z harmonic {harm.ln_z:.3f} +- {harm.ln_z_err:.3f}, dynesty {nest.ln_z:.3f} +- {nest.ln_z_err:.3f}")
    assert abs(diff) < 3 * err, (harm, nest)
