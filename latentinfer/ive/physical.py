"""From physical parameters to latents: an MLP ``theta -> z`` trained on pairs (theta, encoder mean).

Inputs are the corpus parameters (``ombh2, omch2, H0, logA, ns, tau`` [+ ``fde_zc, log10_zc, theta_i``]) mapped
linearly from the corpus box to [-1, 1]. Training has two phases: (1) mean squared error against the encoder
means of the training rows; (2) fine-tuning of the same map through the frozen decoder on the noise-unit
chi^2 of the spectra (so that latent errors count by their effect on the data), with the latent MSE kept as a
small regulariser. Early stopping on the validation rows' chi^2 of the emulated spectra.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import TrainConfig
from .model import IVE, mlp
from .train import NoiseChi2, Prepared, Split, torch_threads

__all__ = ["PhysicalMap", "train_physical", "evaluate_physical"]


class PhysicalMap(torch.nn.Module):
    """``theta (..., p)`` in physical units -> rescaled latents ``z (..., d)``."""

    def __init__(self, low: np.ndarray, high: np.ndarray, d: int, hidden: list[int], activation: str = "silu"):
        super().__init__()
        self.register_buffer("low", torch.as_tensor(np.asarray(low), dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(np.asarray(high), dtype=torch.float32))
        self.net = mlp(len(low), hidden, d, activation)

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        u = 2 * (theta.to(self.low.dtype) - self.low) / (self.high - self.low) - 1
        return self.net(u)

    @torch.no_grad()
    def change_basis(self, shift: torch.Tensor, A: torch.Tensor) -> None:
        """Output ``A (z - shift)`` instead of ``z`` (folded into the last linear layer; exact)."""
        last: torch.nn.Linear = self.net[-1]
        A = torch.as_tensor(A, dtype=torch.float64)
        w, b = last.weight.double(), last.bias.double()
        last.weight.copy_(A @ w)
        last.bias.copy_(A @ (b - torch.as_tensor(shift, dtype=torch.float64)))


def _theta(sp: Split) -> torch.Tensor:
    return torch.as_tensor(sp.corpus.params, dtype=torch.float32)


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
    for p in model.parameters():
        p.requires_grad_(False)
    loss_fn = NoiseChi2(prep.G, cfg.n_pca)
    tr, th = prep.train, _theta(prep.train)
    with torch.no_grad():
        z_tr, _ = model.encoder(tr.c)
    opt = torch.optim.Adam(pmap.parameters(), lr=cfg.lr_stages[0])
    t0, epoch, history = time.time(), 0, []
    budget = 60 * cfg.physical_max_minutes
    bar = tqdm(total=cfg.max_epochs, desc=f"physical map {cfg.name}", disable=not cfg.progress, mininterval=2.0)
    best, best_state = np.inf, copy.deepcopy(pmap.state_dict())
    # phase 1 gets a quarter of the budget, phase 2 (through the decoder) the rest
    for phase, frac in ((1, 0.25), (2, 1.0)) if init is None else ((2, 1.0),):
        pmap.load_state_dict(best_state)
        best = np.inf if init is None else float(evaluate_physical(pmap, model, loss_fn, prep.val).mean())
        for stage, (lr, bs) in enumerate(zip(cfg.lr_stages, cfg.batch_stages)):
            pmap.load_state_dict(best_state) if np.isfinite(best) else None
            for g in opt.param_groups:
                g["lr"] = lr
            bad = 0
            while bad < cfg.patience and epoch < 2 * cfg.max_epochs and time.time() - t0 < frac * budget:
                perm = torch.randperm(len(tr), generator=gen)
                for i in range(0, len(tr), bs):
                    idx = perm[i : i + bs]
                    z = pmap(th[idx])
                    mse = ((z - z_tr[idx]) ** 2).sum(-1)
                    if phase == 1:
                        obj = mse.mean()
                    else:
                        chi2 = loss_fn(model.decoder.coefficients(z), tr.c[idx], tr.b[idx], tr.const[idx])
                        obj = (chi2 + 1e-3 * mse).mean()
                    opt.zero_grad(set_to_none=True)
                    obj.backward()
                    opt.step()
                with torch.no_grad():
                    if phase == 1:
                        zv, _ = model.encoder(prep.val.c)
                        val = float(((pmap(_theta(prep.val)) - zv) ** 2).sum(-1).mean())
                    else:
                        val = float(evaluate_physical(pmap, model, loss_fn, prep.val).mean())
                history.append({"epoch": epoch, "phase": phase, "stage": stage, "val": val})
                if val < best * (1 - 1e-4):
                    best, best_state, bad = val, copy.deepcopy(pmap.state_dict()), 0
                else:
                    bad += 1
                epoch += 1
                bar.update(1)
                bar.set_postfix(phase=phase, stage=stage, val=f"{val:.3g}", best=f"{best:.3g}")
    bar.close()
    pmap.load_state_dict(best_state)
    for p in model.parameters():
        p.requires_grad_(True)
    return pmap, {"epochs": epoch, "seconds": time.time() - t0, "best_val_chi2": best, "history": history}
