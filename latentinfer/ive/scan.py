"""Latent-dimension scan and learning curve: reconstruction error against d and against training-set size.

Both use one preparation (normaliser and PCA fitted on the full training rows) and judge every model on the
same held-out test rows: the noise-unit chi^2 of the loss and the plik_lite dchi^2 of encode -> decode.
A curve still falling at the largest training set means data limits the accuracy; a flat one, capacity.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..io import write_json
from .accuracy import dchi2, load_plik_lite_binning
from .config import TrainConfig
from .pipeline import decode_split
from .train import NoiseChi2, Prepared, Split, evaluate_ive, prepare, train_ive

__all__ = ["run_scan", "subset"]


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
