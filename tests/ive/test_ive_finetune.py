"""Fine-tuning from a bundle (``init_from``): zero epochs give back the bundle exactly, a few epochs do not make the
loss worse, the held-out rows stay out, the card records the source, and a bad ``init_from`` is one line and exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from latentinfer.bundle import load_model
from latentinfer.cli import main
from latentinfer.errors import ConfigError
from latentinfer.io import sha256_file
from latentinfer.ive.config import TrainConfig
from latentinfer.ive.data import full_spectra, load_corpus
from latentinfer.ive.pipeline import run_training
from latentinfer.ive.train import NoiseChi2, evaluate_ive, prepare, train_ive

from conftest import write_toy_bundle
from ive_helpers import needs_corpus, tiny_config, write_slice

pytestmark = needs_corpus

_KINDS = {"decoder_first": dict(decoder_first=True, joint_physical=1.0), "joint": dict(joint_physical=1.0)}


@pytest.fixture(scope="module")
def corpus_slice(tmp_path_factory):
    return write_slice(tmp_path_factory.mktemp("corpus") / "slice.npz")


@pytest.fixture(scope="module", params=list(_KINDS))
def source(request, corpus_slice, tmp_path_factory):
    """A tiny trained bundle (decoder first, or the IVE and map trained jointly) to fine-tune from."""
    out = tmp_path_factory.mktemp(f"src_{request.param}") / "src"
    cfg = tiny_config(corpus_slice, max_epochs=8, **_KINDS[request.param])
    torch.manual_seed(0)
    run_training(TrainConfig(**cfg), out, verbose=False)
    return out, cfg


def _finetune_cfg(source, **over) -> dict:
    folder, cfg = source
    return {**{k: v for k, v in cfg.items() if k != "n_test"}, "init_from": str(folder), **over}


def _outputs(folder):
    """Decoded spectra at fixed latents, encode -> decode and emulate on the held-out rows (float64)."""
    m = load_model(folder)
    c = load_corpus(folder / "validation.npz", verbose=False)
    D = full_spectra(c)
    z = torch.as_tensor(np.random.default_rng(1).normal(size=(7, m.module.z_mix.shape[0])))
    with torch.no_grad():
        out = {f"z_{k}": v.numpy() for k, v in m(z).items()}
        out.update({f"dec_{k}": v.numpy() for k, v in m(m.encode(D)).items()})
    out.update({f"emu_{k}": v for k, v in m.emulate(dict(zip(c.names, c.params.T))).items()})
    return out


def test_zero_epochs_give_back_the_bundle(source, tmp_path):
    src, _ = source
    out = tmp_path / "ft"
    run_training(TrainConfig(**_finetune_cfg(source, max_epochs=0)), out, verbose=False)
    a, b = _outputs(src), _outputs(out)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    for f in ("encoder.safetensors", "physical.safetensors"):
        assert sha256_file(out / f) == sha256_file(src / f)
    card, old = json.loads((out / "card.json").read_text()), json.loads((src / "card.json").read_text())
    rec = card["training"]["init_from"]
    assert rec["name"] == str(src) and rec["bundle"] == old["name"]
    assert rec["sha256"] == {"decoder.safetensors": old["sha256"], **old["files"]}
    assert rec["held_out_rows_left_out"] == {card["training"]["config"]["corpus"][0]: old["corpus"]["n_test"]}
    assert max(rec["latent_shift_rms"]) == 0.0
    assert card["latent_basis"]["kept_from"].startswith("init_from")
    assert {k: v for k, v in card["latent_basis"].items() if k != "kept_from"} == old["latent_basis"]
    assert card["latent_labels"] == old["latent_labels"]
    assert card["accuracy"]["encode_decode"]["median"] == old["accuracy"]["encode_decode"]["median"]
    np.testing.assert_array_equal(np.load(out / "validation.npz")["params"], np.load(src / "validation.npz")["params"])


def test_finetune_keeps_held_out_rows_and_does_not_get_worse(source):
    src, _ = source
    cfg = TrainConfig(**_finetune_cfg(source, max_epochs=4, lr_stages=[3e-4], batch_stages=[16]))
    prep = prepare(cfg, verbose=False)
    test = load_corpus(src / "validation.npz", verbose=False)
    np.testing.assert_array_equal(prep.test.corpus.params, test.params)
    seen = {tuple(r) for r in np.concatenate([prep.train.corpus.params, prep.val.corpus.params])}
    assert not any(tuple(r) in seen for r in test.params)
    assert prep.dropped == [len(test)] and len(prep.train) + len(prep.val) + len(test) == 157
    loss = NoiseChi2(prep.G, cfg.n_pca)
    src_model = load_model(src)  # its encode -> decode chi2 on the fine-tune's validation rows, in float32
    model0, _ = train_ive(prep, TrainConfig(**{**cfg.to_dict(), "max_epochs": 0}))
    start = evaluate_ive(model0, loss, prep.val).mean()
    with torch.no_grad():
        mu, _ = src_model.encoder(prep.val.c.double())
        c_src = src_model.module.coefficients(mu).float()
    np.testing.assert_allclose(start, loss(c_src, prep.val.c, prep.val.b, prep.val.const).numpy().mean(), rtol=1e-4)
    model, info = train_ive(prep, cfg)
    assert evaluate_ive(model, loss, prep.val).mean() <= start
    hist = [h for h in info["history"] if h["part"] in ("decoder", "train")]
    assert len(hist) == 4 and hist[-1]["train_objective"] <= hist[0]["train_objective"]
    assert all(torch.equal(getattr(model.decoder, b), getattr(model0.decoder, b)) for b in ("z_shift", "z_mix"))
    assert torch.equal(model.encoder.z_unmix, model0.encoder.z_unmix)


def _cli(tmp_path, capsys, cfg) -> str:
    p = tmp_path / "ft.yaml"
    p.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(p), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and not (tmp_path / "out").exists()
    return err


def test_bad_init_from_is_one_line_and_exit_2(source, tmp_path, capsys):
    assert "init_from" in _cli(tmp_path, capsys, _finetune_cfg(source, init_from=str(tmp_path / "nope")))
    assert "'latent_dim' is 4" in _cli(tmp_path, capsys, _finetune_cfg(source, latent_dim=4))
    assert "'decoder_hidden'" in _cli(tmp_path, capsys, _finetune_cfg(source, decoder_hidden=[17]))
    toy = write_toy_bundle(tmp_path / "toy")
    assert "not an IVE" in _cli(tmp_path, capsys, _finetune_cfg(source, init_from=str(toy)))
    with pytest.raises(ConfigError, match="test_from"):
        TrainConfig(**_finetune_cfg(source, test_from=[5]))
    with pytest.raises(ConfigError, match="max_epochs"):
        TrainConfig(**_finetune_cfg(source, init_from="", max_epochs=0))


_CORE_BOX = "ombh2=0.0215:0.0233,omch2=0.112:0.128,H0=63.5:71.5,logA=2.95:3.14,ns=0.94:0.99,tau=0.02:0.09"


def test_replay_rows_are_emulated_by_the_source_and_train_only(source):
    """``init_replay``: the design that made the slice (lcdm_core: Sobol seed 13) comes back row for row; its rows that
    are the source's held-out rows are left out, the rest join training (not validation) with the source's emulated
    spectra; the encoder does not train on them."""
    src, cfg0 = source
    over = dict(init_replay={"core": {"model": "lcdm", "n": 160, "seed": 13, "box": _CORE_BOX}},
                init_replay_box={"H0": [63.5, 69.0]}, max_epochs=2)
    if not cfg0.get("decoder_first"):
        with pytest.raises(ConfigError, match="decoder_first"):
            TrainConfig(**_finetune_cfg(source, **over))
        return
    cfg = TrainConfig(**_finetune_cfg(source, **over))
    prep = prepare(cfg, verbose=False)
    rep = prep.replay
    test = load_corpus(src / "validation.npz", verbose=False)
    assert rep["left_out_held_out"] == len(test)  # every held-out row is a row of the design
    n = rep["rows"]
    P = prep.train.corpus.params[-n:]
    assert 0 < n < 160 - len(test) and P[:, 2].max() <= 69.0
    assert not any(tuple(r) in {tuple(t) for t in test.params} for r in P)
    assert len(prep.val) == round(cfg.val_fraction * (157 - len(test)))  # CAMB rows only
    emu = load_model(src).emulate(dict(zip(test.names, P.T)))
    for s in emu:  # the same float64 network on another batch: equal to a few ulp (BLAS blocking)
        np.testing.assert_allclose(prep.train.D[s][-n:], emu[s], rtol=1e-13, atol=0)
    _, info = train_ive(prep, cfg)
    assert np.isfinite([h["val"] for h in info["history"]]).all()
    assert info["decoder_start_val_chi2"] >= info["decoder_best_val_chi2"]


def test_replay_config_errors(source):
    with pytest.raises(ConfigError, match="needs init_from"):
        TrainConfig(**_finetune_cfg(source, init_from="", init_replay={"a": {"model": "ede", "n": 10, "seed": 1}}))
    with pytest.raises(ConfigError, match="init_replay"):
        TrainConfig(**_finetune_cfg(source, init_replay={"a": {"model": "ede", "n": 10}}))
    with pytest.raises(ConfigError, match="rows"):
        TrainConfig(**_finetune_cfg(source, init_replay={"a": {"model": "ede", "n": 10, "seed": 1, "rows": "5:50"}}))
    with pytest.raises(ConfigError, match="init_replay_box"):
        TrainConfig(**_finetune_cfg(source, init_replay_box={"H0": [70, 60]}))


def test_encoder_log_variance_stays_finite_when_the_variance_underflows():
    from latentinfer.bundle.nets import Encoder

    enc = Encoder(4, 2, [8])
    with torch.no_grad():
        enc.net[-1].bias[2:] = -200.0  # exp(-200) underflows in float32
        enc.net[-1].weight.zero_()
    mu, logvar = enc(torch.zeros(3, 16))
    assert torch.isfinite(logvar).all() and torch.isfinite(mu).all()
