"""Unsupervised IVE training: latents that are discovered, not assigned.

``mode: unsupervised`` in a training config trains the plain beta-VAE of Piras et al. (2025, arXiv:2502.09810):

* no parameter supervision: the encoder and decoder never see the physical parameters (no ``joint_physical``, no
  ``decoder_first``); the physical map theta -> z that ``latentinfer train`` fits afterwards is a post-hoc emulator
  of the frozen latents and does not shape them;
* no change of basis: the latents are the encoder's own (``latent_basis: none``), neither standardised nor rotated
  (ICA would line them up with parameters *because the corpus draws the parameters independently*; a latent the
  KL term switched off would be blown up to unit variance by standardising);
* the KL weight on a scale that does not depend on the number of outputs::

      objective per row = chi2 / n_out + beta(epoch) * KL,     n_out = (number of spectra) x 3199

  chi2 in noise units (:mod:`latentinfer.ive.noise`) summed over the spectra the config names (``spectra``) and every
  ell 2..3200. A beta means the same balance of KL against the mean squared error per output, in noise units, for
  TT only and for TT/TE/EE/PP (``kl_scale: per_output``). On the old scale (``total``: chi2 + beta KL, supervised
  bundles) beta_total = beta_per_output x n_out.
* ``spectra: [TT]`` (any subset of TT, TE, EE, PP) trains on those spectra alone: the encoder sees only their PCA
  coefficients (the others are set to zero) and the loss counts only their noise-unit residuals.

The anchor's loss is the mean squared error of standardised log10 D_ell (per-ell corpus standard deviation); ours
weights the same residual by the data's noise, which is 1-2 orders of magnitude finer than the corpus spread, so the
beta values are not numerically the anchor's: ``anchor_beta_factor`` gives the ratio for a prepared corpus.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from ..errors import ConfigError
from .data import SPECTRA, ell_grid
from .model import IVE
from .train import NoiseChi2, Prepared, Split, evaluate_ive, kl_divergence, staged_fit, torch_threads

__all__ = ["MODES", "MAX_LATENTS", "MAX_BETA", "check_mode", "kl_scale_of", "n_outputs", "restrict_spectra",
           "direct_chi2", "train_unsupervised", "encode_split", "kl_per_latent", "RAW_BASIS", "anchor_beta_factor"]

MODES = ("supervised", "unsupervised")
MAX_LATENTS = 32
MAX_BETA = 1.0  # per output: beyond this the KL of one latent outweighs a 1-sigma error at every output
RAW_BASIS = {"method": "none", "note": "unsupervised mode: raw encoder latents (no standardisation, no rotation)"}


def check_mode(cfg) -> None:
    """Validate the mode-related keys of a :class:`~latentinfer.ive.config.TrainConfig` (one line per problem)."""
    bad = [s for s in cfg.spectra if s not in SPECTRA]
    if not cfg.spectra or bad or len(set(cfg.spectra)) != len(cfg.spectra):
        raise ConfigError(f"train config: key 'spectra' must be distinct names out of {', '.join(SPECTRA)}, got {cfg.spectra!r}")
    if not 1 <= cfg.latent_dim <= MAX_LATENTS:
        raise ConfigError(f"train config: key 'latent_dim' must be 1..{MAX_LATENTS}, got {cfg.latent_dim!r}")
    if cfg.mode == "supervised":
        if cfg.polish_epochs:
            raise ConfigError("train config: key 'polish_epochs' needs mode: unsupervised")
        if list(cfg.spectra) != list(SPECTRA):
            raise ConfigError("train config: key 'spectra' (a subset) needs mode: unsupervised")
        if cfg.latent_basis == "none":
            raise ConfigError("train config: key 'latent_basis' none needs mode: unsupervised")
        if cfg.kl_scale == "per_output":
            raise ConfigError("train config: key 'kl_scale' per_output needs mode: unsupervised")
        return
    if cfg.joint_physical > 0 or cfg.decoder_first:
        raise ConfigError("train config: mode unsupervised takes no parameter supervision "
                          "(key 'joint_physical' must be 0 and 'decoder_first' false)")
    if cfg.latent_basis != "none":
        raise ConfigError(f"train config: mode unsupervised keeps the raw latents: key 'latent_basis' must be none, "
                          f"got {cfg.latent_basis!r}")
    if kl_scale_of(cfg) == "per_output" and not 0 <= cfg.beta <= MAX_BETA:
        raise ConfigError(f"train config: key 'beta' must be in [0, {MAX_BETA}] on the per-output scale, got {cfg.beta!r}")


def kl_scale_of(cfg) -> str:
    """``per_output`` or ``total``: the config's ``kl_scale`` with ``auto`` resolved by the mode."""
    if cfg.kl_scale != "auto":
        return cfg.kl_scale
    return "per_output" if cfg.mode == "unsupervised" else "total"


