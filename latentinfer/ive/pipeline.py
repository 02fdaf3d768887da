"""``latentinfer train``: config -> trained IVE + physical map -> error covariance -> accuracy -> bundle.

Every step is a function of :mod:`latentinfer.ive` (prepare, train_ive, train_physical, set_latent_basis,
fit_error_cov, run_accuracy, write_ive_bundle); this module only chains them and records what happened in the card.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from ..errors import BundleError
from ..paths import corpus_name, corpus_path
from ..io import atomic_write_bytes, read_file, sha256_file, to_jsonable, versions, write_json
from .accuracy import GOAL, bundle_accuracy, check_accuracy, run_accuracy
from .basis import set_latent_basis
from ..bundle.ive import write_ive_bundle
from ..bundle.nets import PhysicalMap
from ..grid import UNITS
from .config import TrainConfig
from .data import ELL_MAX, ELL_MIN, SPECTRA
from ..bundle.errorcov import fit_error_cov
from .physical import train_physical
from .train import NoiseChi2, Prepared, Split, prepare, prior_ranges, torch_threads, train_ive
from ..errors import ConfigError

__all__ = ["run_training", "decode_split", "emulate_split", "refresh_card_accuracy"]

CAMB_SETTINGS = {
    "code": "CAMB 2.0.5", "lmax": 3200, "lens_potential_accuracy": 1, "AccuracyBoost": 1.0, "mnu": 0.06,
    "nnu": 3.046, "num_massive_neutrinos": 1, "tensors": False, "spectra": "lensed total TT, EE, TE; lens_potential PP",
    "ede": "EarlyQuintessence n=3, use_zc=True, zc=10**log10_zc, fde_zc=max(fde_zc, 1e-6), theta_i",
}


def refresh_card_accuracy(folder: str | Path) -> dict:
    """Recompute the accuracy of a written bundle (reloaded, float64) on its ``validation.npz``; store it in the card."""
    folder = Path(folder)
    acc = bundle_accuracy(folder)
    card = read_file(folder / "card.json", error=BundleError)
    card["accuracy"] = to_jsonable(_accuracy_card(acc))
    write_json(folder / "card.json", card)
    return acc


def _accuracy_card(acc: dict) -> dict:
    return {"metric": "dchi2 = r^T C^-1 r, Planck 2018 plik_lite TTTEEE binning and covariance, held-out rows",
            "goal": GOAL, "passed": check_accuracy(acc),
            **{k: {kk: vv for kk, vv in v.items() if kk != "values"} for k, v in acc.items()}}


@torch.no_grad()
def decode_split(model, sp: Split) -> dict[str, np.ndarray]:
    """Encode (mean) -> decode the rows of a split; ``{S: (N, 3199)}`` D_ell, float64."""
    mu, _ = model.encoder(sp.c)
    return {k: v.double().numpy() for k, v in model.decoder.normaliser.decode(
        {s: x.double() for s, x in model.decoder.standardised(mu).items()}).items()}


@torch.no_grad()
def emulate_split(model, pmap, sp: Split) -> dict[str, np.ndarray]:
    """Spectra emulated from the rows' physical parameters; ``{S: (N, 3199)}`` D_ell, float64."""
    z = pmap(torch.as_tensor(sp.corpus.params, dtype=torch.float32))
    return {k: v.double().numpy() for k, v in model.decoder.normaliser.decode(
        {s: x.double() for s, x in model.decoder.standardised(z).items()}).items()}


@torch.no_grad()
def _finetune_card(card: dict, cfg: TrainConfig, prep: Prepared, pmap) -> None:
    """A fine-tune's card: its source (name, folder, weights' sha256), the rows it used and left out, the source's
    latent labels (same basis), and how far the physical map's latents moved on the training rows."""
    src = prep.init
    old = PhysicalMap(np.zeros(len(src.physical["low"])), np.ones(len(src.physical["low"])), cfg.latent_dim,
                      cfg.physical_hidden, cfg.activation)
    old.load_state_dict(src.physical)
    th = torch.as_tensor(prep.train.corpus.params, dtype=torch.float32)
    dz = (pmap(th) - old(th)).double()
    card["training"]["init_from"] = {
        **src.record(cfg.init_from),
        "kept": "normaliser, PCA expansion, latent basis (z_shift, z_mix, z_unmix) and held-out rows of the source",
        "held_out_rows_left_out": dict(zip(cfg.corpus, prep.dropped)),
        **({"replay": prep.replay} if prep.replay else {}),
        "latent_shift_rms": dz.pow(2).mean(0).sqrt().tolist(),
        "latent_shift_note": "rms over the training rows of the physical map's latents, fine-tuned minus source "
                             "(latents have unit variance over the source's training rows)"}
    for key in ("latent_labels", "latent_labels_provenance"):
        if key in src.card:
            card[key] = src.card[key]
    if "latent_labels_provenance" in card:
        card["latent_labels_provenance"] = {**card["latent_labels_provenance"],
                                            "computed_on": "the init_from bundle (same latent basis)"}


