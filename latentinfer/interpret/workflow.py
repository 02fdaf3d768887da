"""The whole interpretation of one decoder bundle: MI table, labels, disentanglement check, plots, ``mi.json``.

``interpret(model, data, out)`` is what ``latentinfer interpret`` runs once it has a model and an encoded
sample; ``data`` is the dict of :func:`latentinfer.ive.encode_corpus` (or of an ``.npz`` with the same keys)::

    z (n, d) encoder means; params (n, p) and param_names; derived (n, k) and derived_names (optional)
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BundleError, DataError
from ..io import atomic_write_text, to_jsonable, versions, write_json
from .labels import check_disentangled, latent_labels
from .mi import MISettings
from .plots import plot_mi_heatmap
from .table import MITable, mi_table
from .traversal import plot_traversals
from ..bundle import read_card
from ..paths import resolve

__all__ = ["MIN_ROWS", "prepare_data", "load_encoded", "interpret", "format_table", "update_card_labels"]

MIN_ROWS = 100  # below this, 3-fold CV holds out < 35 rows per fold and MI errors (~rho/sqrt(n)) pass ~0.1 nat


def load_encoded(path: str | os.PathLike) -> dict[str, Any]:
    """An encoded sample from an ``.npz`` (no pickle) with keys z, params, param_names[, derived, derived_names,
    features, feature_names]."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"encoded sample {path} not found")
    try:
        f = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable npz without pickled objects ({exc})") from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: expected an .npz archive with arrays z, params, param_names; got a single array")
    try:
        with f:
            data = {k: f[k] for k in f.files}
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: not a readable npz without pickled objects ({exc})") from None
    for key in ("z", "params", "param_names"):
        if key not in data:
            raise DataError(f"{path}: missing array '{key}'")
    return data


def prepare_data(data: Mapping[str, Any], latent_names: list[str], n: int | None = None) -> dict[str, Any]:
    """Check shapes, join inputs, derived parameters and spectral features (kinds "input", "derived", "spectral"),
    drop rows with NaN/inf and constant parameter columns.

    Returns ``{"z", "theta", "names", "kinds", "dropped_rows", "dropped_columns"}``.
    """
    for key in ("z", "params", "param_names"):
        if key not in data:
            raise DataError(f"encoded sample lacks '{key}'")
    z = np.asarray(data["z"], dtype=float)
    if z.ndim != 2 or z.shape[1] != len(latent_names):
        raise DataError(f"encoded latents z have shape {z.shape}; the model has {len(latent_names)} latents {latent_names}")
    blocks, names, kinds = [], [], []
    for key, nkey, kind in (("params", "param_names", "input"), ("derived", "derived_names", "derived"),
                            ("features", "feature_names", "spectral")):
        if data.get(key) is None:
            continue
        a = np.asarray(data[key], dtype=float)
        a = a[:, None] if a.ndim == 1 else a
        nm = [str(v) for v in np.atleast_1d(data.get(nkey, [f"{key}{j}" for j in range(a.shape[1])]))]
        if a.ndim != 2 or a.shape[0] != z.shape[0] or a.shape[1] != len(nm):
            raise DataError(f"encoded sample '{key}' has shape {a.shape}; expected ({z.shape[0]}, {len(nm)}) to match z and '{nkey}'")
        blocks.append(a)
        names += nm
        kinds += [kind] * len(nm)
    theta = np.concatenate(blocks, axis=1)
    if len(set(names)) != len(names):
        raise DataError(f"duplicate parameter names in the encoded sample: {names}")
    good = np.all(np.isfinite(z), axis=1) & np.all(np.isfinite(theta), axis=1)
    z, theta = z[good], theta[good]
    if n is not None:
        z, theta = z[:n], theta[:n]
    if len(z) < MIN_ROWS:
        raise DataError(f"only {len(z)} usable rows in the encoded sample (after dropping {int((~good).sum())} with NaN); need at least {MIN_ROWS}")
    const = [j for j in range(theta.shape[1]) if np.ptp(theta[:, j]) == 0]
    flat = [latent_names[i] for i in range(z.shape[1]) if np.ptp(z[:, i]) == 0]
    if flat:
        raise DataError(f"latent(s) {flat} are constant over the encoded sample: the encoder does not use them")
    keep = [j for j in range(theta.shape[1]) if j not in const]
    return {"z": z, "theta": theta[:, keep], "names": [names[j] for j in keep], "kinds": {names[j]: kinds[j] for j in keep},
            "dropped_rows": int((~good).sum()), "dropped_columns": [names[j] for j in const]}