def n_outputs(spectra) -> int:
    """Outputs the loss counts: 3199 multipoles (ell 2..3200) per spectrum."""
    return len(list(spectra)) * len(ell_grid())


def _mask(spectra, k: int) -> torch.Tensor:
    return torch.cat([torch.full((k,), float(s in spectra)) for s in SPECTRA])


def restrict_spectra(prep: Prepared, spectra) -> Prepared:
    """A copy of ``prep`` whose loss counts only ``spectra`` and whose coefficients of the other spectra are zero
    (the encoder does not see them). The identity for all four spectra."""
    spectra = list(spectra)
    if spectra == list(SPECTRA):
        return prep
    k = prep.k
    m = _mask(spectra, k)
    G = prep.G * torch.tensor([float(s in spectra) for s in SPECTRA])[:, None, None]

    def split(sp: Split) -> Split:
        x = prep.normaliser.encode(sp.D)
        const = np.zeros(len(sp))
        for s in spectra:
            V, mu = prep.pca[f"comp_{s}"], prep.pca[f"mean_{s}"]
            perp = x[s] - mu - ((x[s] - mu) @ V.T) @ V
            const += ((perp * prep.weights[s]) ** 2).sum(1)
        return Split(sp.corpus, sp.D, sp.c * m, sp.b * m, torch.as_tensor(const, dtype=torch.float32))

    return dataclasses.replace(prep, train=split(prep.train), val=split(prep.val), test=split(prep.test), G=G)


def direct_chi2(prep: Prepared, x_hat: dict, x: dict, spectra) -> np.ndarray:
    """The loss's chi2 summed directly over ``spectra`` and every ell: ``sum_S sum_l (w_S(l) (x_hat - x))^2``
    (standardised targets ``{S: (N, 3199)}``); the quadratic form of :class:`NoiseChi2` must equal it."""
    return sum((((np.asarray(x_hat[s]) - x[s]) * prep.weights[s]) ** 2).sum(1) for s in spectra)


def _beta(cfg, epoch: int) -> float:
    f = min(1.0, epoch / max(cfg.anneal_epochs, 1))
    if cfg.beta_start > 0 and cfg.beta > 0:
        return float(cfg.beta_start * (cfg.beta / cfg.beta_start) ** f)
    return cfg.beta * f


def objective_weights(cfg) -> tuple[float, float]:
    """(weight of the summed chi2, factor on beta): per output, ``1 / n_out`` and 1; total, 1 and 1."""
    if kl_scale_of(cfg) == "per_output":
        return 1.0 / n_outputs(cfg.spectra), 1.0
    return 1.0, 1.0


def train_unsupervised(prep: Prepared, cfg) -> tuple[IVE, dict]:
    """Train the beta-VAE on ``chi2 / n_out + beta KL`` over ``cfg.spectra``, with the staged learning rates, batch
    sizes and early stopping of :func:`latentinfer.ive.train.staged_fit`. The latents are left as the encoder makes
    them. Returns ``(model, info)`` like :func:`~latentinfer.ive.train.train_ive`."""
    with torch_threads(cfg.threads):
        return _train(prep, cfg)


