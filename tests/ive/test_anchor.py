"""The anchor experiment (issue 20, item 3): numbers from the stored scans (scans/discover/*/scan.json) and
scans/discover/anchor/anchor.json, re-derived with the stated rules. Rerun the experiment with
``bash examples/discover.sh && python -m latentinfer.ive.anchor scans/discover/anchor``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from latentinfer.ive.anchor import MARGIN_SIGMA, MI_LCDM_MAX, NARROW
from latentinfer.ive.discover import choose_beta, choose_dim

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2] / "scans" / "discover"


def _load(name):
    return json.loads((ROOT / name).read_text())


@pytest.mark.parametrize("scan,beta,d", [("lcdm/scan.json", 1e-5, 6), ("lcdm-tt/scan.json", 1e-5, 6), ("ede/scan.json", 1e-4, 9)])
def test_rules_pick_the_stored_choice(scan, beta, d):
    r = _load(scan)
    if r["beta_scan"]["points"]:
        assert choose_beta(r["beta_scan"]["points"]) == r["chosen_beta"] == beta
    assert choose_dim(r["dim_scan"]["points"]) == r["chosen_dim"] == d
    assert r["mi_rows"]["n"] >= 2000
    assert len(r["beta_scan"]["points"]) >= 5 or scan.startswith("lcdm-tt")


def test_lcdm_latent_counts_tt_only_and_with_polarisation():
    a = _load("anchor/anchor.json")["lcdm"]
    full, tt = a["TTTEEEPP"], a["TT"]
    assert full["chosen_dim"] == 6 and full["n_active_chosen"] == 6  # six with polarisation, as many as parameters
    assert tt["chosen_dim"] == 6  # the anchor's 5 for TT is not reproduced on ell 2..3200 with our noise weights
    # TT alone pins A_s e^{-2 tau} (R^2 0.98) far better than tau itself (0.60; 0.86 with polarisation) ...
    assert tt["knn_r2"]["logA-2tau"] > 0.95 and tt["knn_r2"]["tau"] < full["knn_r2"]["tau"] - 0.15
    # ... but tau is not invisible to TT: from the combination alone its R^2 would be corr^2 = 0.33 over the box
    assert tt["knn_r2"]["tau"] > 0.45


def test_ede_latent():
    e = _load("anchor/anchor.json")["ede"]
    mi = {k: v["gmm"] for k, v in e["mi_with_fde"].items()}
    err = {k: v["gmm_err"] for k, v in e["mi_with_fde"].items()}
    top, second = sorted(mi, key=mi.get, reverse=True)[:2]
    assert top == e["ede_latent"] == "z6"
    assert mi[top] - mi[second] > MARGIN_SIGMA * np.hypot(err[top], err[second])  # 5.1 sigma stored
    # KSG agrees on which latent it is
    ksg = {k: v["ksg"] for k, v in e["mi_with_fde"].items()}
    assert max(ksg, key=ksg.get) == top
    assert all(v["gmm"] <= MI_LCDM_MAX for v in e["mi_ede_latent_lcdm"].values())
    assert e["criteria"]["mi_with_every_lcdm_parameter_below_0.05"]
    # not reproduced: on LCDM spectra the latent's spread is 0.34 of its spread over EDE rows (criterion 0.25)
    assert e["sd_ratio"] == pytest.approx(e["sd_on_lcdm_rows"] / e["sd_on_ede_rows"])
    assert NARROW < e["sd_ratio"] < 0.5 and not e["criteria"]["narrow_on_lcdm_spectra"]
    assert len([k for k, v in enumerate(e["kl_per_latent"]) if v > 0.1]) == 8  # 8 active of 9, the anchor's count


def test_ede_latent_longer_training():
    e = _load("anchor-ede-long/anchor.json")["ede"]
    assert e["ede_latent"] == "z6" and e["margin_sigma"] > 5
    assert 0.25 < e["sd_ratio"] < 0.3  # closer to narrow than at 300 epochs (0.34), not below 0.25
    assert 0.05 < e["mi_ede_latent_lcdm"]["omch2"]["gmm"] < 0.06  # GMM just over the threshold ...
    assert e["criteria"]["mi_with_every_lcdm_parameter_below_0.05_ksg"]  # ... KSG under it
    assert e["mi_ede_latent_other_ksg"]["log10_zc"] > e["mi_ede_latent_other_ksg"]["fde_zc"]
    # the LCDM part of the second run reproduces the first
    assert _load("anchor-ede-long/anchor.json")["lcdm"] == _load("anchor/anchor.json")["lcdm"]


def test_ede_latent_of_the_shipped_discovered_bundle():
    """cmb-ede-ive (bundle grade: 1093 VAE epochs, decoder polished, LCDM rows at f_EDE = 0 in training):
    ``python -m latentinfer.ive.anchor scans/discover/anchor-bundle --bundle cmb-ede-ive``. All three criteria of
    (b) hold, where the scan-grade models missed "narrow"; the decoded traversal is still small beside CAMB's EDE."""
    e = _load("anchor-bundle/anchor.json")["ede"]
    assert e["mode"] == "unsupervised" and e["latent_dim"] == 9 and e["n_rows"] >= 2000
    assert e["ede_latent"] == "z6" and e["runner_up"] == "z3"
    assert e["margin"] > MARGIN_SIGMA * e["margin_err"]  # 3.2 sigma stored
    ksg = {k: v["ksg"] for k, v in e["mi_with_fde"].items()}
    assert max(ksg, key=ksg.get) == "z6"
    assert all(v["gmm"] <= MI_LCDM_MAX for v in e["mi_ede_latent_lcdm"].values())
    assert e["sd_ratio"] < NARROW and e["criteria"]["narrow_on_lcdm_spectra"]  # 0.17 (scan grade: 0.34, 0.26)
    # EDE rows with f_EDE < 0.01 sit where the LCDM spectra put the latent, within its LCDM spread
    assert abs(e["median_on_ede_rows_fde_below_0.01"] - e["lcdm_value"]) < e["sd_on_lcdm_rows"]
    assert e["mi_ede_latent_other_ksg"]["log10_zc"] > e["mi_ede_latent_other_ksg"]["fde_zc"]  # it carries z_c too
    assert abs(e["traversal_camb_cosine"]) < 0.2  # not the CAMB residual's shape (0.04 stored)


