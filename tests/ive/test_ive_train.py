"""IVE data, loss and training: normaliser round trip, the quadratic chi^2 against the direct sum, failed rows
skipped with a count, config errors, determinism, and a tiny end-to-end bundle."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from latentinfer.cli import main
from latentinfer.errors import ConfigError, DataError
from latentinfer.ive.config import TrainConfig
from latentinfer.ive.data import SPECTRA, Normaliser, ell_grid, full_spectra, load_corpus
from latentinfer.ive.train import NoiseChi2, evaluate_ive, prepare, train_ive

from ive_helpers import needs_corpus, tiny_config, write_slice

pytestmark = needs_corpus


@pytest.fixture(scope="module")
def corpus_slice(tmp_path_factory):
    return write_slice(tmp_path_factory.mktemp("corpus") / "slice.npz")


def test_failed_rows_skipped_with_count(corpus_slice, capsys):
    c = load_corpus(corpus_slice)
    assert len(c) == 157
    assert "skipped 3 of 160 rows" in capsys.readouterr().out
    assert all(np.isfinite(v).all() for v in c.spectra.values())


def test_all_failed_or_missing_key_is_clear_error(tmp_path):
    p = write_slice(tmp_path / "bad.npz", n=4, n_bad=4)
    with pytest.raises(DataError, match="no usable rows"):
        load_corpus(p, verbose=False)
    d = dict(np.load(p))
    del d["PP"]
    np.savez(tmp_path / "nopp.npz", **d)
    with pytest.raises(DataError, match="missing key 'PP'"):
        load_corpus(tmp_path / "nopp.npz")


def test_spline_and_normaliser_round_trip(corpus_slice):
    c = load_corpus(corpus_slice, verbose=False)
    D = full_spectra(c.take(np.arange(20)))
    assert D["TT"].shape == (20, 3199)
    stored = np.searchsorted(ell_grid(), c.ell)  # the spline passes through the stored points
    np.testing.assert_allclose(D["TT"][:, stored], c.spectra["TT"][:20], rtol=1e-12)
    norm = Normaliser.fit(D)
    x = norm.encode(D)
    back = norm.decode({k: torch.as_tensor(v) for k, v in x.items()})
    for s in SPECTRA:
        np.testing.assert_allclose(back[s].numpy(), D[s], rtol=1e-10, atol=1e-12 * np.abs(D[s]).max())


def test_quadratic_chi2_equals_direct_noise_weighted_sum(corpus_slice):
    """The O(k^2) loss must equal sum_S sum_l (w_l (x_hat - x))^2 computed on the full ell grid."""
    cfg = TrainConfig(**tiny_config(corpus_slice))
    prep = prepare(cfg, verbose=False)
    from latentinfer.ive.model import PCAExpansion

    exp = PCAExpansion(prep.pca).double()
    sp = prep.val
    c_hat = sp.c.double() + 0.1 * torch.randn(sp.c.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x_hat = exp.expand(c_hat)
    x = prep.normaliser.encode(sp.D)
    direct = sum((((x_hat[s].numpy() - x[s]) * prep.weights[s]) ** 2).sum(1) for s in SPECTRA)
    quad = NoiseChi2(prep.G.double(), prep.k)(c_hat, sp.c.double(), sp.b.double(), sp.const.double()).numpy()
    np.testing.assert_allclose(quad, direct, rtol=2e-4)  # float32 storage of G, b, c


def test_config_unknown_key_and_bad_values(tmp_path, corpus_slice, capsys):
    with pytest.raises(ConfigError, match="unknown key 'latent_dims'"):
        TrainConfig.from_dict({"corpus": [str(corpus_slice)], "latent_dims": 4})
    with pytest.raises(ConfigError, match="key 'beta'"):
        TrainConfig.from_dict({"corpus": [str(corpus_slice)], "beta": "big"})
    with pytest.raises(ConfigError, match="key 'activation'"):
        TrainConfig.from_dict({"corpus": [str(corpus_slice)], "activation": "sigmoid"})
    with pytest.raises(ConfigError, match="key 'latent_basis' must be one of ica, whiten, standardise"):
        TrainConfig.from_dict({"corpus": [str(corpus_slice)], "latent_basis": "pca"})
    with pytest.raises(ConfigError, match="missing key 'corpus'"):
        TrainConfig.from_dict({"latent_dim": 3})
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump({"corpus": [str(corpus_slice)], "n_pcaa": 3}))
    assert main(["train", str(p), "--out", str(tmp_path / "m")]) == 2
    assert "unknown key 'n_pcaa'" in capsys.readouterr().err


def test_training_is_deterministic_and_learns(corpus_slice):
    cfg = TrainConfig(**tiny_config(corpus_slice, max_epochs=6))
    prep = prepare(cfg, verbose=False)
    m1, i1 = train_ive(prep, cfg)
    m2, i2 = train_ive(prep, cfg)
    assert [h["val"] for h in i1["history"]] == [h["val"] for h in i2["history"]]
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    # better than predicting the training-mean spectrum for every row (whitened coefficients 0)
    sp = prep.val
    baseline = NoiseChi2(prep.G, prep.k)(torch.zeros_like(sp.c), sp.c, sp.b, sp.const).mean()
    assert i1["best_val_chi2"] < 0.5 * float(baseline)


def test_lcdm_rows_join_ede_training_at_fde_zero(tmp_path, capsys):
    """LCDM rows enter an EDE training set at fde_zc = 0, with log10_zc, theta_i spread over the EDE box; the
    held-out EDE test rows and the EDE training rows are the same with and without them."""
    ede = write_slice(tmp_path / "ede.npz", n=60, n_bad=0, source="ede.npz")
    lcdm = write_slice(tmp_path / "lcdm.npz", n=50, n_bad=2, source="lcdm.npz")
    base = TrainConfig(**tiny_config(ede, n_test=10))
    aug = TrainConfig(**tiny_config(ede, n_test=10, lcdm_as_ede=[str(lcdm)]))
    p0, p1 = prepare(base, verbose=False), prepare(aug, verbose=True)
    assert "48 LCDM rows join as EDE rows at fde_zc = 0" in capsys.readouterr().out
    np.testing.assert_array_equal(p1.test.corpus.params, p0.test.corpus.params)
    assert len(p1.train) + len(p1.val) == len(p0.train) + len(p0.val) + 48
    rows = np.concatenate([p1.train.corpus.params, p1.val.corpus.params])
    names = p1.train.corpus.names
    is_lcdm = rows[:, names.index("fde_zc")] == 0
    assert is_lcdm.sum() == 48
    with np.load(lcdm) as f:
        good = f["params"][2:]
    np.testing.assert_array_equal(np.sort(rows[is_lcdm, :6], axis=0), np.sort(good, axis=0))
    for name in ("log10_zc", "theta_i"):  # spread over the box, not pinned to one value
        j = names.index(name)
        v = rows[is_lcdm, j]
        assert p1.train.corpus.box_low[j] <= v.min() < v.max() <= p1.train.corpus.box_high[j]
        assert v.std() > 0.2 * (p1.train.corpus.box_high[j] - p1.train.corpus.box_low[j])
    np.testing.assert_array_equal(p1.train.corpus.box_low, p0.train.corpus.box_low)
    np.testing.assert_array_equal(p1.train.corpus.box_high, p0.train.corpus.box_high)


def test_lcdm_as_ede_bad_input(tmp_path, capsys):
    ede = write_slice(tmp_path / "ede.npz", n=40, n_bad=0, source="ede.npz")
    with pytest.raises(DataError, match="are not the EDE corpus's"):  # an EDE file given as LCDM rows
        prepare(TrainConfig(**tiny_config(ede, n_test=5, lcdm_as_ede=[str(ede)])), verbose=False)
    d = dict(np.load(write_slice(tmp_path / "lcdm.npz", n=20, n_bad=0, source="lcdm.npz")))
    d["params"][3, 2] = 85.0  # H0 outside the EDE box [60, 80]
    np.savez(tmp_path / "out.npz", **d)
    cfg = tiny_config(ede, n_test=5, lcdm_as_ede=[str(tmp_path / "out.npz")])
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "parameter 'H0' leaves the EDE box [60.0, 80.0]" in err and "Traceback" not in err


def test_joint_physical_map_trains_with_the_ive(corpus_slice):
    """joint_physical > 0: the map comes out of train_ive in the final latent basis (its emulated spectra are as
    good as the encoder's reconstructions, far better than the mean spectrum), and train_physical only improves it."""
    from latentinfer.ive.physical import evaluate_physical, train_physical

    cfg = TrainConfig(**tiny_config(corpus_slice, max_epochs=30, joint_physical=1.0))
    prep = prepare(cfg, verbose=False)
    model, info = train_ive(prep, cfg)
    pmap = info["physical_map"]
    loss = NoiseChi2(prep.G, prep.k)
    sp = prep.val
    baseline = float(loss(torch.zeros_like(sp.c), sp.c, sp.b, sp.const).mean())
    emu = float(evaluate_physical(pmap, model, loss, sp).mean())
    assert emu < 0.5 * baseline
    assert emu < 3 * float(np.mean(info["history"][-1]["val"]) + 1)
    tuned, pinfo = train_physical(prep, model, cfg, init=pmap)
    assert float(evaluate_physical(tuned, model, loss, sp).mean()) <= emu * (1 + 1e-6)
    assert "physical_map" not in train_ive(prep, TrainConfig(**tiny_config(corpus_slice, max_epochs=2)))[1]
    with pytest.raises(ConfigError, match="joint_physical"):
        TrainConfig(**tiny_config(corpus_slice, joint_physical=-1.0))


def test_direct_baseline_learns_and_writes_json(corpus_slice, tmp_path, capsys):
    """The no-bottleneck reference emulator: deterministic, far better than the mean spectrum, written by the CLI."""
    from latentinfer.ive.scan import direct_baseline

    cfg = TrainConfig(**tiny_config(corpus_slice, max_epochs=20))
    prep = prepare(cfg, verbose=False)
    r1, r2 = direct_baseline(cfg, prep=prep), direct_baseline(cfg, prep=prep)
    assert r1["dchi2_values"] == r2["dchi2_values"] and r1["n_test"] == len(prep.test)
    sp = prep.val
    baseline = float(NoiseChi2(prep.G, prep.k)(torch.zeros_like(sp.c), sp.c, sp.b, sp.const).mean())
    assert r1["best_val_chi2"] < 0.2 * baseline
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(tiny_config(corpus_slice, max_epochs=3)))
    assert main(["train", str(p), "--baseline", "--out", str(tmp_path / "b")]) == 0
    assert "direct emulator" in capsys.readouterr().out and (tmp_path / "b" / "baseline.json").is_file()


