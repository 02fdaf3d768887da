"""Latent-dimension scan and learning curve: reconstruction error against d and against training-set size.

Both use one preparation (normaliser and PCA fitted on the full training rows) and judge every model on the
same held-out test rows: the noise-unit chi^2 of the loss and the plik_lite dchi^2 of encode -> decode.
A curve still falling at the largest training set means data limits the accuracy; a flat one, capacity.

``direct_baseline`` separates the two limits another way: a plain MLP from the physical parameters straight to the
PCA coefficients (no latent bottleneck, no encoder), trained on the same rows with the same loss and schedule, shows
the accuracy these data allow an emulator. An IVE far above it is limited by its latent structure, not by data.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from ..io import write_json
from .accuracy import dchi2, load_plik_lite_binning
from .config import TrainConfig
from .pipeline import decode_split
from .train import NoiseChi2, Prepared, Split, evaluate_ive, prepare, staged_fit, torch_threads, train_ive

__all__ = ["run_scan", "subset", "direct_baseline"]


def subset(sp: Split, idx: np.ndarray) -> Split:
    return Split(sp.corpus.take(idx), {k: v[idx] for k, v in sp.D.items()}, sp.c[idx], sp.b[idx], sp.const[idx])


def _score(prep: Prepared, model, binning) -> dict[str, float]:
    chi = evaluate_ive(model, NoiseChi2(prep.G, prep.k), prep.test)
    d = dchi2(binning, decode_split(model, prep.test), prep.test.D)
    return {"noise_chi2_median": float(np.median(chi)), "noise_chi2_mean": float(chi.mean()),
            "dchi2_median": float(np.median(d)), "dchi2_p99": float(np.percentile(d, 99))}


def run_scan(cfg: TrainConfig, out: str | Path, dims=(2, 4, 6, 8, 10), fractions=(0.125, 0.25, 0.5, 1.0)) -> dict:
    """Train one model per latent dimension and per training fraction; write ``scan.json`` and ``scan.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prep = prepare(cfg)
    binning = load_plik_lite_binning()
    rows_d, rows_n = [], []
    for d in dims:
        model, info = train_ive(prep, dataclasses.replace(cfg, latent_dim=int(d)))
        rows_d.append({"latent_dim": int(d), "epochs": info["epochs"], "seconds": info["seconds"], **_score(prep, model, binning)})
        print(rows_d[-1])
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(prep.train))
    for f in fractions:
        n = max(8, int(round(f * len(prep.train))))
        sub = dataclasses.replace(prep, train=subset(prep.train, np.sort(order[:n])))
        model, info = train_ive(sub, cfg)
        rows_n.append({"n_train": n, "epochs": info["epochs"], "seconds": info["seconds"], **_score(sub, model, binning)})
        print(rows_n[-1])
    res = {"config": cfg.to_dict(), "test_rows": len(prep.test), "latent_dim_scan": rows_d, "learning_curve": rows_n,
           "metric": "held-out rows: noise-unit chi2 of the training loss; plik_lite dchi2 of encode->decode"}
    write_json(out / "scan.json", res)
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for key, style in (("dchi2_median", "o-"), ("dchi2_p99", "s--")):
        ax[0].semilogy([r["latent_dim"] for r in rows_d], [r[key] for r in rows_d], style, label=key)
        ax[1].loglog([r["n_train"] for r in rows_n], [r[key] for r in rows_n], style, label=key)
    ax[0].set_xlabel("latent dimension d"); ax[1].set_xlabel("training spectra")
    for a in ax:
        a.set_ylabel("plik_lite dchi2 (held-out)"); a.axhline(0.05, color="grey", lw=0.5); a.legend()
    ax[0].set_title(f"{cfg.name}: error vs latent dimension"); ax[1].set_title(f"{cfg.name}: learning curve (d={cfg.latent_dim})")
    fig.tight_layout()
    fig.savefig(out / "scan.png", dpi=120)
    plt.close(fig)
    return {"json": out / "scan.json", "png": out / "scan.png", **res}


def direct_baseline(cfg: TrainConfig, out: str | Path | None = None, prep: Prepared | None = None) -> dict:
    """Train ``theta -> whitened PCA coefficients`` (MLP of ``decoder_hidden``; inputs mapped from the box to
    [-1, 1]) on the config's rows with the IVE's loss, learning-rate stages, patience and ``max_minutes``; score it
    on the held-out test rows (plik_lite dchi2). Writes ``baseline.json`` to ``out`` if given."""
    import torch

    from .accuracy import run_accuracy
    from .model import mlp

    with torch_threads(cfg.threads):
        prep = prep or prepare(cfg, verbose=cfg.progress)
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        lo = torch.as_tensor(prep.train.corpus.box_low, dtype=torch.float32)
        hi = torch.as_tensor(prep.train.corpus.box_high, dtype=torch.float32)
        u = lambda sp: 2 * (torch.as_tensor(sp.corpus.params, dtype=torch.float32) - lo) / (hi - lo) - 1  # noqa: E731
        net = mlp(len(lo), cfg.decoder_hidden, 4 * cfg.n_pca, cfg.activation)
        loss = NoiseChi2(prep.G, cfg.n_pca)
        tr, va = prep.train, prep.val
        u_tr, u_va = u(tr), u(va)
        t0 = time.time()
        best, epoch = staged_fit(
            list(net.parameters()), lambda idx, _: loss(net(u_tr[idx]), tr.c[idx], tr.b[idx], tr.const[idx]).mean(),
            lambda: loss(net(u_va), va.c, va.b, va.const).mean(), len(tr), cfg, gen, t0 + 60 * cfg.max_minutes, [], "direct")
        from .model import PCAExpansion

        with torch.no_grad():
            x = PCAExpansion(prep.pca).expand(net(u(prep.test)))
            D = {k: v.double().numpy() for k, v in prep.normaliser.decode({k: v.double() for k, v in x.items()}).items()}
    acc = run_accuracy(prep.test.D, {"direct": D})["direct"]
    res = {"what": "direct emulator theta -> PCA coefficients, no latent bottleneck (latentinfer.ive.scan.direct_baseline)",
           "config": cfg.to_dict(), "n_train": len(tr), "n_val": len(va), "n_test": len(prep.test), "epochs": epoch,
           "seconds": time.time() - t0, "best_val_chi2": best,
           "dchi2": {k: v for k, v in acc.items() if k != "values"}, "dchi2_values": acc["values"]}
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        write_json(Path(out) / "baseline.json", res)
    return res