def test_shipped_discovered_bundle_card():
    """The card of cmb-ede-ive says what it is: mode, beta, d, accuracy, labels from physical and spectral MI, and
    the LCDM reference of its EDE latent (the same latent the anchor finds)."""
    card = json.loads((ROOT.parents[1] / "models" / "cmb-ede-ive" / "card.json").read_text())
    assert card["mode"] == "unsupervised" and card["latent_basis"]["method"] == "none"
    assert card["training"]["config"]["beta"] == 1e-4 and len(card["latent_names"]) == 9
    assert card["training"]["config"]["polish_epochs"] > 0
    assert set(card["accuracy"]) >= {"encode_decode", "emulate"}
    assert card["latent_labels_provenance"]["n"] >= 2000
    assert "peak2_over_peak1_TT" in card["latent_labels"].values()  # a label that is a spectral feature
    ref = card["latent_references"]["LCDM"]
    assert list(ref["latents"]) == [_load("anchor-bundle/anchor.json")["ede"]["ede_latent"]]
    assert ref["parameter"] == "fde_zc" and not any("/" in f["path"][:1] for f in ref["rows"])


def test_cmb_ede_card_says_where_its_tail_falls_short():
    """Issue 20 item 7: the emulator-grade cmb-ede misses p99 < 0.5; its card says by how much (from its own accuracy
    block) and why (the fine-tune evidence)."""
    card = json.loads((ROOT.parents[1] / "models" / "cmb-ede" / "card.json").read_text())
    acc, short = card["accuracy"], card["accuracy_shortfall"]
    for path in ("encode_decode", "emulate"):
        p99 = acc[path]["p99"]
        assert p99 > acc["goal"]["p99"] and not acc["passed"][path]
        assert short["missed_by"][f"{path}_p99"] == pytest.approx(p99 - acc["goal"]["p99"], abs=1e-3)
    assert "finetune" in short["why"] and (ROOT.parents[1] / "scans" / "cmb-ede" / "finetune" / "README.md").is_file()
