"""Parameter designs: a scrambled Sobol sequence mapped linearly into a prior box, in the order of the names."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import qmc

from ..errors import ConfigError

__all__ = ["BOXES", "SEEDS", "sobol_design", "parse_box", "parse_rows"]

#: The corpus boxes (the shared corpus README, ``lcdm.npz``/``ede.npz`` under the corpus root): name -> (low, high), in column order.
BOXES: dict[str, dict[str, tuple[float, float]]] = {
    "lcdm": {"ombh2": (0.0210, 0.0237), "omch2": (0.105, 0.135), "H0": (60.0, 76.0), "logA": (2.95, 3.15),
             "ns": (0.92, 1.01), "tau": (0.02, 0.09)},
    "ede": {"ombh2": (0.0210, 0.0237), "omch2": (0.105, 0.145), "H0": (60.0, 80.0), "logA": (2.95, 3.15),
            "ns": (0.92, 1.02), "tau": (0.02, 0.09), "fde_zc": (0.0, 0.15), "log10_zc": (3.2, 4.0), "theta_i": (0.5, 3.0)},
    "lcdm_core": {"ombh2": (0.0215, 0.0233), "omch2": (0.112, 0.128), "H0": (63.5, 71.5), "logA": (2.95, 3.14),
                  "ns": (0.94, 0.99), "tau": (0.02, 0.09)},
}
#: Sobol seeds used for the shared corpus files.
SEEDS = {"lcdm": 11, "ede": 12, "lcdm_core": 13}


def sobol_design(box: Mapping[str, Sequence[float]], n: int, seed: int) -> np.ndarray:
    """``qmc.Sobol(p, scramble=True, seed=seed).random(n)`` mapped into ``box``; shape (n, p), columns in box order."""
    low = np.array([float(v[0]) for v in box.values()])
    high = np.array([float(v[1]) for v in box.values()])
    with warnings.catch_warnings():  # the corpus sizes (2000, 1000, 800) are not powers of 2, as in the corpus itself
        warnings.filterwarnings("ignore", message=".*balance properties of Sobol.*")
        u = qmc.Sobol(len(box), scramble=True, seed=seed).random(n)
    return low + u * (high - low)


def parse_box(text: str | None, model: str) -> dict[str, tuple[float, float]]:
    """The default box of ``model`` with overrides ``"H0=60:80,tau=0.03:0.08"`` (unknown names are an error)."""
    box = dict(BOXES["lcdm" if model == "lcdm" else "ede"])
    if not text:
        return box
    for item in text.split(","):
        name, _, rng = item.partition("=")
        name = name.strip()
        if name not in box:
            raise ConfigError(f"--box: unknown parameter '{name}' for model {model} (known: {', '.join(box)})")
        try:
            lo, hi = (float(x) for x in rng.split(":"))
        except ValueError:
            raise ConfigError(f"--box: '{item}' must be NAME=LOW:HIGH") from None
        if not hi > lo:
            raise ConfigError(f"--box: parameter '{name}' needs LOW < HIGH, got {lo}:{hi}")
        box[name] = (lo, hi)
    return box


def parse_rows(text: str | None, n: int) -> np.ndarray | None:
    """Design rows ``"START:STOP"`` (0-based, STOP excluded) of an ``n``-point design; None for all of them."""
    if not text:
        return None
    try:
        start, stop = (int(x) for x in text.split(":"))
    except ValueError:
        raise ConfigError(f"--rows: '{text}' must be START:STOP (integers)") from None
    if not 0 <= start < stop <= n:
        raise ConfigError(f"--rows: need 0 <= START < STOP <= --n ({n}), got {start}:{stop}")
    return np.arange(start, stop)