def test_decoder_first_training(corpus_slice):
    """decoder_first: the map + decoder are fitted first, then the encoder through the frozen decoder; both paths
    come out in the final latent basis, far better than the mean spectrum; deterministic; needs joint_physical > 0."""
    from latentinfer.ive.physical import evaluate_physical

    cfg = TrainConfig(**tiny_config(corpus_slice, max_epochs=30, decoder_first=True, joint_physical=1.0))
    prep = prepare(cfg, verbose=False)
    model, info = train_ive(prep, cfg)
    again, _ = train_ive(prep, cfg)
    for (k, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k
    parts = [h["part"] for h in info["history"]]
    assert parts[0] == "decoder" and parts[-1] == "encoder" and parts == sorted(parts, key=["decoder", "encoder"].index)
    loss = NoiseChi2(prep.G, prep.k)
    sp = prep.val
    baseline = float(loss(torch.zeros_like(sp.c), sp.c, sp.b, sp.const).mean())
    enc = float(evaluate_ive(model, loss, sp).mean())
    emu = float(evaluate_physical(info["physical_map"], model, loss, sp).mean())
    assert enc < 0.5 * baseline and emu < 0.5 * baseline
    np.testing.assert_allclose(enc, info["best_val_chi2"], rtol=1e-4)  # the standardised basis decodes the same
    with pytest.raises(ConfigError, match="joint_physical"):
        TrainConfig(**tiny_config(corpus_slice, decoder_first=True))


def test_time_capped_training_is_flagged(corpus_slice, capsys):
    """Only the wall clock makes a retrain differ: parts that max_minutes cut short are named in the card
    (bit_reproducible false) and in a warning; parts ended by epochs or patience are not."""
    from latentinfer.ive.pipeline import run_training

    ok = run_training(TrainConfig(**tiny_config(corpus_slice, max_epochs=3)), None, verbose=True)
    assert ok["card"]["training"]["time_capped"] == [] and ok["card"]["training"]["bit_reproducible"] is True
    assert ok["card"]["training"]["diverged"] == []
    assert "warning" not in capsys.readouterr().out
    cfg = TrainConfig(**tiny_config(corpus_slice, max_epochs=10**6, patience=10**6, max_minutes=0.002,
                                    physical_max_minutes=0.002))
    capped = run_training(cfg, None, verbose=True)["card"]["training"]
    assert capped["time_capped"] == ["train", "physical map phase 1", "physical map phase 2"]
    assert capped["bit_reproducible"] is False
    assert "will not reproduce these weights bit for bit" in capsys.readouterr().out


def test_diverged_stage_recovers_from_its_best_parameters(corpus_slice):
    """A stage whose loss turns non-finite ends at once: the best parameters come back, Adam's moments (inf / NaN)
    are cleared and the next, smaller learning rate goes on. Before, the restored model kept stepping with NaN
    moments and stayed NaN to the end (the cmb-ede encoder on 4625 EDE rows, 2026-12-03). Built to diverge: a
    learning rate of 1e30 sends the quadratic's objective to inf in float32 within one epoch."""
    from latentinfer.ive.train import staged_fit

    cfg = TrainConfig(**tiny_config(corpus_slice, lr_stages=[1e30, 1e-2], batch_stages=[8, 8], patience=50,
                                    max_epochs=300))
    p = torch.nn.Parameter(torch.ones(4))
    history: list = []
    best, epoch = staged_fit([p], lambda idx, _: (p**2).sum(), lambda: (p**2).sum(), 16, cfg,
                             torch.Generator().manual_seed(0), np.inf, history, "quadratic")
    bad = [h for h in history if h.get("diverged")]
    assert len(bad) == 1 and bad[0]["stage"] == 0 and bad[0]["epoch"] == 0
    assert all(h["stage"] == 1 for h in history[1:]) and len(history) > 50
    assert torch.isfinite(p).all() and np.isfinite(best) and best < 1e-3
    np.testing.assert_allclose(float((p.detach() ** 2).sum()), best)  # the best parameters are left in place


def test_prior_box_sets_the_bundle_priors_and_holds_the_test_rows(corpus_slice, tmp_path, capsys):
    """``prior_box`` narrows (or sets) the bundle's default priors apart from the training box; held-out rows outside
    it, an unknown parameter or a bad range are one-line errors (exit 2)."""
    from latentinfer.ive.pipeline import run_training
    from latentinfer.ive.train import prior_ranges

    cfg = TrainConfig(**tiny_config(corpus_slice, max_epochs=3, prior_box={"ns": [0.935, 0.995]}))
    prep = prepare(cfg, verbose=False)
    lo, hi = prior_ranges(cfg, prep.train.corpus)
    j = prep.train.corpus.names.index("ns")
    assert (lo[j], hi[j]) == (0.935, 0.995)
    k = prep.train.corpus.names.index("H0")
    assert (lo[k], hi[k]) == (prep.train.corpus.box_low[k], prep.train.corpus.box_high[k])
    assert (prep.test.corpus.box_low[j], prep.test.corpus.box_high[j]) == (0.935, 0.995)  # validation.npz's box
    run_training(cfg, tmp_path / "m", verbose=False)
    card = __import__("json").loads((tmp_path / "m" / "card.json").read_text())
    assert card["priors"]["ns"] == {"uniform": [0.935, 0.995]}
    assert card["priors"]["H0"] == {"uniform": [float(prep.train.corpus.box_low[k]), float(prep.train.corpus.box_high[k])]}
    assert card["corpus"]["box_low"][j] == float(prep.train.corpus.box_low[j])   # the training box is kept as it is

    for over, needle in (({"H0": [66.0, 69.0]}, "held-out test rows have H0 outside prior_box"),
                         ({"fde_zc": [0.0, 0.15]}, "names 'fde_zc', not a corpus parameter"),
                         ({"H0": [70.0, 65.0]}, "key 'prior_box'")):
        p = tmp_path / "c.yaml"
        p.write_text(yaml.safe_dump(tiny_config(corpus_slice, max_epochs=3, prior_box=over)))
        assert main(["train", str(p), "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err
