"""Unsupervised IVE mode (issue 20, item 1): the card records the mode, no rotation or standardisation touches the
latents, the spectra subset reaches both the loss and the encoder, and beta sits on a per-output scale."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from latentinfer.cli import main
from latentinfer.errors import ConfigError
from latentinfer.ive.config import TrainConfig
from latentinfer.ive.data import SPECTRA, ell_grid
from latentinfer.ive.model import IVE
from latentinfer.ive.train import NoiseChi2, prepare
from latentinfer.ive.unsupervised import (direct_chi2, encode_split, n_outputs, objective_weights, restrict_spectra,
                                          train_unsupervised)

from ive_helpers import needs_corpus, tiny_config, write_slice

pytestmark = needs_corpus

UNSUP = dict(mode="unsupervised", latent_basis="none", beta=1e-4, beta_start=1e-6)


@pytest.fixture(scope="module")
def corpus_slice(tmp_path_factory):
    return write_slice(tmp_path_factory.mktemp("corpus") / "slice.npz")


@pytest.fixture(scope="module")
def prep(corpus_slice):
    return prepare(TrainConfig(**tiny_config(corpus_slice, **UNSUP)), verbose=False)


def test_bundle_records_mode_and_keeps_raw_latents(corpus_slice, tmp_path):
    cfg_path = tmp_path / "u.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config(corpus_slice, **UNSUP)))
    assert main(["train", str(cfg_path), "--out", str(tmp_path / "b")]) == 0
    card = json.loads((tmp_path / "b" / "card.json").read_text())
    assert card["mode"] == "unsupervised"
    assert card["latent_basis"]["method"] == "none"
    assert card["training"]["kl_scale"] == "per_output" and card["training"]["n_outputs"] == 4 * 3199
    from safetensors.torch import load_file

    enc = load_file(str(tmp_path / "b" / "encoder.safetensors"))
    dec = load_file(str(tmp_path / "b" / "decoder.safetensors"))
    eye = torch.eye(3)
    # no ICA, no whitening, no standardisation: the encoder's own latents
    assert torch.equal(enc["z_unmix"], eye) and torch.equal(enc["z_shift"], torch.zeros(3))
    assert torch.equal(dec["decoder.z_mix"], eye) and torch.equal(dec["decoder.z_shift"], torch.zeros(3))


def test_supervised_card_records_mode_too(corpus_slice):
    cfg = TrainConfig(**tiny_config(corpus_slice, max_epochs=2, physical_max_minutes=0.05))
    from latentinfer.ive.pipeline import run_training

    res = run_training(cfg, None, verbose=False)
    assert res["card"]["mode"] == "supervised" and res["card"]["latent_basis"]["method"] in ("ica", "whiten")


def test_quadratic_loss_counts_only_the_chosen_spectra(prep):
    """For TT only, the O(k^2) loss equals the direct noise-weighted sum over TT alone, and the encoder input of the
    other spectra is zero (it cannot see them)."""
    cfg = TrainConfig(**tiny_config(prep.train.corpus.source[0], **UNSUP, spectra=["TT"]))
    torch.manual_seed(0)
    model = IVE(3, prep.k, [16], [16], prep.pca, prep.normaliser, "silu", 4)
    te = restrict_spectra(prep, ["TT"]).test
    with torch.no_grad():
        c_hat, _, _ = model(te.c, sample=False)
        quad = NoiseChi2(restrict_spectra(prep, ["TT"]).G, prep.k)(c_hat, te.c, te.b, te.const).double().numpy()
        x_hat = {s: v.double().numpy() for s, v in model.decoder.expansion.expand(c_hat).items()}
    x = prep.normaliser.encode(te.D)
    direct_tt = direct_chi2(prep, x_hat, x, ["TT"])
    direct_all = direct_chi2(prep, x_hat, x, SPECTRA)
    np.testing.assert_allclose(quad, direct_tt, rtol=2e-4)
    assert (direct_all > 1.05 * direct_tt).all()  # the other spectra carry weight: leaving them in would show
    k = prep.k
    assert torch.count_nonzero(te.c[:, k:]) == 0 and torch.count_nonzero(te.c[:, :k]) > 0
    assert cfg.spectra == ["TT"]


def test_beta_is_per_output(prep, corpus_slice):
    """The same beta is the same KL/reconstruction balance for TT only and TT/TE/EE/PP: the reconstruction term is the
    mean noise-unit chi2 per output (summed chi2 / n_out), so a model with the same per-output error gets the same
    reconstruction term whatever the output count."""
    tt = TrainConfig(**tiny_config(corpus_slice, **UNSUP, spectra=["TT"]))
    full = TrainConfig(**tiny_config(corpus_slice, **UNSUP))
    assert n_outputs(tt.spectra) == 3199 and n_outputs(full.spectra) == 4 * 3199 == 4 * len(ell_grid())
    w_tt, w_full = objective_weights(tt)[0], objective_weights(full)[0]
    assert w_tt == pytest.approx(4 * w_full)
    # one model, residuals per spectrum: the per-output term of all four is the mean of the four per-output terms
    torch.manual_seed(1)
    model = IVE(3, prep.k, [16], [16], prep.pca, prep.normaliser, "silu", 4)
    with torch.no_grad():
        c_hat, _, _ = model(prep.test.c, sample=False)
        x_hat = {s: v.double().numpy() for s, v in model.decoder.expansion.expand(c_hat).items()}
    x = prep.normaliser.encode(prep.test.D)
    per = {s: w * direct_chi2(prep, x_hat, x, [s]) for s, w in ((s, w_tt) for s in SPECTRA)}
    np.testing.assert_allclose(w_full * direct_chi2(prep, x_hat, x, SPECTRA), np.mean(list(per.values()), 0), rtol=1e-10)
    # the old (total) scale would weigh the reconstruction of four spectra 4x more against the same KL
    old = TrainConfig(**tiny_config(corpus_slice))
    assert objective_weights(old)[0] == 1.0


def test_tt_only_training_runs_and_ignores_other_spectra(prep, corpus_slice):
    cfg = TrainConfig(**tiny_config(corpus_slice, **UNSUP, spectra=["TT"], max_epochs=15))
    model, info = train_unsupervised(prep, cfg)
    assert info["n_outputs"] == 3199 and info["kl_scale"] == "per_output"
    c = prep.test.c.clone()
    mu1, _ = encode_split(model, c, ["TT"])
    c[:, prep.k:] += 5.0  # change TE, EE, PP coefficients: a TT-only encoder must not move
    mu2, _ = encode_split(model, c, ["TT"])
    np.testing.assert_array_equal(mu1, mu2)


def test_polish_refines_the_decoder_and_leaves_the_latents(prep, corpus_slice):
    """polish_epochs: the VAE's latents of every row stay bit for bit, and the decoder's validation chi2 from the
    encoder means does not get worse than the VAE left it (it starts from there and keeps only improvements); the
    training rows' chi2 drops (the phase fits them with the KL noise gone)."""
    base = dict(tiny_config(corpus_slice, **UNSUP, max_epochs=15))
    vae, info0 = train_unsupervised(prep, TrainConfig(**base))
    mu0, _ = encode_split(vae, prep.val.c)
    pol, info = train_unsupervised(prep, TrainConfig(**{**base, "polish_epochs": 30}))
    mu1, _ = encode_split(pol, prep.val.c)
    np.testing.assert_array_equal(mu0, mu1)  # same seed, same VAE; polishing never touches the encoder
    p = info["polish"]
    assert p["epochs"] > 0 and p["val_chi2_after"] <= p["val_chi2_before"]
    assert info["best_val_chi2"] <= info0["best_val_chi2"] * (1 + 1e-6)
    loss_fn = NoiseChi2(prep.G, prep.k)
    from latentinfer.ive.train import evaluate_ive
    assert evaluate_ive(pol, loss_fn, prep.train).mean() < evaluate_ive(vae, loss_fn, prep.train).mean()
    assert all(p.requires_grad for p in pol.encoder.parameters())


@pytest.mark.parametrize("over,match", [
    (dict(mode="unsupervised"), "latent_basis' must be none"),
    (dict(UNSUP, joint_physical=1.0), "no parameter supervision"),
    (dict(UNSUP, spectra=["TT", "XX"]), "key 'spectra'"),
    (dict(spectra=["TT"]), "needs mode: unsupervised"),
    (dict(UNSUP, latent_dim=40), "latent_dim' must be 1..32"),
    (dict(UNSUP, latent_dim=0), "latent_dim"),
    (dict(UNSUP, beta=2.0), "per-output scale"),
    (dict(polish_epochs=5), "polish_epochs' needs mode: unsupervised"),
    (dict(UNSUP, polish_epochs=-1), "polish_epochs"),
])
def test_bad_mode_configs_are_one_line(corpus_slice, over, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**tiny_config(corpus_slice, **over))


def test_subset_bundle_refused_exit_2(corpus_slice, tmp_path, capsys):
    cfg_path = tmp_path / "tt.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config(corpus_slice, **UNSUP, spectra=["TT"])))
    assert main(["train", str(cfg_path), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a bundle decodes TT, TE, EE and PP" in err[0]
