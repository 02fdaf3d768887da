"""Scans that let the data choose beta and the latent count of an unsupervised IVE (issue 20, item 2).

One preparation (normaliser, PCA, held-out test rows) serves every point. Then

1. a beta scan at a fixed latent count ``d_beta`` (beta on the per-output scale of
   :mod:`latentinfer.ive.unsupervised`), and
2. a latent-count scan ``dims`` at the beta the rule below picks.

Each point records, on the raw latents (no rotation, no standardisation):

* Planck plik_lite dchi2 of encode -> decode on the held-out test rows (median, p99; TT block alone when the
  config trains on TT only);
* the mean KL per latent on the test rows (a latent with KL < ``ACTIVE_KL`` nat is switched off: its posterior is
  the prior for every row) and the count of active latents;
* mutual information (GMM-MI, :mod:`latentinfer.interpret.mi`, with bootstrap errors) between every pair of latents
  and between each latent and each physical parameter, on ``mi_rows`` corpus rows (>= ``MIN_MI_ROWS``).

The rule (stated in the output, applied by :func:`choose_beta` and :func:`choose_dim`):

* beta: the largest beta of the scan whose median dchi2 is at most ``BETA_TOLERANCE`` times the smallest median of
  the scan (the most KL pressure, hence the most independent latents, that costs at most a factor 2 in accuracy);
* d: the smallest d whose median dchi2 is at most ``DIM_TOLERANCE`` times the smallest median over d (more latents
  no longer buy accuracy); the count of active latents at the largest d is reported beside it.

Scans train far shorter than a shipped bundle (``max_epochs`` of the scan config against 2000-4000 there).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..io import sha256_file, to_jsonable, versions, write_json, read_file
from .accuracy import dchi2, load_plik_lite_binning
from .config import TrainConfig
from .data import SPECTRA, concat_corpora, full_spectra, load_corpus
from .pipeline import decode_split
from .train import Prepared, prepare, torch_threads
from .unsupervised import (anchor_beta_factor, encode_split, kl_per_latent, kl_scale_of, n_outputs, restrict_spectra,
                           train_unsupervised)
from ..interpret.mi import MISettings
from ..interpret.table import mi_table
from ..errors import ConfigError
from ..interpret.knn import ksg_mi

__all__ = ["MIN_MI_ROWS", "ACTIVE_KL", "BETA_TOLERANCE", "DIM_TOLERANCE", "scan_mi_settings", "mi_rows", "coefficients",
           "heldout_dchi2", "score_point", "weights_name", "save_point_weights", "load_point_model", "choose_beta", "choose_dim", "run_discovery", "plot_discovery", "RULE"]

MIN_MI_ROWS = 2000
ACTIVE_KL = 0.1
BETA_TOLERANCE = 2.0
DIM_TOLERANCE = 1.25
RULE = {"beta": f"largest beta whose held-out median dchi2 <= {BETA_TOLERANCE} x the smallest median of the beta scan",
        "d": f"smallest d whose held-out median dchi2 <= {DIM_TOLERANCE} x the smallest median of the latent-count scan",
        "active": f"a latent is active when its mean KL over the held-out rows exceeds {ACTIVE_KL} nat"}


def scan_mi_settings(n_bootstrap: int = 5):
    """GMM-MI settings of the scans: fewer bootstrap refits and Monte-Carlo draws than ``interpret`` (20, 20000)."""

    return MISettings(n_bootstrap=n_bootstrap, mc_samples=5000, max_components=6)


def coefficients(prep: Prepared, D: dict) -> torch.Tensor:
    """Whitened PCA coefficients ``(N, 4k)`` of spectra ``D`` in the preparation's normalisation (as a Split's ``c``)."""
    x = prep.normaliser.encode(D)
    cs = []
    for s in SPECTRA:
        V, m, sd = prep.pca[f"comp_{s}"], prep.pca[f"mean_{s}"], prep.pca[f"std_{s}"]
        cs.append(((x[s] - m) @ V.T) / sd)
    return torch.as_tensor(np.concatenate(cs, 1), dtype=torch.float32)


def mi_rows(prep: Prepared, files, min_rows: int = MIN_MI_ROWS) -> dict:
    """The rows MI is measured on: every usable row of ``files`` (corpus ``.npz``), as coefficients and parameters.
    Fewer than ``min_rows``: one-line :class:`DataError`."""
    c = concat_corpora([load_corpus(f, verbose=False) for f in files])
    if len(c) < min_rows:
        raise DataError(f"MI rows: {', '.join(map(str, files))} hold {len(c)} usable rows, fewer than the {min_rows} the "
                        "MI estimates need; add corpus files")
    D = full_spectra(c)
    return {"c": coefficients(prep, D), "params": c.params, "names": list(c.names), "derived": c.derived,
            "derived_names": list(c.derived_names), "files": [{"path": str(f), "sha256": sha256_file(f)} for f in files],
            "n": len(c)}


def heldout_dchi2(prep: Prepared, model, spectra, binning) -> np.ndarray:
    """plik_lite dchi2 of encode -> decode on the test rows; TT block alone unless TE and EE are trained too."""
    dec = decode_split(model, restrict_spectra(prep, spectra).test)
    if {"TT", "TE", "EE"} <= set(spectra):
        return dchi2(binning, dec, prep.test.D)
    if "TT" not in spectra:
        raise DataError("held-out dchi2 needs TT among the trained spectra")
    n = binning.matrices["TT"].shape[0]
    inv = np.linalg.inv(binning.cov[:n, :n])
    r = (dec["TT"] - prep.test.D["TT"]) @ binning.matrices["TT"].T
    return np.einsum("ni,ij,nj->n", r, inv, r)


def _mi(z: np.ndarray, theta: np.ndarray, pnames, settings, seed: int) -> dict:

    d = z.shape[1]
    keep = [j for j in range(d) if np.ptp(z[:, j]) > 0]
    t = mi_table(z[:, keep], theta, [f"z{j + 1}" for j in keep], pnames, settings=settings, seed=seed, workers=1,
                 progress=False)
    ll, ll_e = np.full((d, d), np.nan), np.full((d, d), np.nan)
    lp, lp_e = np.full((d, len(pnames)), np.nan), np.full((d, len(pnames)), np.nan)
    ll[np.ix_(keep, keep)], ll_e[np.ix_(keep, keep)] = t.latent_latent, t.latent_latent_err
    lp[keep], lp_e[keep] = t.latent_parameter, t.latent_parameter_err
    return {"latent_latent": ll, "latent_latent_err": ll_e, "latent_parameter": lp, "latent_parameter_err": lp_e,
            "parameter_names": list(pnames)}


def score_point(prep: Prepared, cfg: TrainConfig, model, info: dict, rows: dict, binning, *, settings=None,
                seed: int = 0, mi_active_only: bool = False) -> dict:
    """Everything a scan point records (see the module docstring)."""
    t0 = time.time()
    d = heldout_dchi2(prep, model, cfg.spectra, binning)
    mu_t, lv_t = encode_split(model, restrict_spectra(prep, cfg.spectra).test.c, cfg.spectra)
    kl = kl_per_latent(mu_t, lv_t)
    z, _ = encode_split(model, rows["c"], cfg.spectra)
    active = kl > ACTIVE_KL
    cols = np.flatnonzero(active) if mi_active_only and active.any() else np.arange(z.shape[1])
    mi = _mi(z[:, cols], rows["params"], rows["names"], settings or scan_mi_settings(), seed)
    if len(cols) < z.shape[1]:  # back to all latents, NaN for the ones left out
        full = {}
        for key in ("latent_latent", "latent_latent_err"):
            a = np.full((z.shape[1], z.shape[1]), np.nan)
            a[np.ix_(cols, cols)] = mi[key]
            full[key] = a
        for key in ("latent_parameter", "latent_parameter_err"):
            a = np.full((z.shape[1], len(rows["names"])), np.nan)
            a[cols] = mi[key]
            full[key] = a
        mi.update(full)
    ll = mi["latent_latent"]
    iu = np.triu_indices(z.shape[1], 1)
    offd = ll[iu]
    imax = int(np.nanargmax(offd)) if np.isfinite(offd).any() else None
    return {"beta": cfg.beta, "latent_dim": cfg.latent_dim, "spectra": list(cfg.spectra), "epochs": info["epochs"],
            "train_seconds": info["seconds"], "val_chi2_per_output": info["best_val_chi2"] / n_outputs(cfg.spectra),
            "time_capped": bool(info["time_capped"]),
            "dchi2_median": float(np.median(d)), "dchi2_p99": float(np.percentile(d, 99)), "dchi2_n": int(len(d)),
            "kl_per_latent": kl.tolist(), "n_active": int(active.sum()),
            "mi_max_latent_latent": None if imax is None else float(offd[imax]),
            "mi_max_latent_latent_err": None if imax is None else float(mi["latent_latent_err"][iu][imax]),
            "mi_max_pair": None if imax is None else [f"z{iu[0][imax] + 1}", f"z{iu[1][imax] + 1}"],
            "mi": mi, "mi_rows": rows["n"], "mi_seconds": time.time() - t0}


def choose_beta(points: list[dict]) -> float:
    """The beta rule (module docstring)."""
    best = min(p["dchi2_median"] for p in points)
    ok = [p["beta"] for p in points if p["dchi2_median"] <= BETA_TOLERANCE * best]
    return float(max(ok))


def choose_dim(points: list[dict]) -> int:
    """The latent-count rule (module docstring)."""
    best = min(p["dchi2_median"] for p in points)
    return int(min(p["latent_dim"] for p in points if p["dchi2_median"] <= DIM_TOLERANCE * best))


def weights_name(beta: float, d: int) -> str:
    return f"beta{beta:.0e}_d{d}.safetensors"


def save_point_weights(model, path) -> None:
    """The trained networks of a scan point (the PCA and normaliser come back from ``prepare`` on the same config)."""
    from safetensors.torch import save_file

    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()
             if k.startswith(("encoder.", "decoder.net.", "decoder.z_"))}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))


def load_point_model(prep: Prepared, cfg: TrainConfig, path):
    """The IVE of a scan point from :func:`save_point_weights` and the preparation of its config."""
    from .model import IVE

    model = IVE(cfg.latent_dim, cfg.n_pca, cfg.encoder_hidden, cfg.decoder_hidden, prep.pca, prep.normaliser,
                cfg.activation, cfg.encoder_pca)
    missing, unexpected = model.load_state_dict(read_file(path, kind="safetensors", error=DataError), strict=False)
    bad = [k for k in missing if not k.startswith(("decoder.expansion.", "decoder.normaliser."))] + list(unexpected)
    if bad:
        raise DataError(f"{path}: weights do not fit the config ({bad[0]})")
    return model.eval()


def _train_point(prep, cfg, rows, binning, settings, seed, log, mi_active_only=False, weights_dir=None):
    model, info = train_unsupervised(prep, cfg)
    if weights_dir is not None:
        save_point_weights(model, Path(weights_dir) / weights_name(cfg.beta, cfg.latent_dim))
    pt = score_point(prep, cfg, model, info, rows, binning, settings=settings, seed=seed, mi_active_only=mi_active_only)
    log(f"beta {cfg.beta:.0e} d {cfg.latent_dim} [{'+'.join(cfg.spectra)}]: {info['epochs']} epochs {info['seconds']:.0f} s; "
        f"dchi2 median {pt['dchi2_median']:.3g} p99 {pt['dchi2_p99']:.3g}; active {pt['n_active']}; "
        f"max MI {pt['mi_max_latent_latent'] if pt['mi_max_latent_latent'] is None else round(pt['mi_max_latent_latent'], 3)} "
        f"({pt['mi_seconds']:.0f} s)")
    return model, pt


def run_discovery(cfg: TrainConfig, out, *, betas=(1e-6, 1e-5, 1e-4, 1e-3, 1e-2), d_beta: int = 8,
                  dims=tuple(range(3, 11)), mi_files=None, beta: float | None = None, settings=None,
                  seed: int = 0, verbose: bool = True, min_mi_rows: int = MIN_MI_ROWS) -> dict:
    """The beta scan then the latent-count scan (``beta`` given: skip the beta scan). Writes ``out/scan.json`` after
    every point (a partial scan is readable) and ``out/scan.png``. Returns the result dict."""

    if cfg.mode != "unsupervised":
        raise ConfigError("discover: the config must have mode: unsupervised")
    for b in betas:
        if not 0 < b <= 1:
            raise ConfigError(f"discover: beta {b!r} outside (0, 1] (per-output scale)")
    for d in dims:
        if not 1 <= d <= 32:
            raise ConfigError(f"discover: latent count {d!r} outside 1..32")
    n_mi = sum(len(load_corpus(f, verbose=False)) for f in (mi_files or cfg.corpus))
    if n_mi < min_mi_rows:
        raise DataError(f"MI rows: {', '.join(map(str, mi_files or cfg.corpus))} hold {n_mi} usable rows, fewer than the "
                        f"{min_mi_rows} the MI estimates need; add corpus files")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log = print if verbose else (lambda *_: None)
    t0 = time.time()
    with torch_threads(cfg.threads):
        prep = prepare(cfg, verbose=verbose)
        rows = mi_rows(prep, mi_files or cfg.corpus, min_mi_rows)
        binning = load_plik_lite_binning()
        res = {"what": "unsupervised IVE scans (latentinfer.ive.discover)", "rule": RULE, "config": cfg.to_dict(),
               "kl_scale": kl_scale_of(cfg), "n_outputs": n_outputs(cfg.spectra),
               "anchor_beta_factor": anchor_beta_factor(prep, cfg.spectra),
               "n_train": len(prep.train), "n_val": len(prep.val), "n_test": len(prep.test),
               "corpus": [{"path": str(p), "sha256": sha256_file(p)} for p in cfg.corpus],
               "mi_rows": {"n": rows["n"], "files": rows["files"]}, "mi_settings": (settings or scan_mi_settings()).to_dict(),
               "beta_scan": {"latent_dim": d_beta, "points": []}, "dim_scan": {"points": []}, "versions": versions()}

        def save():
            res["wall_seconds"] = time.time() - t0
            write_json(out / "scan.json", to_jsonable(res))

        if beta is None:
            for b in betas:
                _, pt = _train_point(prep, dataclasses.replace(cfg, beta=float(b), beta_start=min(cfg.beta_start, float(b)),
                                                               latent_dim=d_beta), rows, binning, settings, seed, log,
                                     weights_dir=out / "weights")
                res["beta_scan"]["points"].append(pt)
                save()
            beta = choose_beta(res["beta_scan"]["points"])
        res["chosen_beta"] = float(beta)
        log(f"chosen beta {beta:.0e}")
        for d in dims:
            if d == d_beta and res["beta_scan"]["points"]:
                pt = next(p for p in res["beta_scan"]["points"] if p["beta"] == beta)
            else:
                _, pt = _train_point(prep, dataclasses.replace(cfg, beta=float(beta), beta_start=min(cfg.beta_start, float(beta)),
                                                               latent_dim=int(d)), rows, binning, settings, seed, log,
                                     weights_dir=out / "weights")
            res["dim_scan"]["points"].append(pt)
            save()
        res["chosen_dim"] = choose_dim(res["dim_scan"]["points"])
        res["n_active_at_largest_d"] = res["dim_scan"]["points"][-1]["n_active"]
        log(f"chosen d {res['chosen_dim']} (active latents at d = {dims[-1]}: {res['n_active_at_largest_d']})")
        save()
    res["png"] = str(plot_discovery(res, out / "scan.png"))
    save()
    return res


def plot_discovery(res: dict, path) -> Path:
    """Accuracy, active latents and largest latent-latent MI against beta and against d."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(10, 7))
    for col, (key, xkey, xlabel, logx) in enumerate((("beta_scan", "beta", "beta (per output)", True),
                                                     ("dim_scan", "latent_dim", "latent count d", False))):
        pts = res[key]["points"]
        if not pts:
            continue
        x = [p[xkey] for p in pts]
        a = ax[0, col]
        a.plot(x, [p["dchi2_median"] for p in pts], "o-", label="median")
        a.plot(x, [p["dchi2_p99"] for p in pts], "s--", label="p99")
        a.set_yscale("log"); a.set_ylabel("held-out plik_lite dchi2"); a.legend()
        b = ax[1, col]
        b.plot(x, [p["n_active"] for p in pts], "o-", color="C2", label="active latents")
        b.set_ylabel("active latents (KL > 0.1 nat)")
        b2 = b.twinx()
        b2.errorbar(x, [p["mi_max_latent_latent"] or np.nan for p in pts],
                    yerr=[p["mi_max_latent_latent_err"] or 0 for p in pts], fmt="s--", color="C3")
        b2.set_ylabel("max latent-latent MI (nat)", color="C3")
        for a_ in (a, b):
            a_.set_xlabel(xlabel)
            if logx:
                a_.set_xscale("log")
        if key == "beta_scan" and "chosen_beta" in res:
            a.axvline(res["chosen_beta"], color="k", lw=0.8)
        if key == "dim_scan" and "chosen_dim" in res:
            a.axvline(res["chosen_dim"], color="k", lw=0.8)
    fig.suptitle(f"{res['config']['name']}: beta scan at d = {res['beta_scan']['latent_dim']}, then d scan at beta "
                 f"{res.get('chosen_beta', float('nan')):.0e} [{'+'.join(res['config']['spectra'])}]")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def ksg_scan(folder, mi_files, seed: int = 0) -> dict:
    """KSG (kNN) MI of every point of a finished scan, from its saved weights, beside the GMM-MI of ``scan.json``:
    ``{"beta<b>_d<d>": {"latent_latent": (d, d), "latent_parameter": (d, p), "max_latent_latent": ...}}``.
    Writes ``folder/scan_ksg.json``."""
    import json


    folder = Path(folder)
    res = json.loads((folder / "scan.json").read_text())
    cfg0 = TrainConfig.from_dict(res["config"])
    prep = prepare(cfg0, verbose=False)
    rows = mi_rows(prep, mi_files)
    out = {}
    for p in res["beta_scan"]["points"] + res["dim_scan"]["points"]:
        key = f"beta{p['beta']:.0e}_d{p['latent_dim']}"
        if key in out:
            continue
        cfg = dataclasses.replace(cfg0, beta=p["beta"], latent_dim=p["latent_dim"], beta_start=min(cfg0.beta_start, p["beta"]))
        model = load_point_model(prep, cfg, folder / "weights" / weights_name(p["beta"], p["latent_dim"]))
        z, _ = encode_split(model, rows["c"], cfg.spectra)
        d = z.shape[1]
        ll = np.full((d, d), np.nan)
        for i in range(d):
            for j in range(i + 1, d):
                ll[i, j] = ll[j, i] = ksg_mi(z[:, i], z[:, j], seed=seed)
        lp = np.array([[ksg_mi(z[:, i], rows["params"][:, j], seed=seed) for j in range(rows["params"].shape[1])]
                       for i in range(d)])
        active = np.asarray(p["kl_per_latent"]) > ACTIVE_KL
        lla = ll[np.ix_(active, active)]
        out[key] = {"latent_latent": ll, "latent_parameter": lp, "parameter_names": rows["names"],
                    "max_latent_latent": float(np.nanmax(ll)) if d > 1 else None,
                    "max_latent_latent_active": float(np.nanmax(lla)) if active.sum() > 1 else None}
    write_json(folder / "scan_ksg.json", to_jsonable({"estimator": "KSG k=3 (latentinfer.interpret.knn)", "n": rows["n"],
                                                      "points": out}))
    return out


