"""From a validated config to a run folder: build the analysis, run the method, write the outputs.

A run folder holds ``posterior.nc`` (arviz InferenceData), ``summary.json`` (per-parameter statistics, method,
settings, seed, wall time, versions, config), ``config.yaml`` (the resolved config) and, unless the config says
``report: false``, ``report.html`` (:mod:`latentinfer.report`). Every file is written under a temporary name and
renamed, so a folder never holds a half-written output; ``summary.json`` is written last among the run's data,
so a run is complete exactly when it exists.

While a run is going, ``OUT/.checkpoints/<config fingerprint>/`` holds finished chains and mid-chain states:
the same command started again after a crash, SIGKILL or Ctrl-C continues from there (a changed config has
another fingerprint and starts afresh). The folder is removed once the run folder is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .analysis import Analysis
from .bundle.card import read_card
from .bundle.references import reference_readings
from .paths import resolve
from .config import dump_yaml, evidence_request
from .io import atomic_write_text, versions, write_json
from .execution import backend_from
from .config import foreign_settings
from .methods import get_method
from .coverage.study import find_study
from .errors import LatentInferError
from .report import write_report

__all__ = ["build_analysis", "run_config", "write_run", "checkpoint_dir", "config_fingerprint", "evidence_record"]

#: Config keys that do not change the numbers of a run (left out of its fingerprint).
_NOT_NUMBERS = ("cluster", "report", "name", "coverage")


def build_analysis(cfg: Mapping[str, Any]) -> Analysis:
    """The :class:`Analysis` that a resolved config describes (see :meth:`latentinfer.program.Program.from_config`)."""
    return Analysis.from_config(cfg)


def config_fingerprint(cfg: Mapping[str, Any]) -> str:
    """Short hash of the parts of a resolved config that shape the numbers (not ``cluster``, ``progress``)."""
    plain = {k: v for k, v in cfg.items() if k not in _NOT_NUMBERS}
    plain["inference"] = {k: v for k, v in dict(cfg.get("inference", {})).items() if k != "progress"}
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:16]


def checkpoint_dir(cfg: Mapping[str, Any], out: str | os.PathLike) -> Path:
    """Where a run of ``cfg`` into ``out`` keeps its checkpoints."""
    return Path(out) / ".checkpoints" / config_fingerprint(cfg)


def run_config(cfg: Mapping[str, Any], out: str | os.PathLike, *, scheduler: str | None = None) -> dict[str, Any]:
    """Run the inference a config describes and write the run folder ``out``.

    Independent tasks (NUTS chains) go to the backend chosen by :func:`~latentinfer.execution.backend_from`:
    ``scheduler`` (``tcp://HOST:PORT``) if given, else the config's ``cluster:`` block, else local processes.
    Finished work is checkpointed under ``out/.checkpoints/`` and picked up when the same run is started again.
    """

    t0 = time.perf_counter()
    out = Path(out)
    execution = backend_from(cfg, scheduler=scheduler)
    _remove_stale_temporaries(out)
    analysis = build_analysis(cfg)

    foreign_settings(cfg)
    inf = dict(cfg["inference"])
    method = inf.pop("method")

    meth = get_method(method)
    settings = {k: v for k, v in inf.items() if k in meth.settings}
    ckpt = checkpoint_dir(cfg, out)
    post = meth.run(analysis, execution={**execution, "checkpoint_dir": ckpt}, **settings)
    post.attrs["config"] = json.dumps(dict(cfg))
    extra = {}
    request = evidence_request(cfg)
    if request:
        extra["evidence"] = evidence_record(analysis, post, request, seed=int(inf.get("seed", 0)))
    extra["coverage"] = coverage_status(cfg, method, out)
    readings = latent_reference_readings(cfg, post)
    if readings:
        extra["latent_references"] = readings
    summary = write_run(post, cfg, out, wall=time.perf_counter() - t0, extra=extra)
    shutil.rmtree(out / ".checkpoints", ignore_errors=True)
    if cfg.get("report", True):
        _write_report(out, analysis)
    return {"out": str(out), "method": method, "wall_seconds": summary["wall_seconds"], "posterior": post, "summary": summary}


def evidence_record(analysis: Analysis, post, request: tuple[str, dict], seed: int = 0) -> dict[str, Any]:
    """The ``evidence`` entry of a summary: ln Z of ``post`` by ``request = (method, settings)`` (the settings' seed,
    if any, wins over ``seed``), with the estimator's details and flags."""
    method, settings = request
    ev = analysis.evidence(post, method=method, **{"seed": seed, **settings})
    return {"ln_z": ev.ln_z, "ln_z_err": ev.ln_z_err, "method": ev.method, "n_samples": ev.n_samples,
            "wall_seconds": ev.wall_seconds, "flags": list(ev.details.get("flags", [])), "details": ev.details}


def coverage_status(cfg: Mapping[str, Any], method: str, out: str | os.PathLike) -> dict[str, Any]:
    """Whether a coverage study of this config and method exists and passed: looked for in the config's ``coverage:``
    folder, then in ``OUT/coverage`` (``latentinfer coverage CONFIG --method M --out OUT/coverage``). A study counts
    only when its fingerprint (model, likelihoods, priors, method and its settings) matches."""

    places = [p for p in (cfg.get("coverage"), Path(out) / "coverage") if p]
    found = find_study(dict(cfg), method, places)
    if found is None:
        return {"study": None, "pass": None,
                "note": f"no coverage study of this configuration with method {method} "
                        f"(latentinfer coverage CONFIG --method {method} --n 500 --out {Path(out) / 'coverage'})"}
    return found


def latent_reference_readings(cfg: Mapping[str, Any], post) -> list[dict[str, Any]]:
    """For a latent-space run of a bundle whose card keeps ``latent_references`` (e.g. where LCDM spectra put the EDE
    latent of a discovered EDE model): each watched latent's posterior read against the reference
    (:func:`latentinfer.bundle.references.reference_readings`); ``[]`` otherwise."""
    if cfg.get("space") != "latent" or not cfg.get("model"):
        return []
    card = read_card(resolve("models", cfg["model"]))
    return reference_readings(card, {n: post.samples(n) for n in post.parameter_names})


def _write_report(out: str | os.PathLike, analysis: Analysis) -> None:
    """``out/report.html`` (config key ``report: true``); a report problem warns and leaves the run intact."""
    import sys


    try:
        write_report([out], Path(out) / "report.html", analyses={str(Path(out)): analysis})
    except LatentInferError as exc:
        print(f"latentinfer: warning: report.html not written: {exc}", file=sys.stderr)


def write_run(post, cfg: Mapping[str, Any], out: str | os.PathLike, wall: float, extra: Mapping[str, Any] | None = None) -> dict:
    """Write ``posterior.nc``, ``summary.json`` and ``config.yaml`` into ``out``; returns the summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").unlink(missing_ok=True)  # an older run's marker of completion goes first
    atomic_write_text(out / "config.yaml", dump_yaml(cfg))
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
    write_json(out / "summary.json", summary)  # last: marks the run folder complete
    return summary


def _remove_stale_temporaries(out: Path) -> None:
    """Delete ``.NAME.XXXX.tmp`` files left in ``out`` by a process killed while writing."""
    if out.is_dir():
        for tmp in out.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