def format_table(table: MITable, labels: Mapping[str, Mapping[str, Any]], check) -> str:
    """A plain-text table: one row per latent, MI with each parameter, its label and its largest latent-latent MI."""
    w = max(6, *(len(n) for n in table.parameter_names))
    head = f"{'latent':<8} " + " ".join(f"{n:>{w}}" for n in table.parameter_names) + f" {'max MI(z,z)':>11}  label"
    lines = [f"mutual information [nat], n = {table.n}", head]
    for i, lat in enumerate(table.latent_names):
        row = " ".join(f"{(0.0 if abs(v) < 5e-4 else v):>{w}.3f}" for v in table.latent_parameter[i])
        zz = np.nanmax(table.latent_latent[i]) if len(table.latent_names) > 1 else float("nan")
        lines.append(f"{lat:<8} {row} {zz:>11.3f}  {labels[lat]['label']}")
    lines.append(str(check))
    return "\n".join(lines)


def interpret(
    model,
    data: Mapping[str, Any],
    out: str | os.PathLike,
    *,
    model_name: str = "",
    n: int | None = None,
    settings: MISettings | None = None,
    seed: int = 0,
    workers: int | None = 1,
    threshold: float = 0.1,
    progress: bool = True,
) -> dict[str, Any]:
    """Compute the MI table, labels and disentanglement check; write ``out/mi.json``, ``out/mi_heatmap.png`` and
    the traversal PNGs; return the ``mi.json`` content (plus ``"text"``: the printed table)."""
    t0 = time.perf_counter()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    names = list(model.latent_names)
    prep = prepare_data(data, names, n)
    s = settings or MISettings()
    table = mi_table(prep["z"], prep["theta"], names, prep["names"], settings=s, seed=seed, workers=workers, progress=progress)
    rule = {"max_names": 2, "ratio": 0.5, "min_mi": 0.05, "n_sigma": 3.0}
    labels = latent_labels(table, **rule)
    check = check_disentangled(table, threshold)
    short = {k: v["label"] for k, v in labels.items()}
    widths = prep["z"].std(axis=0)
    plots = [plot_mi_heatmap(table, out / "mi_heatmap.png", short)]
    plots += plot_traversals(model, out, scale_per_latent=widths, labels=short)
    result = {
        "model": model_name,
        **table.to_dict(),
        "parameter_kinds": prep["kinds"],
        "labels": labels,
        "label_rule": {**rule, "text": "parameters with MI >= min_mi nat and > n_sigma errors, the best and any with "
                       "MI >= ratio x best, at most max_names; none: 'unexplained'"},
        "disentanglement": check.to_dict(),
        "traversal": {"center": [0.0] * len(names), "sigmas": [-2, -1, 0, 1, 2], "sigma_per_latent": widths,
                      "unit": "Delta D_ell / full-sky cosmic variance per ell"},
        "dropped_rows_nonfinite": prep["dropped_rows"],
        "dropped_constant_parameters": prep["dropped_columns"],
        "plots": [p.name for p in plots],
        "seed": int(seed),
        "versions": _versions(),
        "wall_seconds": time.perf_counter() - t0,
    }
    write_json(out / "mi.json", result)
    result["text"] = format_table(table, labels, check)
    return result


def _versions() -> dict[str, str]:
    v = versions()
    for mod in ("sklearn", "matplotlib"):
        try:
            v[mod] = __import__(mod).__version__
        except ImportError:  # pragma: no cover
            pass
    return v


def update_card_labels(model_name_or_path: str | os.PathLike, result: Mapping[str, Any]) -> Path:
    """Write ``latent_labels`` ({latent: label}) and their provenance into the bundle's ``card.json``, atomically.

    The card's sha256 covers only the weights, so the bundle still loads; the latent names must match.
    """

    folder = resolve("models", model_name_or_path)
    card = read_card(folder)
    labels = result["labels"]
    if list(card["latent_names"]) != list(labels):
        raise BundleError(f"{folder / 'card.json'}: latent_names {card['latent_names']} differ from the interpreted latents {list(labels)}")
    card["latent_labels"] = {k: v["label"] for k, v in labels.items()}
    card["latent_labels_provenance"] = to_jsonable({
        "method": "GMM mutual information with physical parameters (latentinfer interpret)",
        "n": result["n"], "seed": result["seed"], "n_bootstrap": result["settings"]["n_bootstrap"],
        "top": {k: v["top"][:2] for k, v in labels.items()},
        "disentangled": result["disentanglement"]["passed"], "max_latent_latent_mi": result["disentanglement"]["max_mi"],
    })
    atomic_write_text(folder / "card.json", json.dumps(card, indent=2) + "\n")
    return folder / "card.json"