def _train(prep: Prepared, cfg) -> tuple[IVE, dict]:
    prep_r = restrict_spectra(prep, cfg.spectra)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = IVE(cfg.latent_dim, cfg.n_pca, cfg.encoder_hidden, cfg.decoder_hidden, prep.pca, prep.normaliser,
                cfg.activation, cfg.encoder_pca)
    loss_fn = NoiseChi2(prep_r.G, cfg.n_pca)
    tr, va = prep_r.train, prep_r.val
    w_chi2, _ = objective_weights(cfg)

    def step(idx, epoch):
        c_hat, mu, logvar = model(tr.c[idx])
        chi2 = loss_fn(c_hat, tr.c[idx], tr.b[idx], tr.const[idx])
        return (w_chi2 * chi2 + _beta(cfg, epoch) * kl_divergence(mu, logvar)).mean()

    def validate():  # early stopping on the objective at the final beta (reconstruction and KL both count)
        c_hat, mu, logvar = model(va.c, sample=False)
        chi2 = loss_fn(c_hat, va.c, va.b, va.const)
        return float((w_chi2 * chi2 + cfg.beta * kl_divergence(mu, logvar)).mean())

    t0, history, capped = time.time(), [], []
    best, epoch = staged_fit([p for p in model.parameters() if p.requires_grad], step, validate, len(tr), cfg, gen,
                             t0 + 60 * cfg.max_minutes, history, "train", capped=capped)
    model.eval()
    info = {"epochs": epoch, "seconds": time.time() - t0, "vae_val_chi2": float(evaluate_ive(model, loss_fn, va).mean()),
            "best_val_objective": best, "history": history, "time_capped": capped,
            "n_outputs": n_outputs(cfg.spectra), "kl_scale": kl_scale_of(cfg), "spectra": list(cfg.spectra)}
    if cfg.polish_epochs > 0:
        info["polish"] = polish_decoder(model, loss_fn, tr, va, cfg, gen, history, capped)
    model.eval()
    info["best_val_chi2"] = float(evaluate_ive(model, loss_fn, va).mean())
    return model, info


def polish_decoder(model: IVE, loss_fn, tr: Split, va: Split, cfg, gen: torch.Generator, history: list,
                   capped: list) -> dict:
    """Freeze the encoder; train the decoder alone on the chi2 of the spectra decoded from the encoder means (no KL,
    no sampling) with the config's stages, up to ``cfg.polish_epochs`` epochs and ``cfg.polish_minutes``. The latents
    of every row stay exactly what the VAE made them; only the map latent -> spectrum is refined."""
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    model.eval()
    with torch.no_grad():
        z_tr, z_va = model.encoder(tr.c)[0], model.encoder(va.c)[0]
    params = [p for p in model.decoder.parameters() if p.requires_grad]

    def step(idx, epoch):
        return loss_fn(model.decoder.coefficients(z_tr[idx]), tr.c[idx], tr.b[idx], tr.const[idx]).mean()

    @torch.no_grad()
    def validate():
        return float(loss_fn(model.decoder.coefficients(z_va), va.c, va.b, va.const).mean())

    t0, before = time.time(), validate()
    best, epochs = staged_fit(params, step, validate, len(tr), cfg, gen, t0 + 60 * cfg.polish_minutes, history,
                              "polish", max_epochs=cfg.polish_epochs, best=before, capped=capped)
    for p in model.encoder.parameters():
        p.requires_grad_(True)
    return {"epochs": epochs, "seconds": time.time() - t0, "val_chi2_before": before, "val_chi2_after": best}


@torch.no_grad()
def encode_split(model: IVE, c: torch.Tensor, spectra=SPECTRA) -> tuple[np.ndarray, np.ndarray]:
    """Encoder mean and log-variance ``(N, d)`` of whitened coefficients ``c (N, 4k)``; the coefficients of spectra
    not in ``spectra`` are zeroed first, as in training."""
    k = model.encoder.k
    mu, logvar = model.encoder(c * _mask(list(spectra), k))
    return mu.double().numpy(), logvar.double().numpy()


def kl_per_latent(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """Mean over rows of KL(q(z_j | x) || N(0, 1)) per latent (nat), shape (d,). A latent the KL term switched off
    (its posterior is the prior for every row) has ~0."""
    return (0.5 * (mu**2 + np.exp(logvar) - 1 - logvar)).mean(0)


def anchor_beta_factor(prep: Prepared, spectra=SPECTRA) -> float:
    """Mean over outputs of ``w^2`` (squared noise weight of a unit standardised-target step): a beta on our
    per-output noise-unit scale corresponds to ``beta / factor`` on the scale of a mean squared error of per-ell
    standardised targets (the anchor's, up to its log10 and ell range)."""
    return float(np.mean(np.concatenate([prep.weights[s] ** 2 for s in spectra])))
