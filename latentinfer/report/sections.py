"""The sections of a run report: each function takes a :class:`~latentinfer.rundir.RunFolder` (and what it
needs) and returns an HTML fragment. Optional pieces that are absent give a short "not available" line."""

from __future__ import annotations

import html
import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LatentInferError
from ..io import read_file, sha256_file
from ..diagnostics.convergence import ESS_MIN, RHAT_MAX, check_convergence  # noqa: F401  (re-exported)
from ..labels import latex
from .html import RawHTML, esc, figure_tag, file_png_tag, fmt, json_block, json_tables, kv_table, table
from ..paths import resolve
from ..rundir import evidence_flags
from ..config import dump_yaml
from ..diagnostics.ppc import check_ppc, plot_ppc, run_ppc

__all__ = [
    "check_convergence",
    "provenance",
    "parameters",
    "sampling_plots",
    "ppc_section",
    "evidence_section",
    "coverage_section",
    "tension_section",
    "interpretation_section",
    "RHAT_MAX",
    "ESS_MIN",
]

MAX_TRACE_PARAMS = 16


def _na(why: str) -> str:
    return f'<p class="muted">not available: {esc(why)}</p>'


def _files_with_sha(folder: Path, limit: int = 60) -> list[tuple[str, int, str]]:
    rows = []
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not any(part.startswith((".", "__")) for part in p.relative_to(folder).parts):
            rows.append((str(p.relative_to(folder)), p.stat().st_size, sha256_file(p)))
            if len(rows) >= limit:
                break
    return rows


def provenance(run) -> str:
    """Config, method and settings, seed, versions, model bundle and likelihood data files with sha256."""

    s = run.summary
    info = {
        "run folder": str(run.path),
        "method": s.get("method", run.posterior.method),
        "seed": s.get("seed", run.posterior.attrs.get("seed")),
        "chains x draws": f"{run.posterior.num_chains} x {run.posterior.num_draws}",
        "wall time [s]": s.get("wall_seconds"),
        "sampling time [s]": s.get("sampling_seconds"),
        "divergences": s.get("divergences", run.posterior.divergences()),
        "model": run.config.get("model"),
        "space": run.config.get("space", "latent"),
    }
    parts = ["<h3>Run</h3>", kv_table(info)]
    parts.append("<h3>Settings</h3>" + kv_table(s.get("settings") or {}))
    vers = s.get("versions") or run.posterior.meta("versions", {}) or {}
    parts.append("<h3>Versions</h3>" + kv_table(vers))
    model = run.config.get("model")
    if model:
        try:
            folder = resolve("models", model)
            card = read_file(folder / "card.json")
            parts.append(f"<h3>Model bundle {esc(model)}</h3><p class='muted'>{esc(folder)}</p>")
            parts.append(kv_table({k: card.get(k) for k in ("description", "format", "weights", "sha256") if k in card}))
        except (LatentInferError, OSError, json.JSONDecodeError) as exc:
            parts.append(f"<h3>Model bundle {esc(model)}</h3>" + _na(str(exc)))
    rows = []
    for item in run.config.get("likelihoods", []):
        name = item["name"] if isinstance(item, Mapping) else str(item)
        try:
            folder = resolve("likelihoods", name)
        except LatentInferError as exc:
            rows.append((name, "-", "-", f"not found here ({exc})"))
            continue
        for rel, size, digest in _files_with_sha(folder):
            rows.append((name, rel, size, digest))
    if rows:
        parts.append("<h3>Data files (likelihood folders)</h3>" + table(["likelihood", "file", "bytes", "sha256"], rows, left=2))
    parts.append("<h3>Config</h3><pre>" + esc(_yaml(run.config)) + "</pre>")
    return "\n".join(parts)


def _yaml(cfg) -> str:

    return dump_yaml(cfg)


