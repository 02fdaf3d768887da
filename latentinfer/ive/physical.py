"""From physical parameters to latents: an MLP ``theta -> z`` trained on pairs (theta, encoder mean).

Inputs are the corpus parameters (``ombh2, omch2, H0, logA, ns, tau`` [+ ``fde_zc, log10_zc, theta_i``]) mapped
linearly from the corpus box to [-1, 1]. Training has two phases: (1) mean squared error against the encoder
means of the training rows; (2) fine-tuning of the same map through the frozen decoder on the noise-unit
chi^2 of the spectra (so that latent errors count by their effect on the data), with the latent MSE kept as a
small regulariser. Early stopping on the validation rows' chi^2 of the emulated spectra.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import TrainConfig
from ..bundle.nets import PhysicalMap
from .model import IVE
from .train import NoiseChi2, Prepared, Split, _theta, n_replay, staged_fit, torch_threads

__all__ = ["PhysicalMap", "train_physical", "evaluate_physical"]


@torch.no_grad()
def evaluate_physical(pmap: PhysicalMap, model: IVE, loss: NoiseChi2, sp: Split) -> np.ndarray:
    """Per-row chi^2 of spectra emulated from the rows' parameters, shape (N,)."""
    return loss(model.decoder.coefficients(pmap(_theta(sp))), sp.c, sp.b, sp.const).numpy()


def train_physical(prep: Prepared, model: IVE, cfg: TrainConfig, init: PhysicalMap | None = None) -> tuple[PhysicalMap, dict]:
    """Fit the map (phase 1: latent MSE; phase 2: spectra chi^2 through the frozen decoder). A map trained with the
    IVE (``init``, see ``TrainConfig.joint_physical``) skips phase 1 and is fine-tuned by phase 2."""
    with torch_threads(cfg.threads):
        return _train_physical(prep, model, cfg, init)


def _train_physical(prep: Prepared, model: IVE, cfg: TrainConfig, init: PhysicalMap | None = None) -> tuple[PhysicalMap, dict]:
    torch.manual_seed(cfg.seed + 1)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    c = prep.train.corpus
    pmap = PhysicalMap(c.box_low, c.box_high, cfg.latent_dim, cfg.physical_hidden, cfg.activation)
    if init is not None:
        pmap.load_state_dict(init.state_dict())
    elif prep.init is not None:  # fine-tune: the source bundle's map, its box included
        pmap.load_state_dict(prep.init.physical)
        init = pmap
    for p in model.parameters():
        p.requires_grad_(False)
    loss_fn = NoiseChi2(prep.G, cfg.n_pca)
    tr, th = prep.train, _theta(prep.train)
    with torch.no_grad():
        z_tr, _ = model.encoder(tr.c)
    # the latent-MSE term only on CAMB rows: replay rows (init_replay, the last ones) are not the encoder's inputs
    w_mse = torch.ones(len(tr))
    w_mse[len(tr) - n_replay(prep):] = 0.0
    params = list(pmap.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr_stages[0])  # one optimiser for both phases
    t0, epoch, history, capped, start = time.time(), 0, [], [], None
    budget = 60 * cfg.physical_max_minutes
    bar = tqdm(total=cfg.max_epochs, desc=f"physical map {cfg.name}", disable=not cfg.progress, mininterval=2.0)

    def step(idx, phase):
        z = pmap(th[idx])
        mse = ((z - z_tr[idx]) ** 2).sum(-1) * w_mse[idx]
        if phase == 1:
            return mse.mean()
        return (loss_fn(model.decoder.coefficients(z), tr.c[idx], tr.b[idx], tr.const[idx]) + 1e-3 * mse).mean()

    def validate_mse():
        zv, _ = model.encoder(prep.val.c)
        return ((pmap(_theta(prep.val)) - zv) ** 2).sum(-1).mean()

    validate_chi2 = lambda: evaluate_physical(pmap, model, loss_fn, prep.val).mean()  # noqa: E731
    # phase 1 (latent MSE) gets a quarter of the budget, phase 2 (through the decoder) the rest
    for phase, frac in ((1, 0.25), (2, 1.0)) if init is None else ((2, 1.0),):
        best = np.inf if init is None else float(validate_chi2())
        start = best
        best, epoch = staged_fit(params, lambda idx, _, ph=phase: step(idx, ph), validate_mse if phase == 1 else validate_chi2,
                                  len(tr), cfg, gen, t0 + frac * budget, history, f"physical map phase {phase}",
                                  epoch=epoch, max_epochs=2 * cfg.max_epochs, best=best, opt=opt, bar=bar,
                                  capped=capped)
    bar.close()
    for p in model.parameters():
        p.requires_grad_(True)
    return pmap, {"epochs": epoch, "seconds": time.time() - t0, "best_val_chi2": best, "history": history,
                  "time_capped": capped, "start_val_chi2": start}
