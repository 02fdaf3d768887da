"""Latents of corpus rows, for interpretation (mutual information with physical and derived parameters)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import BundleError
from .data import Corpus, full_spectra, load_corpus
from ..bundle import load_model
from ..interpret.features import spectral_features

__all__ = ["encode_corpus"]


def encode_corpus(model_name_or_path, corpus: str | os.PathLike | Corpus | None = None, n: int | None = None) -> dict:
    """Encoder means of corpus rows.

    Parameters
    ----------
    model_name_or_path : a bundle name (``"cmb-lcdm"``), a folder, or an already loaded :class:`IVEForwardModel`
    corpus : a corpus ``.npz`` path or :class:`Corpus`; default the bundle's ``validation.npz`` (held-out rows)
    n : use only the first ``n`` usable rows

    Returns
    -------
    dict with ``z (N, d)``, ``latent_names``, ``params (N, p)``, ``param_names``, ``derived (N, k)``, ``derived_names``,
    ``features (N, f)`` and ``feature_names``: spectral features measured on each row's spectra
    (:func:`latentinfer.interpret.features.spectral_features`: peak positions and heights, damping, reionisation
    bump, lensing amplitude).
    """

    model = model_name_or_path if isinstance(model_name_or_path, torch.nn.Module) else load_model(model_name_or_path)
    if not hasattr(model, "encode"):
        raise BundleError(f"model {model_name_or_path!r} has no encoder (not an IVE bundle)")
    if corpus is None:
        corpus = Path(model.meta["bundle"]) / "validation.npz"
    c = corpus if isinstance(corpus, Corpus) else load_corpus(corpus)
    if n is not None:
        c = c.take(np.arange(min(int(n), len(c))))
    spectra = full_spectra(c)
    z = model.encode(spectra).numpy()
    features, feature_names = spectral_features({k: np.asarray(v) for k, v in spectra.items()})
    return {"z": z, "latent_names": list(model.latent_names), "params": c.params, "param_names": list(c.names),
            "derived": c.derived, "derived_names": list(c.derived_names), "features": features,
            "feature_names": feature_names}
