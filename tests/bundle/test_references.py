"""Latent references (issue 20 item 5): a watched latent's posterior read against where a reference model's spectra
put it. The reading is exact arithmetic on draws; the reference is found on real encoded spectra (cmb-lcdm's held-out
rows, the tau latent against rows at one tau), and a shifted posterior is flagged."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from latentinfer.bundle.references import check_references, reference_readings
from latentinfer.errors import BundleError

CARD = {"latent_names": ["z1", "z2"], "latent_labels": {"z1": "fde_zc", "z2": "H0"},
        "latent_references": {"LCDM": {"parameter": "fde_zc", "latents": {"z1": {"median": -0.5, "sd": 0.1}}}}}


def test_reading_is_the_stated_arithmetic():
    rng = np.random.default_rng(1)
    x = rng.normal(-0.2, 0.3, size=20_000)
    (r,) = reference_readings(CARD, {"z1": x, "z2": rng.normal(size=100)})
    assert r["latent"] == "z1" and r["label"] == "fde_zc" and r["reference"] == "LCDM"
    assert r["sigma"] == pytest.approx((x.mean() + 0.5) / np.hypot(x.std(ddof=1), 0.1), rel=1e-12)
    assert r["tail_probability"] == pytest.approx(np.mean(x <= -0.5))
    # sigma = 0.3 / sqrt(0.09 + 0.01) = 0.949; MC error of the mean 0.3 / sqrt(2e4) = 0.002 -> 0.007 sigma
    assert r["sigma"] == pytest.approx(0.3 / np.sqrt(0.1), abs=0.03)
    assert "consistent with LCDM at 0.9 sigma" in r["text"]


def test_a_shifted_posterior_is_flagged():
    rng = np.random.default_rng(2)
    (r,) = reference_readings(CARD, {"z1": rng.normal(0.5, 0.2, size=5000)})
    assert r["sigma"] > 4 and "departs from LCDM at" in r["text"]


def test_latents_not_in_the_run_are_skipped():
    assert reference_readings(CARD, {"z2": np.zeros(10)}) == []
    assert reference_readings({"latent_names": ["z1"]}, {"z1": np.zeros(10)}) == []


@pytest.mark.parametrize("bad,match", [
    ({"LCDM": {"latents": {"z9": {"median": 0.0, "sd": 1.0}}}}, "names 'z9'"),
    ({"LCDM": {"latents": {"z1": {"median": 0.0, "sd": 0.0}}}}, "positive sd"),
    ({"LCDM": {"latents": {"z1": {"median": float("nan"), "sd": 1.0}}}}, "finite median"),
    ({"LCDM": {"latents": {}}}, "non-empty"),
    ([1, 2], "must be an object"),
])
def test_bad_card_key_is_one_line(bad, match):
    with pytest.raises(BundleError, match=match):
        check_references({**CARD, "latent_references": bad})


def test_reference_on_real_spectra(tmp_path, monkeypatch):
    """cmb-lcdm's held-out CAMB rows: the latent with the largest MI with tau is watched; over the rows with tau in
    a narrow band its spread is a small fraction of its spread over all rows, and the card written into a copy of the
    bundle is read back by a run's summary logic."""
    from latentinfer.bundle import load_model
    from latentinfer.interpret.knn import ksg_mi
    from latentinfer.ive.data import load_corpus
    from latentinfer.ive.encode import encode_corpus
    from latentinfer.ive.reference import latent_reference, update_card_reference
    from latentinfer.paths import available

    src = available("models")["cmb-lcdm"]
    bundle = tmp_path / "models" / "lcdm-copy"
    shutil.copytree(src, bundle)
    monkeypatch.setenv("LATENTINFER_MODELS", str(tmp_path / "models"))
    model = load_model(str(bundle))
    enc = encode_corpus(model)  # the 200 held-out rows
    names = list(enc["param_names"])
    tau = enc["params"][:, names.index("tau")]
    mi = {"latent_names": enc["latent_names"], "parameter_names": names,
          "latent_parameter": {"mi": [[ksg_mi(enc["z"][:, i], enc["params"][:, j]) for j in range(len(names))]
                                      for i in range(enc["z"].shape[1])],
                               "err": np.zeros((enc["z"].shape[1], len(names))).tolist()}}
    c = load_corpus(bundle / "validation.npz", verbose=False)
    band = np.abs(tau - np.median(tau)) < 0.004
    assert band.sum() >= 15
    np.savez(tmp_path / "band.npz", **c.take(np.flatnonzero(band)).to_npz_dict())
    entry = latent_reference(model, mi, enc["z"], [str(tmp_path / "band.npz")], "tau")
    (z_tau, v), = entry["latents"].items()
    i = enc["latent_names"].index(z_tau)
    assert np.argmax(np.asarray(mi["latent_parameter"]["mi"])[:, names.index("tau")]) == i
    assert entry["n"] == band.sum() and v["sd"] < 0.25 * v["sd_all_rows"]
    update_card_reference(str(bundle), "tau-band", entry)
    card = json.loads((bundle / "card.json").read_text())
    assert card["latent_references"]["tau-band"]["latents"][z_tau]["median"] == pytest.approx(v["median"])
    load_model(str(bundle))  # the weights' sha256 still holds

    from latentinfer.posterior import Posterior
    from latentinfer.runner import latent_reference_readings

    rng = np.random.default_rng(0)
    post = Posterior.from_arrays({z_tau: rng.normal(v["median"], 0.05, size=(2, 500))})
    (r,) = latent_reference_readings({"space": "latent", "model": "lcdm-copy"}, post)
    assert abs(r["sigma"]) < 1 and "consistent with tau-band" in r["text"]
    assert latent_reference_readings({"space": "physical", "model": "lcdm-copy"}, post) == []
