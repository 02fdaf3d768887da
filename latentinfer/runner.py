"""From a validated config to a run folder: build the analysis, run the method, write the outputs.

A run folder holds ``posterior.nc`` (arviz InferenceData), ``summary.json`` (per-parameter statistics, method,
settings, seed, wall time, versions, config) and ``config.yaml`` (the resolved config). Every file is written
under a temporary name and renamed, so a folder never holds a half-written output.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .analysis import Analysis
from .config import dump_yaml
from .io import atomic_write_text, versions, write_json

__all__ = ["build_analysis", "run_config", "write_run"]


def build_analysis(cfg: Mapping[str, Any]) -> Analysis:
    """The :class:`Analysis` that a resolved config describes."""
    from .bundle import load_model
    from .likelihoods import load_likelihood

    model = load_model(cfg["model"])
    if cfg.get("space", "latent") == "physical":
        if not hasattr(model, "physical"):
            from .errors import ConfigError

            raise ConfigError(f"model '{cfg['model']}' has no map from physical parameters (space: physical)")
        model = model.physical()
    liks = [load_likelihood(item["name"], **{k: v for k, v in item.items() if k != "name"}) for item in cfg["likelihoods"]]
    return Analysis(model, liks, prior=cfg.get("prior", "standard_normal"), priors=cfg.get("priors"), emulator_error=cfg.get("emulator_error", False))


def run_config(cfg: Mapping[str, Any], out: str | os.PathLike) -> dict[str, Any]:
    """Run the inference a config describes and write the run folder ``out``."""
    t0 = time.perf_counter()
    analysis = build_analysis(cfg)
    inf = dict(cfg["inference"])
    method = inf.pop("method")
    from .inference import get_method

    meth = get_method(method)
    settings = {k: v for k, v in inf.items() if k in meth.settings}
    post = meth.run(analysis, **settings)
    post.attrs["config"] = __import__("json").dumps(dict(cfg))
    extra = {}
    if cfg.get("evidence"):
        ev = analysis.evidence(post, method=cfg["evidence"], seed=int(inf.get("seed", 0)))
        extra["evidence"] = {"ln_z": ev.ln_z, "ln_z_err": ev.ln_z_err, "method": ev.method, "wall_seconds": ev.wall_seconds, "details": ev.details}
    summary = write_run(post, cfg, out, wall=time.perf_counter() - t0, extra=extra)
    return {"out": str(out), "method": method, "wall_seconds": summary["wall_seconds"], "posterior": post, "summary": summary}


def write_run(post, cfg: Mapping[str, Any], out: str | os.PathLike, wall: float, extra: Mapping[str, Any] | None = None) -> dict:
    """Write ``posterior.nc``, ``summary.json`` and ``config.yaml`` into ``out``; returns the summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    post.to_netcdf(out / "posterior.nc")
    summary = {
        "parameters": post.summary(),
        "method": post.method,
        "settings": post.meta("settings", {}),
        "seed": int(post.attrs.get("seed", 0)),
        "wall_seconds": wall,
        "sampling_seconds": float(post.attrs.get("wall_seconds", 0.0)),
        "divergences": post.divergences(),
        "versions": versions(),
        "config": dict(cfg),
        **(extra or {}),
    }
    write_json(out / "summary.json", summary)
    atomic_write_text(out / "config.yaml", dump_yaml(cfg))
    return summary
