"""One self-contained HTML report of one or more runs: is this posterior to be trusted, and what does it say?

``write_report([run_folder, ...], "report.html")`` (CLI: ``latentinfer report RUN [RUN ...] --out report.html``)
writes a single file with every image embedded (PNG data URIs), an inline stylesheet and no script or network
reference. Per run: config and provenance (versions, seed, model bundle and data files with sha256), the
parameter table with convergence flags, trace/rank/corner plots, posterior predictive checks per likelihood,
coverage results and tension tables when present, and the model's interpretation (mi.json, traversal plots).
A folder holding ``tension.json`` (from ``latentinfer tension``) may be given too. A missing or corrupt run
file raises :class:`~latentinfer.LatentInferError` naming it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import LatentInferError
from ..io import atomic_write_text
from ..rundir import RunFolder, load_run, read_json_file
from . import sections as S
from .html import esc, page, section, table
from ..config import validate_config
from ..program import from_config as build_analysis
from ..diagnostics.ppc import check_ppc
from ..diagnostics.ppc import run_ppc
from .. import __version__

__all__ = ["build_report", "write_report", "check_convergence"]

check_convergence = S.check_convergence


def _load(item) -> tuple[str, Any]:
    if isinstance(item, RunFolder):
        return "run", item
    p = Path(item)
    if p.is_dir() and not (p / "posterior.nc").exists() and (p / "tension.json").is_file():
        return "tension", (p, read_json_file(p / "tension.json"))
    return "run", load_run(p)


def _analysis_for(run: RunFolder, analyses: Mapping[str, Any] | None):
    if analyses:
        for key in (run.name, str(run.path)):
            if key in analyses:
                return analyses[key], None

    try:
        return build_analysis(validate_config(run.config, source=str(run.path / "config.yaml"))), None
    except LatentInferError as exc:
        return None, str(exc)


def _overview(runs: Sequence[RunFolder]) -> str:
    names = list(dict.fromkeys(n for r in runs for n in r.posterior.parameter_names))
    rows = []
    for n in names:
        row = [n]
        for r in runs:
            if n in r.posterior.parameter_names:
                x = r.posterior.samples(n)
                row.append(f"{x.mean():.4g} &plusmn; {x.std(ddof=1):.3g}")
            else:
                row.append("-")
        rows.append(row)
    from .html import RawHTML

    return table(["parameter"] + [r.name for r in runs], [[row[0]] + [RawHTML(c) for c in row[1:]] for row in rows])


def _verdict_row(run: RunFolder, summ, ppc, why) -> list:

    conv = S.check_convergence(summ, run.posterior.divergences())
    rhats = [r["r_hat"] for r in summ.values() if r.get("r_hat") is not None]
    ess = [r[k] for r in summ.values() for k in ("ess_bulk", "ess_tail") if r.get(k) is not None]
    if ppc is None:
        ppc_txt = "not run"
    else:
        bad = [n for n, v in check_ppc(ppc).items() if not v["ok"]]
        ppc_txt = "ok" if not bad else "flagged: " + ", ".join(bad)
    ev = f"{run.evidence['ln_z']:.2f} ± {run.evidence.get('ln_z_err', float('nan')):.2f}" if run.evidence else "-"
    return [run.name, run.posterior.method, run.config.get("model", "?"), "ok" if conv["ok"] else "flagged", max(rhats) if rhats else None, min(ess) if ess else None, conv["divergences"], ppc_txt, ev]


def _verdict_table(rows) -> str:
    head = ["run", "method", "model", "convergence", "max R-hat", "min ESS", "divergences", "predictive check", "ln Z"]

    def cell(i, j, v):
        if j in (3, 7):
            return "ok" if v == "ok" else "bad" if isinstance(v, str) and v.startswith("flagged") else None
        return None

    note = f'<p class="muted">convergence: R-hat &le; {S.RHAT_MAX}, bulk and tail ESS &ge; {S.ESS_MIN}, no divergences; predictive check: chi2 PTE and predictive p within [0.01, 0.99].</p>'
    return table(head, rows, cell_class=cell, left=3) + note


def build_report(items: Sequence[Any], *, analyses: Mapping[str, Any] | None = None, title: str | None = None) -> str:
    """The HTML text of the report of ``items`` (run folders, RunFolder objects, tension folders)."""
    if not items:
        raise LatentInferError("report: give at least one run folder")
    loaded = [_load(x) for x in items]
    runs = [x for kind, x in loaded if kind == "run"]
    tensions = [x for kind, x in loaded if kind == "tension"]
    nav, body = [], []
    if len(runs) > 1:
        nav.append(("overview", "overview"))
        body.append(section("overview", "Overview: posterior mean and sd per run", _overview(runs)))
    verdicts = []
    for i, run in enumerate(runs):
        a = f"run{i}"
        analysis, why = _analysis_for(run, analyses)
        summ = run.posterior.summary()
        ppc = None
        if analysis is not None:

            ppc = run_ppc(analysis, run.posterior, seed=int(run.summary.get("seed", 0) or 0))
        verdicts.append(_verdict_row(run, summ, ppc, why))
        parts = [
            ("Parameters and convergence", S.parameters(run, summ)),
            *([("Latents against reference models", S.references_section(run))] if run.summary.get("latent_references") else []),
            ("Sampling diagnostics", S.sampling_plots(run)),
            ("Posterior predictive checks", S.ppc_section(run, analysis, why, ppc)),
            ("Coverage", S.coverage_section(run)),
            ("Model interpretation", S.interpretation_section(run)),
            ("Provenance", S.provenance(run)),
        ]
        if run.tension is not None:
            parts.insert(3, ("Tension", S.tension_section(run.tension, run.path)))
        inner = "\n".join(f'<h2 id="{a}-{k}">{esc(t)}</h2>\n{html}' for k, (t, html) in enumerate(parts))
        nav.append((a, run.name))
        body.append(section(a, f"Run {run.name} ({run.posterior.method}, {run.config.get('model', '?')})", inner))
    if runs:
        nav.insert(0, ("verdict", "verdict"))
        body.insert(0, section("verdict", "Can these runs be trusted?", _verdict_table(verdicts)))
        nav.append(("evidence", "evidence"))
        body.append(section("evidence", "Evidence", S.evidence_section(runs)))
    for j, (folder, data) in enumerate(tensions):
        nav.append((f"tension{j}", f"tension {folder.name}"))
        body.append(section(f"tension{j}", f"Tension ({folder})", S.tension_section(data, folder)))

    subtitle = f"latentinfer {__version__} - {time.strftime('%Y-%m-%d %H:%M:%S %Z')} - " + ", ".join(r.name for r in runs) if runs else f"latentinfer {__version__}"
    return page(title or "latentinfer report", subtitle, nav, "\n".join(body))


def write_report(items: Sequence[Any] | str | os.PathLike, out: str | os.PathLike, *, analyses: Mapping[str, Any] | None = None, title: str | None = None) -> Path:
    """Write the report of ``items`` to ``out`` (atomically); returns the path."""
    if isinstance(items, (str, os.PathLike, RunFolder)):
        items = [items]
    text = build_report(list(items), analyses=analyses, title=title)
    out = Path(out)
    atomic_write_text(out, text)
    return out
