"""The reference distribution of a watched latent over a reference model's spectra (``latentinfer interpret
--reference NAME=ROWS``): which latent carries a parameter the reference model lacks, and where the reference
model's spectra put it. What the card keeps and how a run reads it: :mod:`latentinfer.bundle.references`."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle.card import read_card
from ..bundle.references import KEY, check_references
from ..errors import DataError
from ..io import atomic_write_text, sha256_file, to_jsonable
from ..paths import corpus_name, corpus_path, resolve
from .data import concat_corpora, load_corpus
from .encode import encode_corpus

__all__ = ["latent_reference", "robust_sd", "update_card_reference"]


def robust_sd(x: np.ndarray) -> float:
    """1.4826 x the median absolute deviation: the sd of a Gaussian, not pulled by a few far rows."""
    x = np.asarray(x, dtype=float)
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def latent_reference(model, mi: Mapping[str, Any], z_mi_rows: np.ndarray, rows: Sequence[str | os.PathLike],
                     parameter: str, n_watch: int = 1) -> dict[str, Any]:
    """The ``latent_references`` entry of one reference model.

    Parameters
    ----------
    model : the loaded bundle (an IVE with an encoder)
    mi : the ``mi.json`` content of ``latentinfer interpret`` (latent-parameter MI and errors)
    z_mi_rows : (n, d) encoder means of the rows the MI was measured on (their spread: ``sd_all_rows``)
    rows : corpus files of the reference model's spectra (e.g. ``lcdm_core.npz``)
    parameter : the parameter the reference model lacks (e.g. ``fde_zc``); the ``n_watch`` latents with the
        largest MI with it are watched
    """
    names = list(mi["parameter_names"])
    if parameter not in names:
        raise DataError(f"--reference-parameter '{parameter}' is not among the interpreted parameters {names}")
    j = names.index(parameter)
    M = np.asarray(mi["latent_parameter"]["mi"], dtype=float)
    E = np.asarray(mi["latent_parameter"]["err"], dtype=float)
    latents = list(mi["latent_names"])
    order = np.argsort(-M[:, j])[: max(1, int(n_watch))]
    c = concat_corpora([load_corpus(p, verbose=False) for p in rows])
    z = encode_corpus(model, corpus=c)["z"]
    watched = {}
    for i in order:
        watched[latents[i]] = {"median": float(np.median(z[:, i])), "sd": robust_sd(z[:, i]),
                               "sd_all_rows": robust_sd(z_mi_rows[:, i]), "mi_with_parameter": float(M[i, j]),
                               "mi_err": float(E[i, j])}
    others = [k for k in range(len(latents)) if k not in set(order.tolist())]
    runner_up = max(others, key=lambda k: M[k, j]) if others else None
    return to_jsonable({
        "rows": [{"path": corpus_name(p), "sha256": sha256_file(corpus_path(p))} for p in rows], "n": len(c),
        "parameter": parameter, "latents": watched,
        "runner_up": None if runner_up is None else {"latent": latents[runner_up], "mi_with_parameter": float(M[runner_up, j]),
                                                    "mi_err": float(E[runner_up, j])},
        "rule": f"the latent(s) with the largest MI with {parameter}; median and robust sd (1.4826 MAD) of the encoder "
                "mean over the reference rows",
    })


def update_card_reference(model_name_or_path: str | os.PathLike, name: str, entry: Mapping[str, Any]) -> Path:
    """Write ``latent_references[name]`` into the bundle's card (atomically; the weights' sha256 is untouched)."""
    folder = resolve("models", model_name_or_path)
    card = read_card(folder)
    card.setdefault(KEY, {})[name] = dict(entry)
    check_references(card, str(folder / "card.json"))
    atomic_write_text(folder / "card.json", json.dumps(card, indent=2) + "\n")
    return folder / "card.json"