def scan_table(folder) -> str:
    """A markdown table of a finished scan (``scan.json``, and ``scan_ksg.json`` when present)."""
    import json

    folder = Path(folder)
    res = json.loads((folder / "scan.json").read_text())
    ksg = {}
    if (folder / "scan_ksg.json").is_file():
        ksg = json.loads((folder / "scan_ksg.json").read_text())["points"]
    lines = ["| scan | beta | d | epochs | train s | dchi2 median | dchi2 p99 | active | max MI latent-latent, GMM (nat) | "
             "max MI, KSG (all / active) | top latent-parameter MI per active latent (GMM) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for scan, pts in (("beta", res["beta_scan"]["points"]), ("d", res["dim_scan"]["points"])):
        for p in pts:
            k = ksg.get(f"beta{p['beta']:.0e}_d{p['latent_dim']}", {})
            lp = np.array([[np.nan if v is None else v for v in row] for row in p["mi"]["latent_parameter"]], float)
            names = p["mi"]["parameter_names"]
            act = np.asarray(p["kl_per_latent"]) > ACTIVE_KL
            tops = ", ".join(f"z{i + 1}:{names[int(np.nanargmax(lp[i]))]} {np.nanmax(lp[i]):.2f}" for i in np.flatnonzero(act)
                             if np.isfinite(lp[i]).any())
            mx = "-" if p["mi_max_latent_latent"] is None else f"{p['mi_max_latent_latent']:.2f} +- {p['mi_max_latent_latent_err']:.2f} ({'-'.join(p['mi_max_pair'])})"
            kk = "-" if not k else f"{k['max_latent_latent']:.2f} / " + ("-" if k["max_latent_latent_active"] is None else f"{k['max_latent_latent_active']:.2f}")
            chosen = " **" if (scan == "d" and p["latent_dim"] == res.get("chosen_dim")) or (scan == "beta" and p["beta"] == res.get("chosen_beta")) else ""
            lines.append(f"| {scan}{chosen} | {p['beta']:.0e} | {p['latent_dim']} | {p['epochs']} | {p['train_seconds']:.0f} | "
                         f"{p['dchi2_median']:.3g} | {p['dchi2_p99']:.3g} | {p['n_active']} | {mx} | {kk} | {tops} |")
    return "\n".join(lines)