def run_training(cfg: TrainConfig, out: str | Path | None, verbose: bool = True) -> dict:
    """Train and (if ``out``) write a bundle. Returns the card-like summary (accuracy, timings)."""
    with torch_threads(cfg.threads):
        return _run_training(cfg, out, verbose)


def _run_training(cfg: TrainConfig, out: str | Path | None, verbose: bool) -> dict:
    t0 = time.time()
    unsup = cfg.mode == "unsupervised"
    if unsup and out is not None and list(cfg.spectra) != list(SPECTRA):

        raise ConfigError(f"train config: key 'spectra' {cfg.spectra}: a bundle decodes TT, TE, EE and PP, so it needs all "
                          "four (a subset is for scans: latentinfer discover)")
    prep: Prepared = prepare(cfg, verbose=verbose)
    t_prep = time.time() - t0
    if unsup:
        from .unsupervised import RAW_BASIS, train_unsupervised

        model, info = train_unsupervised(prep, cfg)
    else:
        model, info = train_ive(prep, cfg)
    pmap, pinfo = train_physical(prep, model, cfg, init=info.pop("physical_map", None))
    model.eval(); pmap.eval()
    if prep.init is not None:  # fine-tune: the source's latent basis, untouched (the latents keep their meaning)
        basis = {**prep.init.card.get("latent_basis", {}), "kept_from": "init_from (not refitted by the fine-tune)"}
    else:
        basis = dict(RAW_BASIS) if unsup else set_latent_basis(model, pmap, prep.train, NoiseChi2(prep.G, cfg.n_pca),
                                                                cfg.latent_basis, cfg.seed)
    # emulator error from the early-stopping validation rows, accuracy on the held-out test rows
    val_dec, val_emu = decode_split(model, prep.val), emulate_split(model, pmap, prep.val)
    errcov = {"latent": fit_error_cov({s: val_dec[s] - prep.val.D[s] for s in SPECTRA}, cfg.error_rank),
              "physical": fit_error_cov({s: val_emu[s] - prep.val.D[s] for s in SPECTRA}, cfg.error_rank)}
    acc = None
    if len(prep.test):
        acc = run_accuracy(prep.test.D, {"encode_decode": decode_split(model, prep.test),
                                         "emulate": emulate_split(model, pmap, prep.test)})
    seconds = time.time() - t0
    capped = info["time_capped"] + pinfo["time_capped"]
    if capped and verbose:
        print(f"warning: max_minutes / physical_max_minutes cut short {', '.join(capped)}: a retrain will not reproduce "
              "these weights bit for bit (raise the time budget, or lower max_epochs so that epochs or patience end training)")
    diverged = [{k: h[k] for k in ("part", "stage", "epoch", "lr")} for h in info["history"] + pinfo["history"]
                if h.get("diverged")]
    if diverged and verbose:
        print("note: training diverged (non-finite loss) in " + ", ".join(f"{h['part']} stage {h['stage']} at epoch "
              f"{h['epoch']}" for h in diverged) + "; each went on from its best parameters at the next, smaller learning rate")
    d = cfg.latent_dim
    c = prep.train.corpus
    card = {
        "name": cfg.name,
        "mode": cfg.mode,
        "description": cfg.description or f"IVE decoder ({d} latents) for lensed CMB TT, TE, EE, PP at ell 2-3200",
        "architecture": {"type": "ive-decoder", "latent_dim": d, "n_pca": cfg.n_pca, "encoder_pca": cfg.encoder_pca, "encoder_hidden": cfg.encoder_hidden,
                         "decoder_hidden": cfg.decoder_hidden, "physical_hidden": cfg.physical_hidden,
                         "activation": cfg.activation, "outputs": {s: ELL_MAX - ELL_MIN + 1 for s in SPECTRA}},
        "latent_names": [f"z{i + 1}" for i in range(d)],
        "latent_labels": {f"z{i + 1}": "" for i in range(d)},
        "ell": {"min": ELL_MIN, "max": ELL_MAX, "step": 1, "n": ELL_MAX - ELL_MIN + 1},
        "units": UNITS,
        "normalisation": {"transform": {"TT": "log D", "EE": "log D", "PP": "log D", "TE": "TE / sqrt(TT EE)"},
                          "reference": "training mean of the transform (decoder.normaliser.ref_<S>)",
                          "scale": "per-ell training std (decoder.normaliser.scale_<S>)",
                          "pca": f"{cfg.n_pca} components per spectrum (decoder.expansion.*)"},
        "corpus": {"files": [{"path": corpus_name(p), "sha256": sha256_file(corpus_path(p))} for p in cfg.corpus]
                   + [{"path": corpus_name(p), "sha256": sha256_file(corpus_path(p)), "role": "LCDM rows at fde_zc = 0 (training and validation only)"}
                      for p in cfg.lcdm_as_ede], "names": c.names,
                   "box_low": c.box_low.tolist(), "box_high": c.box_high.tolist(),
                   "n_train": len(prep.train), "n_val": len(prep.val), "n_test": len(prep.test),
                   "simulator": CAMB_SETTINGS, "derived_names": c.derived_names},
        "priors": {n: {"uniform": [float(lo), float(hi)]} for n, lo, hi in zip(c.names, *prior_ranges(cfg, c))},
        "training": {"config": cfg.to_dict(), "loss": "chi2 in noise units (latentinfer.ive.noise) + beta * KL",
                     **({"loss": "chi2 / n_out in noise units (latentinfer.ive.noise) + beta * KL (per output)",
                         "kl_scale": info["kl_scale"], "n_outputs": info["n_outputs"]} if unsup else {}),
                     "epochs": info["epochs"], "seconds": info["seconds"], "best_val_chi2": info["best_val_chi2"],
                     "physical_epochs": pinfo["epochs"], "physical_seconds": pinfo["seconds"],
                     "physical_best_val_chi2": pinfo["best_val_chi2"], "prepare_seconds": t_prep,
                     **({"physical_start_val_chi2": pinfo["start_val_chi2"]} if prep.init is not None else {}),
                     **{k: info[k] for k in ("decoder_epochs", "decoder_best_val_chi2", "start_val_chi2",
                                             "decoder_start_val_chi2", "vae_val_chi2", "polish") if k in info},
                     "total_seconds": seconds, "threads": cfg.threads,
                     # parts the wall clock (max_minutes) cut short: those do not retrain bit for bit
                     "time_capped": capped, "bit_reproducible": not capped,
                     # stages that hit a non-finite loss: restored to their best parameters, next learning rate
                     "diverged": diverged},
        "latent_basis": basis,
        "error_cov": {"form": "low rank + diagonal (errcov_<path>_U_<S>, errcov_<path>_d_<S>)", "rank": cfg.error_rank,
                      "source": "second moment of residuals on the validation rows, D_ell units"},
        "accuracy": None if acc is None else _accuracy_card(acc),
        "versions": versions(),
    }
    if prep.init is not None:
        _finetune_card(card, cfg, prep, pmap)
    card = to_jsonable(card)
    if out is not None:
        out = Path(out)
        extra = {"train.yaml": yaml.safe_dump(cfg.to_dict(), sort_keys=False)}
        write_ive_bundle(out, card, model.decoder, model.encoder, pmap, errcov, extra_files=extra)
        buf = io.BytesIO()
        np.savez_compressed(buf, **prep.test.corpus.to_npz_dict())
        atomic_write_bytes(out / "validation.npz", buf.getvalue())
        if acc is not None:  # the card reports what the shipped (reloaded, float64) bundle does
            acc = refresh_card_accuracy(out)
        if verbose:
            print(f"wrote bundle {out} in {seconds / 60:.1f} min")
    if verbose and acc is not None:
        for k, v in acc.items():
            print(f"accuracy {k}: dchi2 median {v['median']:.4g}, 99th percentile {v['p99']:.4g}, max {v['max']:.4g}")
    return {"card": card, "accuracy": acc, "history": info["history"], "physical_history": pinfo["history"]}
