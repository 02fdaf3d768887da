"""Run folders as the other stations read them: posterior, summary, config and the optional extras.

A run folder (written by :func:`latentinfer.runner.write_run`) holds ``posterior.nc``, ``summary.json`` and
``config.yaml``; later stations may add ``coverage.json``, ``tension.json`` and ``report.html``. The evidence,
when computed, is ``summary.json["evidence"] = {"ln_z": ..., "ln_z_err": ...}``. Every missing or unreadable
file raises :class:`~latentinfer.LatentInferError` naming it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from .errors import LatentInferError
from .io import read_file
from .posterior import Posterior

__all__ = ["RunFolder", "load_run", "read_json_file", "read_evidence", "evidence_flags", "evidence_line", "evidence_lines"]


@dataclass
class RunFolder:
    """The contents of one run folder; optional parts are ``None`` when absent."""

    path: Path
    posterior: Posterior
    summary: dict
    config: dict
    evidence: dict | None = None
    coverage: dict | None = None
    tension: dict | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.path.name)


def read_json_file(path: Path) -> Any:
    """JSON from ``path``, or a :class:`LatentInferError` naming the file."""
    return read_file(path, kind="JSON", missing="missing file: {path}", label="corrupt file {path}")


def read_evidence(obj: Any, where: str) -> dict | None:
    """``{"ln_z": float, "ln_z_err": float}`` from a summary's ``evidence`` entry (None when absent)."""
    if obj is None:
        return None
    if not isinstance(obj, dict) or "ln_z" not in obj:
        raise LatentInferError(f"{where}: 'evidence' must be a mapping with keys ln_z, ln_z_err, got {obj!r}")
    try:
        ln_z = float(obj["ln_z"])
        err = float(obj.get("ln_z_err", float("nan")) if obj.get("ln_z_err") is not None else float("nan"))
    except (TypeError, ValueError):
        raise LatentInferError(f"{where}: evidence ln_z / ln_z_err must be numbers, got {obj!r}") from None
    if not math.isfinite(ln_z):
        raise LatentInferError(f"{where}: evidence ln_z is not finite ({obj['ln_z']!r})")
    return {**obj, "ln_z": ln_z, "ln_z_err": err}


def load_run(path: str | os.PathLike) -> RunFolder:
    """Read a run folder; a missing or corrupt file raises :class:`LatentInferError` naming it."""
    path = Path(path)
    if not path.is_dir():
        raise LatentInferError(f"run folder not found: {path}")
    post = Posterior.from_netcdf(path / "posterior.nc")
    summary = read_json_file(path / "summary.json")
    if not isinstance(summary, dict):
        raise LatentInferError(f"corrupt file {path / 'summary.json'}: expected a JSON object")
    cfg_path = path / "config.yaml"
    config = read_file(cfg_path, kind="YAML", missing="missing file: {path}", label="corrupt file {path}")
    if not isinstance(config, dict):
        raise LatentInferError(f"corrupt file {cfg_path}: a run config must be a mapping")
    run = RunFolder(path=path, posterior=post, summary=summary, config=config)
    run.evidence = read_evidence(summary.get("evidence"), str(path / "summary.json"))
    for key in ("coverage", "tension"):
        f = path / f"{key}.json"
        if f.exists():
            setattr(run, key, read_json_file(f))
    return run


def evidence_line(ev: dict) -> str:
    """One line for a summary's evidence entry: ln Z, error, method, draws and whether the estimator is flagged."""
    flags = evidence_flags(ev)
    state = f"{len(flags)} flag(s): take the error as a lower bound" if flags else "no flags"
    extra = f", {ev['n_samples']} draws" if ev.get("n_samples") else ""
    return f"evidence: ln Z = {ev['ln_z']:.3f} +- {ev['ln_z_err']:.3f} ({ev.get('method', '?')}{extra}; {state})"


def evidence_lines(ev: dict) -> list[str]:
    """What ``run`` and ``evidence`` print for an evidence entry: :func:`evidence_line`, then one line per flag."""
    return [evidence_line(ev)] + [f"evidence: flagged: {flag}" for flag in evidence_flags(ev)]


def evidence_flags(ev: dict | None) -> list[str]:
    """The estimator's flags recorded in a summary's evidence entry (older entries: under ``details``)."""
    if not ev:
        return []
    details = ev.get("details") or {}
    if "flags" in ev or "flags" in details:
        return list(ev.get("flags", details.get("flags", [])))
    if details.get("diagnostics_pass") is False:  # recorded before latentinfer flagged estimates itself
        return [f"harmonic's own diagnostics failed (kurtosis {details.get('kurtosis', float('nan')):.1f})"]
    return []
