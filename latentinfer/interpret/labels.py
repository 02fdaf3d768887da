"""Data-driven names for latents, and the disentanglement check (compute, then judge).

:func:`latent_labels` names each latent after the physical parameter(s) it shares most information with, e.g.
``"thetastar / H0"``; :func:`check_disentangled` judges the latent-latent block of an :class:`MITable` against a
threshold in nats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from .table import MITable

__all__ = ["latent_labels", "DisentanglementCheck", "check_disentangled", "UNEXPLAINED"]

UNEXPLAINED = "unexplained"


def latent_labels(table: MITable, *, max_names: int = 2, ratio: float = 0.5, min_mi: float = 0.05, n_sigma: float = 3.0) -> dict[str, dict[str, Any]]:
    """A short label per latent from its MI with the physical parameters.

    A parameter qualifies when its MI is at least ``min_mi`` nat and ``n_sigma`` bootstrap errors above zero;
    the label joins (with ``" / "``) the qualifying parameters with the highest MI, at most ``max_names`` of them,
    keeping a second one only if its MI is at least ``ratio`` times the first. A latent with no qualifying
    parameter is labelled ``"unexplained"``.

    Returns ``{latent: {"label": str, "top": [{"name", "mi", "err"}, ...]}}`` (``top``: the three highest MIs).
    """
    if not 0 < ratio <= 1:
        raise ConfigError(f"label 'ratio' must be in (0, 1], got {ratio}")
    if max_names < 1:
        raise ConfigError(f"label 'max_names' must be >= 1, got {max_names}")
    out = {}
    for i, lat in enumerate(table.latent_names):
        mi, err = table.latent_parameter[i], table.latent_parameter_err[i]
        order = np.argsort(-np.nan_to_num(mi, nan=-np.inf))
        ok = [j for j in order if np.isfinite(mi[j]) and mi[j] >= min_mi and mi[j] > n_sigma * err[j]]
        names = [table.parameter_names[j] for j in ok[:max_names] if mi[j] >= ratio * mi[ok[0]]]
        top = [{"name": table.parameter_names[j], "mi": float(mi[j]), "err": float(err[j])} for j in order[:3]]
        out[lat] = {"label": " / ".join(names) if names else UNEXPLAINED, "top": top}
    return out


@dataclass
class DisentanglementCheck:
    """Outcome of :func:`check_disentangled`: ``passed`` if no latent pair has MI above ``threshold`` (nat)."""

    passed: bool
    threshold: float
    max_mi: float
    worst_pair: tuple[str, str] | None
    over: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "threshold": self.threshold, "max_mi": self.max_mi,
                "worst_pair": list(self.worst_pair) if self.worst_pair else None, "over_threshold": self.over}

    def __str__(self) -> str:
        verdict = "disentangled" if self.passed else f"ENTANGLED ({len(self.over)} pair(s) over threshold)"
        pair = " - ".join(self.worst_pair) if self.worst_pair else "none"
        return f"{verdict}: max latent-latent MI {self.max_mi:.3f} nat ({pair}), threshold {self.threshold} nat"


def check_disentangled(table: MITable, threshold: float = 0.1) -> DisentanglementCheck:
    """Judge the latent-latent MI block: fail if any pair's MI estimate exceeds ``threshold`` nats.

    0.1 nat is the MI of two Gaussians with correlation 0.42; a beta-VAE with independent latents gives ~0.01.
    """
    if not np.isfinite(threshold) or threshold <= 0:
        raise ConfigError(f"disentanglement 'threshold' must be a positive number of nats, got {threshold}")
    names, mi, err = table.latent_names, table.latent_latent, table.latent_latent_err
    d = len(names)
    over, worst, max_mi = [], None, 0.0
    for i in range(d):
        for j in range(i + 1, d):
            if mi[i, j] > max_mi or worst is None:
                max_mi, worst = float(mi[i, j]), (names[i], names[j])
            if mi[i, j] > threshold:
                over.append({"pair": [names[i], names[j]], "mi": float(mi[i, j]), "err": float(err[i, j])})
    over.sort(key=lambda r: -r["mi"])
    return DisentanglementCheck(passed=not over, threshold=float(threshold), max_mi=max_mi, worst_pair=worst, over=over)
