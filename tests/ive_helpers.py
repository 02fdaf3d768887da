"""Shared fixtures for the IVE tests: a tiny corpus slice (with failed rows) and a tiny trained bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from latentinfer.paths import corpus_path

CORPUS = corpus_path("lcdm_core.npz").parent  # the corpus root that holds the shared files ($LATENTINFER_CORPUS)
needs_corpus = pytest.mark.skipif(not (CORPUS / "lcdm_core.npz").is_file(),
                                  reason="shared CAMB corpus not found under the corpus root ($LATENTINFER_CORPUS, README 'Corpus')")


def write_slice(path: Path, n: int = 160, n_bad: int = 3, source: str = "lcdm_core.npz") -> Path:
    """The first ``n`` rows of a corpus file; rows 0..n_bad-1 turned into CAMB failures (ok=False, NaN)."""
    with np.load(CORPUS / source) as f:
        d = {k: f[k] for k in f.files}
    for k in ("params", "TT", "TE", "EE", "PP", "derived", "ok"):
        d[k] = d[k][:n].copy()
    d["ok"][:n_bad] = False
    for k in ("TT", "TE", "EE", "PP"):
        d[k][:n_bad] = np.nan
    np.savez(path, **d)
    return path


def tiny_config(corpus: Path, **over) -> dict:
    cfg = dict(name="tiny", corpus=[str(corpus)], latent_dim=3, n_pca=8, encoder_hidden=[16], decoder_hidden=[16],
               physical_hidden=[16], max_epochs=25, max_minutes=1.0, physical_max_minutes=0.2, patience=5,
               lr_stages=[3e-3, 1e-3], batch_stages=[8, 16], anneal_epochs=5, n_test=20, error_rank=4,
               progress=False, seed=0)
    cfg.update(over)
    return cfg
