"""``tension(post_a, post_b, joint=None)``: every registered metric, attribution, and the verdict.

Compute, then judge: :func:`tension` returns a :class:`TensionResult` of numbers; :func:`check_tension` decides,
with an explicit threshold in sigma, whether the runs are in tension.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LatentInferError
from ..io import to_jsonable, versions
from ..posterior import Posterior
from .attribution import attribute
from .base import MetricResult, available_metrics, get_metric
from .inputs import model_identity, prepare_inputs
from ..rundir import RunFolder, load_run
from ..rundir import read_evidence
from ..program import from_config as build_analysis
from ..io import write_json

__all__ = ["TensionResult", "tension", "check_tension", "write_tension"]


@dataclass
class TensionResult:
    """Numbers of a tension analysis: one :class:`MetricResult` per metric, skipped metrics with the reason,
    and the attribution (per parameter, per eigen-direction, in data space)."""

    names: list[str]
    labels: tuple[str, str]
    metrics: dict[str, MetricResult]
    skipped: dict[str, str] = field(default_factory=dict)
    attribution: dict[str, Any] = field(default_factory=dict)
    runs: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> MetricResult:
        return self.metrics[name]

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(
            {
                "parameters": self.names,
                "labels": list(self.labels),
                "metrics": {k: m.to_dict() for k, m in self.metrics.items()},
                "skipped": self.skipped,
                "attribution": self.attribution,
                "runs": self.runs,
                "verdict": check_tension(self),
                "versions": versions(),
            }
        )

    def table(self) -> str:
        """A plain-text table: metric, statistic, sigma (with Monte-Carlo error), PTE."""
        rows = [("metric", "statistic", "n_sigma", "PTE / note")]
        for name, m in self.metrics.items():
            stat = f"{m.value:.4g}" + (f" +- {m.value_err:.2g}" if m.value_err is not None else "")
            sig = "n/a" if m.n_sigma is None else f"{m.n_sigma:.2f}" + (f" +- {m.n_sigma_err:.2f}" if m.n_sigma_err is not None else "")
            if m.details.get("lower_bound"):
                sig = ">= " + sig
            note = f"{m.pte:.3g}" if m.pte is not None else m.details.get("note", "")
            if m.dof is not None:
                note += f" (dof {m.dof:.3g})"
            rows.append((name, stat, sig, note))
        for name, why in self.skipped.items():
            rows.append((name, "-", "skipped", why))
        w = [max(len(r[i]) for r in rows) for i in range(3)]
        return "\n".join(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]}" for r in rows)


def _as_posterior(x, label: str) -> tuple[Posterior, dict | None, str]:
    """A Posterior, its evidence (from a run folder's summary.json) and a description of where it came from."""

    if isinstance(x, Posterior):

        return x, read_evidence(x.meta("evidence"), f"run {label} posterior attrs"), "in memory"
    if isinstance(x, (str, os.PathLike)):
        x = load_run(x)
    if isinstance(x, RunFolder):
        if "config" not in x.posterior.attrs:  # older runs: the folder's config.yaml names the model
            import json

            x.posterior.attrs["config"] = json.dumps(x.config)
        return x.posterior, x.evidence, str(x.path)
    raise LatentInferError(f"run {label}: expected a Posterior or a run folder, got {type(x).__name__}")


def _analyses(posts: Mapping[str, Posterior]) -> tuple[dict[str, Any] | None, str | None]:
    """Rebuild each run's Analysis from its recorded config (for data-space attribution)."""

    out = {}
    for label, post in posts.items():
        cfg = post.meta("config")
        if not isinstance(cfg, Mapping) or "model" not in cfg:
            return None, f"run {label} has no recorded config (pass analyses=)"
        try:
            out[label] = build_analysis(cfg)
        except LatentInferError as exc:
            return None, f"cannot rebuild run {label}'s analysis: {exc}"
    return out, None


def tension(
    post_a,
    post_b,
    joint=None,
    *,
    metrics: Sequence[str] | None = None,
    params: Sequence[str] | None = None,
    evidence: Mapping[str, Mapping | None] | None = None,
    analyses: Mapping[str, Any] | None = None,
    attribution: bool = True,
    seed: int = 0,
    labels: tuple[str, str] = ("A", "B"),
) -> TensionResult:
    """Compare two posteriors of the same model from different data.

    Parameters
    ----------
    post_a, post_b, joint : Posterior or run folder (path)
        The two runs and, optionally, the run on both data sets (needed for S and R).
    metrics : names, optional
        Registered metrics to compute (default: all with ``default = True``; the flow-based shift,
        ``parameter_shift_flow``, is asked for by name; see :func:`~latentinfer.tension.available_metrics`).
    params : names, optional
        Parameters compared (default: the model's inputs, which must be the same in both runs).
    evidence : mapping, optional
        ``{"a"|"b"|"joint": {"ln_z", "ln_z_err"}}``; default: read from the run folders' summary.json.
    analyses : mapping, optional
        ``{"A": Analysis, "B": Analysis}`` for the data-space attribution; default: rebuilt from the runs' configs
        (skipped, with the reason recorded, when that is impossible).
    seed : int
        Seed of the pairings and KDE subsets (same seed, same numbers).
    """
    pa, ea, src_a = _as_posterior(post_a, labels[0])
    pb, eb, src_b = _as_posterior(post_b, labels[1])
    pj, ej, src_j = _as_posterior(joint, "joint") if joint is not None else (None, None, None)
    ev = {"a": ea, "b": eb, "joint": ej}
    ev.update(evidence or {})
    inp = prepare_inputs(pa, pb, pj, params=params, evidence=ev, seed=seed, labels=labels)
    chosen = list(metrics) if metrics is not None else available_metrics(default_only=True)
    results, skipped = {}, {}
    for name in chosen:
        metric = get_metric(name)
        why = metric.missing(inp)
        if why:
            skipped[name] = why
            continue
        results[name] = metric.compute(inp)
    attr: dict[str, Any] = {}
    if attribution:
        if analyses is None:
            analyses, why = _analyses({"A": pa, "B": pb})
            if why:
                attr["data_space_skipped"] = why
        attr.update(attribute(inp, analyses))
    runs = {
        "a": {"source": src_a, **model_identity(pa), "label": labels[0]},
        "b": {"source": src_b, **model_identity(pb), "label": labels[1]},
        "joint": None if pj is None else {"source": src_j, **model_identity(pj)},
        "evidence": ev,
        "seed": seed,
    }
    return TensionResult(names=inp.names, labels=tuple(labels), metrics=results, skipped=skipped, attribution=attr, runs=runs)


def check_tension(result: TensionResult, max_sigma: float = 3.0) -> dict[str, Any]:
    """Judge: each metric is in tension when its n_sigma exceeds ``max_sigma``; the runs are in tension when
    any computed metric is. Returns ``{"threshold_sigma", "metrics": {name: bool | None}, "tension": bool}``."""
    per = {k: (None if m.n_sigma is None else bool(m.n_sigma > max_sigma)) for k, m in result.metrics.items()}
    return {"threshold_sigma": max_sigma, "metrics": per, "tension": any(v for v in per.values() if v is not None)}


def write_tension(result: TensionResult, out: str | os.PathLike, inputs_a=None, inputs_b=None) -> list[Path]:
    """Write ``tension.json`` and the figures (``tension_shifts.png``, ``tension_posteriors.png``,
    ``tension_data_pattern.png`` when the data-space attribution was computed) into ``out``."""
    import matplotlib.pyplot as plt

    from .plots import plot_data_pattern, plot_posteriors, plot_shifts

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "tension.json", result.to_dict())
    written = [out / "tension.json"]
    figs = {}
    if result.attribution.get("parameters"):
        figs["tension_shifts.png"] = plot_shifts(result.attribution, result.labels)
    if inputs_a is not None and inputs_b is not None:
        figs["tension_posteriors.png"] = plot_posteriors(result.names, inputs_a, inputs_b, result.labels)
    if result.attribution.get("data_space"):
        figs["tension_data_pattern.png"] = plot_data_pattern(result.attribution["data_space"])
    for name, fig in figs.items():
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(out / name)
    return written