def parameters(run, summ: Mapping[str, Any] | None = None) -> str:
    """The parameter table (mean, sd, 94% HDI, R-hat, bulk/tail ESS, MCSE) with convergence flags."""
    post = run.posterior
    summ = summ if summ is not None else post.summary()
    verdict = check_convergence(summ, post.divergences())
    cols = ["parameter", "mean", "sd", "hdi 3%", "hdi 97%", "R-hat", "ESS bulk", "ESS tail", "MCSE mean", "flags"]
    keys = ["mean", "sd", "hdi_3%", "hdi_97%", "r_hat", "ess_bulk", "ess_tail", "mcse_mean"]
    rows = [[n] + [summ[n][k] for k in keys] + ["; ".join(verdict["parameters"][n])] for n in summ]

    def cell(i, j, v):
        if j == 5 and v is not None and v > RHAT_MAX:
            return "bad"
        if j in (6, 7) and v is not None and v < ESS_MIN:
            return "bad"
        return None

    head = []
    if verdict["ok"]:
        head.append(f'<p class="good">converged: all R-hat &le; {RHAT_MAX}, all ESS &ge; {ESS_MIN}, no divergences</p>')
    else:
        n_bad = sum(bool(v) for v in verdict["parameters"].values())
        msg = f"{n_bad} parameter(s) flagged" + (f"; {verdict['divergences']} divergent transitions" if verdict["divergences"] else "")
        head.append(f'<p class="flag">do not trust yet: {esc(msg)} (R-hat &gt; {RHAT_MAX}, ESS &lt; {ESS_MIN}, divergences)</p>')
    if post.num_chains < 2:
        head.append('<p class="muted">one chain: R-hat is not defined; run more chains to check mixing</p>')
    return "\n".join(head) + table(cols, rows, cell_class=cell, row_class=lambda i, r: "bad" if r[-1] else None) + f'<p class="muted">HDI: 94% highest-density interval; flags: R-hat &gt; {RHAT_MAX}, ESS &lt; {ESS_MIN}.</p>'


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def sampling_plots(run) -> str:
    """Trace and rank plots (arviz) and a corner plot (corner) of the sampled parameters."""
    import arviz as az
    import corner

    plt = _plt()
    post = run.posterior
    names = post.parameter_names[:MAX_TRACE_PARAMS]
    out = []
    if len(post.parameter_names) > MAX_TRACE_PARAMS:
        out.append(f'<p class="muted">first {MAX_TRACE_PARAMS} of {len(post.parameter_names)} parameters shown</p>')
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = az.plot_trace(post.idata, var_names=names, compact=False, figsize=(10, 1.7 * len(names) + 0.5))
        fig = np.asarray(axes).ravel()[0].figure
        fig.tight_layout()
        out.append("<h3>Trace</h3>" + figure_tag(fig, "trace plot", "left: marginal per chain; right: draws per chain"))
        if post.num_chains > 1:
            axes = az.plot_rank(post.idata, var_names=names, figsize=(10, 1.6 * ((len(names) + 2) // 3) + 0.5))
            fig = np.asarray(axes).ravel()[0].figure
            fig.tight_layout()
            out.append("<h3>Rank</h3>" + figure_tag(fig, "rank plot", "rank histograms per chain: flat when chains mix"))
        x = post.samples()[:, : len(names)]
        keep = np.std(x, 0) > 0
        if keep.sum() >= 1:
            fig = corner.corner(x[:, keep], labels=[f"${latex(n)}$" for n, k in zip(names, keep) if k], show_titles=True, title_fmt=".3g", quantiles=(0.16, 0.5, 0.84), plot_datapoints=False, smooth=1.0, levels=(0.68, 0.95))
            out.append("<h3>Corner</h3>" + figure_tag(fig, "corner plot", "68% and 95% contours; titles: median and 68% interval"))
    plt.close("all")
    return "\n".join(out)


def ppc_section(run, analysis, why: str | None = None, ppc: Mapping[str, Any] | None = None) -> str:
    """Posterior predictive check per likelihood: table (chi2, PTE, predictive p) and residual plots."""

    if analysis is None:
        return _na(why or "the run's analysis could not be rebuilt")
    if ppc is None:
        ppc = run_ppc(analysis, run.posterior, seed=int(run.summary.get("seed", 0) or 0))
    verdict = check_ppc(ppc)
    rows = [
        [name, r["n_data"], r["chi2_best_fit"], r["pte_best_fit"], r["chi2_posterior_mean"], r["ppc_p_value"], "ok" if verdict[name]["ok"] else "; ".join(verdict[name]["reasons"])]
        for name, r in ppc.items()
    ]
    out = [
        table(
            ["likelihood", "n_data", "chi2 (best fit)", "PTE", "<chi2> posterior", "predictive p", "check"],
            rows,
            cell_class=lambda i, j, v: ("ok" if v == "ok" else "bad") if j == 6 else None,
        ),
        '<p class="muted">PTE: probability to exceed the best-fit chi2 for n_data degrees of freedom (fitted parameters lower it by about their number); '
        "predictive p: Prob[chi2(replicated data) &ge; chi2(observed)] over posterior draws; flagged outside [0.01, 0.99].</p>",
    ]
    blocks = [[name, g, b["n"], b["chi2"], b["pte"]] for name, r in ppc.items() for g, b in r.get("chi2_by_spectrum", {}).items()]
    if blocks:
        out.append("<h3>Best-fit chi2 per spectrum (its block of the covariance)</h3>" + table(["likelihood", "spectrum", "n", "chi2", "PTE"], blocks, left=2))
    for name, r in ppc.items():
        out.append(figure_tag(plot_ppc(name, r), f"posterior predictive check {name}"))
    return "\n".join(out)


def _fmt_err(err) -> str:
    return "-" if err is None or not np.isfinite(err) else f"{err:.3f}"


def evidence_section(runs) -> str:
    with_ev = [r for r in runs if r.evidence]
    flags = [evidence_flags(r.evidence) for r in with_ev]
    rows = [(r.name, f"{r.evidence['ln_z']:.3f}", _fmt_err(r.evidence.get("ln_z_err")), r.evidence.get("method", ""),
             f"{len(fl)} flag(s)" if fl else "none") for r, fl in zip(with_ev, flags)]
    if not rows:
        return _na("no evidence in summary.json (config key evidence: harmonic)")
    out = table(["run", "ln Z", "error", "method", "estimator flags"], rows)
    notes = [f"<li><b>{html.escape(r.name)}</b>: {html.escape(f)}</li>" for r, fl in zip(with_ev, flags) for f in fl]
    if notes:
        out += ("<p>Flagged estimates: their errors are lower bounds. <code>latentinfer evidence RUN --set KEY=VALUE</code> "
                "refits the estimator from the same draws.</p><ul>" + "".join(notes) + "</ul>")
    if len(with_ev) > 1:
        ref = with_ev[0].evidence
        comp = []
        for r in with_ev[1:]:
            err = np.hypot(ref.get("ln_z_err") or 0.0, r.evidence.get("ln_z_err") or 0.0)
            comp.append((f"{r.name} vs {with_ev[0].name}", f"{r.evidence['ln_z'] - ref['ln_z']:.3f}", f"{err:.3f}"))
        out += table(["comparison", "ln B", "error"], comp)
    return out


def _pngs(folder: Path, patterns=("*.png",), limit: int = 24) -> list[Path]:
    found = []
    for pat in patterns:
        found += [p for p in sorted(folder.glob(pat)) if p.is_file()]
    return list(dict.fromkeys(found))[:limit]


def coverage_section(run) -> str:
    if run.coverage is None:
        linked = (run.summary or {}).get("coverage") or {}
        if linked.get("study"):
            state = "passed" if linked.get("pass") else "failed"
            cls = "good" if linked.get("pass") else "flag"
            text = (f"this configuration {state} a coverage study: N = {linked.get('n')}, verdict {linked.get('verdict')} "
                    f"({linked['study']})" + (f"; next step: {linked['next_step']}" if linked.get("next_step") and not linked.get("pass") else ""))
            return f'<p class="{cls}">{esc(text)}</p>'
        return _na(linked.get("note") or "no coverage.json in the run folder (latentinfer coverage)")
    out = [json_tables(run.coverage), json_block(run.coverage, "coverage.json")]
    figs = _pngs(run.path, ("coverage*.png", "sbc*.png", "tarp*.png", "hpd*.png")) + (_pngs(run.path / "coverage") if (run.path / "coverage").is_dir() else [])
    if figs:
        out.append('<div class="grid">' + "".join(file_png_tag(p) for p in figs) + "</div>")
    return "\n".join(out)


def tension_section(data: Mapping[str, Any], folder: Path | None) -> str:
    """Table of tension metrics from a ``tension.json`` (and its figures when in ``folder``)."""
    rows = []
    for name, m in data.get("metrics", {}).items():
        rows.append([name, m.get("value"), m.get("value_err"), m.get("n_sigma"), m.get("n_sigma_err"), m.get("pte"), m.get("dof")])
    for name, why in data.get("skipped", {}).items():
        rows.append([name, None, None, None, None, None, RawHTML(f'<span class="muted">{esc(why)}</span>')])
    out = [f"<p>parameters: {esc(', '.join(data.get('parameters', [])))}; runs: {esc(' vs '.join(data.get('labels', [])))}</p>"]
    out.append(table(["metric", "statistic", "error", "n_sigma", "error", "PTE", "dof / note"], rows, cell_class=lambda i, j, v: "bad" if j == 3 and isinstance(v, float) and v > 3 else None))
    verdict = data.get("verdict")
    if verdict:
        cls = "flag" if verdict.get("tension") else "good"
        out.append(f'<p class="{cls}">{"tension" if verdict.get("tension") else "no tension"} at the {fmt(verdict.get("threshold_sigma"))} sigma threshold</p>')
    shifts = data.get("attribution", {}).get("parameters", {})
    if shifts:
        out.append("<h3>Shift per parameter (combined sigma)</h3>" + table(["parameter", "mean A - mean B", "combined sigma", "n_sigma"], [[n, s["shift"], s["sigma"], s["n_sigma"]] for n, s in shifts.items()]))
    ds = data.get("attribution", {}).get("data_space", {}).get("likelihoods", {})
    if ds:
        rows = [[k, b["spectrum"], f"{b['ell_min']:.0f}-{b['ell_max']:.0f}", b["chi2"], b["fraction"]] for k, v in ds.items() for b in v["bands"][:4]]
        out.append("<h3>Where the shift lands in the data (largest shares)</h3>" + table(["run:likelihood", "spectrum", "ell (or index) range", "chi2 of shift", "share"], rows, left=3))
    if folder is not None:
        figs = _pngs(folder, ("tension*.png",))
        if figs:
            out.append('<div class="grid">' + "".join(file_png_tag(p) for p in figs) + "</div>")
    return "\n".join(out)


def references_section(run) -> str:
    """Watched latents read against a reference model (summary key ``latent_references``): the sentence, the numbers,
    and the posterior of the latent with the reference band drawn over it."""
    rows = run.summary.get("latent_references") or []
    head = ("<p>A discovered latent has no physical value; a reference model gives it one: the band is where that "
            "model's spectra put the latent (median +- robust sd, from the bundle card's <code>latent_references</code>). "
            "Distance = (posterior mean - reference median) / sqrt(posterior sd^2 + reference sd^2).</p>")
    items = "".join(f"<li><b>{esc(r['text'])}</b></li>" for r in rows)
    table = kv_table({f"{r['latent']} vs {r['reference']}": f"posterior {r['posterior_mean']:.4g} +- {r['posterior_sd']:.3g}; "
                      f"reference {r['reference_median']:.4g} +- {r['reference_sd']:.3g}; {r['sigma']:+.2f} sigma; "
                      f"posterior mass beyond the reference median {r['tail_probability']:.3f}" for r in rows})
    figs = []
    plt = _plt()
    for r in rows:
        if r["latent"] not in run.posterior.parameter_names:
            continue
        x = run.posterior.samples(r["latent"])
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.hist(x, bins=60, density=True, color="C0", alpha=0.7, label=f"posterior of {r['latent']}")
        m, sd = r["reference_median"], r["reference_sd"]
        ax.axvspan(m - sd, m + sd, color="C3", alpha=0.25, label=f"{r['reference']} (median +- sd)")
        ax.axvline(m, color="C3")
        ax.set_xlabel(f"{r['latent']} {('(' + r['label'] + ')') if r['label'] else ''}")
        ax.set_title(f"{r['sigma']:+.2f} sigma from {r['reference']}", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        figs.append(figure_tag(fig, f"{r['latent']} against {r['reference']}", r["text"]))
    return head + f"<ul>{items}</ul>" + table + ("<div class=\"grid\">" + "".join(figs) + "</div>" if figs else "")


def interpretation_section(run) -> str:
    """The model's interpretation: ``mi.json`` as tables and traversal plots, from the bundle folder or its
    ``interpretation/`` subfolder."""

    model = run.config.get("model")
    if not model:
        return _na("the run records no model")
    try:
        folder = resolve("models", model)
    except LatentInferError as exc:
        return _na(str(exc))
    out = []
    try:
        card = read_file(folder / "card.json")
    except LatentInferError:
        card = {}
    labels = card.get("latent_labels") or card.get("labels")
    if isinstance(labels, Mapping):
        out.append("<h3>Latent labels (card)</h3>" + kv_table(labels))
    elif isinstance(labels, list) and labels:
        out.append("<h3>Latent labels (card)</h3>" + kv_table(dict(zip(card.get("latent_names", range(len(labels))), labels))))
    places = [folder, folder / "interpretation"]
    mi_file = next((p / "mi.json" for p in places if (p / "mi.json").is_file()), None)
    if mi_file is not None:
        mi = read_file(mi_file, kind="JSON", label="corrupt file {path}")
        out.append(f"<h3>Mutual information ({esc(mi_file.relative_to(folder))})</h3>" + json_tables(mi) + json_block(mi, "mi.json"))
    figs = [p for d in places if d.is_dir() for p in _pngs(d)]
    if figs:
        out.append("<h3>Latent traversals and interpretation plots</h3><div class=\"grid\">" + "".join(file_png_tag(p) for p in figs) + "</div>")
    if not out:
        return _na(f"no mi.json or plots in {folder} or {folder / 'interpretation'} (latentinfer interpret)")
    return "\n".join(out)
