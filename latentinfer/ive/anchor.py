"""The anchor experiment on our data (issue 20, item 3): Piras, Herold, Lucie-Smith & Komatsu (2025,
arXiv:2502.09810) find that an unsupervised beta-VAE needs 5 latents for LCDM TT spectra and 8 for EDE, and that one
EDE latent carries the EDE effect alone. This module reads the scans of :mod:`latentinfer.ive.discover` (and the
weights they saved) and measures the same things on our corpus:

(a) LCDM: the latent count each scan chose and the active latents, for TT only and for TT/TE/EE/PP, and how well the
    latents determine ``logA``, ``tau`` and ``logA - 2 tau`` (= ln(1e10 A_s e^{-2 tau})): the cross-validated R^2 of a
    k-nearest-neighbour regression of each on the active latents. If TT alone sees A_s e^{-2 tau} as one direction,
    the TT-only R^2 of the combination stays high while those of logA and tau drop.
(b) EDE: the latent with the largest MI with f_EDE(z_c) (GMM-MI with bootstrap errors, and KSG beside it), its margin
    over the runner-up in units of their combined bootstrap error, its MI with every LCDM parameter (criterion
    <= 0.05 nat), and its spread when the encoder is fed LCDM spectra (f_EDE = 0): the standard deviation over the
    LCDM corpus against that over the EDE rows. Traversal plot of that latent beside CAMB's EDE-minus-LCDM residuals.

Everything is written to ``anchor.json`` and PNGs in the output folder; ``tests/ive/test_anchor.py`` (slow) asserts the
numbers from the stored results.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..bundle import load_model
from ..errors import DataError
from ..io import to_jsonable, write_json
from .config import TrainConfig
from ..paths import corpus_path
from .data import concat_corpora, full_spectra, load_corpus
from .discover import coefficients, load_point_model, weights_name
from .train import prepare, torch_threads
from .unsupervised import encode_split
from ..interpret.mi import MISettings
from ..interpret.knn import ksg_mi_error
from ..interpret.mi import gmm_mi
from ..interpret.knn import ksg_mi

__all__ = ["ANCHOR_MI_SETTINGS", "LCDM_NAMES", "load_scan", "knn_r2", "lcdm_latent_count", "ede_latent", "ede_latent_of", "bundle_ede_latent", "run_anchor",
           "FIDUCIAL"]

LCDM_NAMES = ["ombh2", "omch2", "H0", "logA", "ns", "tau"]
FIDUCIAL = {"ombh2": 0.02237, "omch2": 0.1200, "H0": 67.36, "logA": 3.044, "ns": 0.9649, "tau": 0.0544}
MARGIN_SIGMA = 2.0
NARROW = 0.25
MI_LCDM_MAX = 0.05


def anchor_mi_settings():
    """GMM-MI for the anchor numbers: 20 bootstrap refits, and patience 3 in the choice of the component count (with
    patience 1 the cross-validation can stop at one component on sharp-edged densities; tests/interpret/test_mi_rows.py)."""

    return MISettings(n_bootstrap=10, mc_samples=10_000, max_components=10, patience=3)


ANCHOR_MI_SETTINGS = "n_bootstrap 10, mc_samples 10000, max_components 10, patience 3"


def load_scan(folder, beta: float | None = None, d: int | None = None):
    """``(res, cfg, prep, model)`` of a scan point (default: the chosen beta and d) from ``folder/scan.json`` and its
    saved weights."""
    folder = Path(folder)
    res = json.loads((folder / "scan.json").read_text())
    if "chosen_dim" not in res:
        raise DataError(f"{folder}/scan.json: unfinished scan (no chosen_dim)")
    beta = res["chosen_beta"] if beta is None else beta
    d = res["chosen_dim"] if d is None else d
    cfg = TrainConfig.from_dict({**res["config"], "beta": beta, "latent_dim": d, "beta_start": min(res["config"]["beta_start"], beta)})
    w = folder / "weights" / weights_name(beta, d)
    if not w.is_file():
        raise DataError(f"{w} not found: rerun the scan (latentinfer discover) to make the weights")
    prep = prepare(cfg, verbose=False)
    return res, cfg, prep, load_point_model(prep, cfg, w)


def _point(res: dict, beta: float, d: int) -> dict:
    for p in res["dim_scan"]["points"] + res["beta_scan"]["points"]:
        if p["beta"] == beta and p["latent_dim"] == d:
            return p
    raise DataError(f"scan has no point beta {beta} d {d}")


def knn_r2(z: np.ndarray, y: np.ndarray, k: int = 10, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated R^2 of a k-nearest-neighbour regression of ``y`` on standardised latents ``z``."""
    from sklearn.model_selection import KFold, cross_val_score
    from sklearn.neighbors import KNeighborsRegressor

    zs = (z - z.mean(0)) / z.std(0)
    cv = KFold(folds, shuffle=True, random_state=seed)
    return float(np.mean(cross_val_score(KNeighborsRegressor(k, weights="distance"), zs, y, cv=cv, scoring="r2")))


def _encode_files(prep, model, files, spectra):
    c = concat_corpora([load_corpus(f, verbose=False) for f in files])
    z, _ = encode_split(model, coefficients(prep, full_spectra(c)), spectra)
    return c, z


def lcdm_latent_count(folder, mi_files) -> dict:
    """Part (a) for one LCDM scan folder."""
    res, cfg, prep, model = load_scan(folder)
    p = _point(res, res["chosen_beta"], res["chosen_dim"])
    c, z = _encode_files(prep, model, mi_files, cfg.spectra)
    active = np.asarray(p["kl_per_latent"]) > 0.1
    za = z[:, active]
    th = dict(zip(c.names, c.params.T))
    targets = {"logA": th["logA"], "tau": th["tau"], "logA-2tau": th["logA"] - 2 * th["tau"], "H0": th["H0"],
               "ombh2": th["ombh2"], "omch2": th["omch2"], "ns": th["ns"]}
    return {"spectra": cfg.spectra, "chosen_beta": res["chosen_beta"], "chosen_dim": res["chosen_dim"],
            "n_active_chosen": int(active.sum()), "n_active_by_d": {str(q["latent_dim"]): q["n_active"] for q in res["dim_scan"]["points"]},
            "dchi2_median_by_d": {str(q["latent_dim"]): q["dchi2_median"] for q in res["dim_scan"]["points"]},
            "kl_per_latent": p["kl_per_latent"], "n_rows": int(len(z)),
            "knn_r2": {k: knn_r2(za, v) for k, v in targets.items()}}


def _ksg_row(z, y, seed=0):

    out = [ksg_mi_error(z[:, j], y, seed=seed + j) for j in range(z.shape[1])]
    return [m for m, _ in out], [e for _, e in out]


def ede_latent(folder, mi_files, lcdm_files, out: Path, settings=None, progress: bool = False) -> dict:
    """Part (b) for a scan: the EDE latent, its margin, its MI with the LCDM parameters and its spread on LCDM
    spectra (:func:`ede_latent_of`), among the scan point's active latents."""

    res, cfg, prep, model = load_scan(folder)
    p = _point(res, res["chosen_beta"], res["chosen_dim"])
    c, z = _encode_files(prep, model, mi_files, cfg.spectra)
    lc, zl = _encode_files(prep, model, lcdm_files, cfg.spectra)
    kl = np.asarray(p["kl_per_latent"])

    def decode(zs):
        with torch.no_grad():
            return {k: v.double().numpy() for k, v in model.decoder(torch.as_tensor(zs, dtype=torch.float32)).items()}

    return ede_latent_of(c, z, zl, np.flatnonzero(kl > 0.1), decode, prep.sigma, out, settings,
                         {"scan": str(folder), "chosen_beta": res["chosen_beta"], "chosen_dim": res["chosen_dim"],
                          "kl_per_latent": kl.tolist()})


def bundle_ede_latent(bundle, mi_files, lcdm_files, out: Path, settings=None) -> dict:
    """Part (b) for a shipped bundle (e.g. the discovered ``cmb-ede-ive``): every latent is a candidate; the encoder
    means of the bundle, its decoder for the traversal, noise from :func:`latentinfer.ive.noise.knox_sigma` at the
    spectrum decoded at the latents' median over LCDM spectra."""
    from .noise import knox_sigma

    model = load_model(bundle)
    c = concat_corpora([load_corpus(f, verbose=False) for f in mi_files])
    lc = concat_corpora([load_corpus(f, verbose=False) for f in lcdm_files])
    z, zl = model.encode(full_spectra(c)).numpy(), model.encode(full_spectra(lc)).numpy()
    dt = next(model.parameters()).dtype

    def decode(zs):
        with torch.no_grad():
            return {k: v.double().numpy() for k, v in model(torch.as_tensor(zs, dtype=dt)).items()}

    from .data import ell_grid

    center = decode(np.median(zl, 0)[None])
    sigma = knox_sigma(ell_grid(), {k: v[0] for k, v in center.items()})
    card = model.meta["card"]
    return ede_latent_of(c, z, zl, np.arange(z.shape[1]), decode, sigma, out, settings,
                         {"bundle": str(bundle), "mode": card.get("mode"), "beta": card["training"]["config"]["beta"],
                          "latent_dim": z.shape[1]})


def ede_latent_of(c, z: np.ndarray, zl: np.ndarray, active: np.ndarray, decode, sigma, out: Path, settings=None,
                  meta: dict | None = None) -> dict:
    """Part (b) from encoded rows: ``z`` the latents of the EDE rows ``c``, ``zl`` of LCDM spectra, ``active`` the
    candidate latents, ``decode(zs) -> {S: D_ell (n, 3199)}`` and ``sigma`` the noise per spectrum (traversal)."""
    names = [f"z{j + 1}" for j in range(z.shape[1])]
    s = settings or anchor_mi_settings()
    t0 = time.time()
    ifde = c.names.index("fde_zc")
    # GMM-MI (anchor settings) for the pairs the criteria need: every active latent with f_EDE, then the EDE latent
    # with each LCDM parameter; the full latent-parameter matrix comes from the scan (scan settings) and KSG
    ests = [gmm_mi(z[:, a], c.params[:, ifde], s, seed=int(a)) for a in active]
    mi_f, err_f = np.array([e.mi for e in ests]), np.array([e.err for e in ests])
    order = np.argsort(-mi_f)
    top, second = order[0], order[1] if len(order) > 1 else None
    margin = float(mi_f[top] - (mi_f[second] if second is not None else 0.0))
    margin_err = float(np.hypot(err_f[top], err_f[second] if second is not None else 0.0))
    j = int(active[top])
    ksg_f, ksg_f_err = _ksg_row(z[:, active], c.params[:, ifde])
    lcdm_idx = [c.names.index(n) for n in LCDM_NAMES]
    lcdm_ests = [gmm_mi(z[:, j], c.params[:, i], s, seed=100 + i) for i in lcdm_idx]
    mi_lcdm = np.array([e.mi for e in lcdm_ests])
    mi_seconds = time.time() - t0

    ksg_all = np.array([[ksg_mi(z[:, a], c.params[:, i]) for i in range(c.params.shape[1])] for a in active])

    class _Tab:  # the fields the result below reads
        latent_parameter = None
        latent_parameter_err = None

    tab = _Tab()
    tab.latent_parameter = np.full((len(active), len(c.names)), np.nan)
    tab.latent_parameter_err = np.full((len(active), len(c.names)), np.nan)
    tab.latent_parameter[:, ifde], tab.latent_parameter_err[:, ifde] = mi_f, err_f
    tab.latent_parameter[top, lcdm_idx] = mi_lcdm
    tab.latent_parameter_err[top, lcdm_idx] = [e.err for e in lcdm_ests]

    ksg_lcdm = [ksg_mi_error(z[:, j], c.params[:, i], seed=i) for i in lcdm_idx]
    sd_ede, sd_lcdm = float(z[:, j].std()), float(zl[:, j].std())
    lcdm_value = float(np.median(zl[:, j]))
    low = c.params[:, ifde] < 0.01
    result = {
        **(meta or {}), "active": [names[a] for a in active], "n_rows": int(len(z)),
        "mi_settings": ANCHOR_MI_SETTINGS, "mi_seconds": mi_seconds,
        "mi_with_fde": {names[a]: {"gmm": float(mi_f[i]), "gmm_err": float(err_f[i]), "ksg": float(ksg_f[i]),
                                   "ksg_err": float(ksg_f_err[i])} for i, a in enumerate(active)},
        "ede_latent": names[j], "runner_up": None if second is None else names[int(active[second])],
        "margin": margin, "margin_err": margin_err, "margin_sigma": margin / margin_err if margin_err > 0 else np.inf,
        "mi_ede_latent_lcdm": {n: {"gmm": float(m), "gmm_err": float(tab.latent_parameter_err[top, i]),
                                   "ksg": float(k[0]), "ksg_err": float(k[1])}
                               for n, m, i, k in zip(LCDM_NAMES, mi_lcdm, lcdm_idx, ksg_lcdm)},
        "mi_ede_latent_other_ksg": {n: float(ksg_all[top, i]) for i, n in enumerate(c.names) if n not in LCDM_NAMES},
        "sd_on_ede_rows": sd_ede, "sd_on_lcdm_rows": sd_lcdm, "sd_ratio": sd_lcdm / sd_ede, "lcdm_value": lcdm_value,
        "n_lcdm_rows": int(len(zl)),
        "median_on_ede_rows_fde_below_0.01": float(np.median(z[low, j])) if low.any() else None,
        "n_ede_rows_fde_below_0.01": int(low.sum()),
        "latent_parameter_mi_gmm": {"latents": [names[a] for a in active], "parameters": c.names,
                                    "mi": tab.latent_parameter, "err": tab.latent_parameter_err,
                                    "note": "GMM-MI (anchor settings) only for the pairs the criteria need; NaN elsewhere"},
        "latent_parameter_mi_ksg": {"latents": [names[a] for a in active], "parameters": c.names, "mi": ksg_all},
    }
    result["criteria"] = {
        "largest_mi_with_fde_by_margin": bool(margin > MARGIN_SIGMA * margin_err),
        "mi_with_every_lcdm_parameter_below_0.05": bool(np.all(mi_lcdm <= MI_LCDM_MAX)),
        "mi_with_every_lcdm_parameter_below_0.05_ksg": bool(all(k[0] <= MI_LCDM_MAX for k in ksg_lcdm)),
        "narrow_on_lcdm_spectra": bool(sd_lcdm < NARROW * sd_ede),
        "rules": {"margin": f"MI(top) - MI(runner-up) > {MARGIN_SIGMA} x their combined bootstrap error",
                  "lcdm": f"GMM-MI with each of {', '.join(LCDM_NAMES)} <= {MI_LCDM_MAX} nat",
                  "narrow": f"sd over LCDM spectra < {NARROW} x sd over EDE rows"}}
    result["traversal_png"] = str(plot_ede_traversal(decode, sigma, j, z, zl, out / "ede_traversal.png", result))
    return result


def _camb_residuals(fdes=(0.05, 0.10, 0.15), log10_zc=3.5, theta_i=2.0):
    """CAMB EDE-minus-LCDM spectra at the fiducial LCDM parameters, on every ell 2..3200: ``{fde: {S: rel. diff}}``."""
    from ..simulate.camb_runner import camb_spectra  # deferred: CAMB is needed only to make the residual spectra
    from .data import corpus_ell_grid, spline_to_integer

    names = LCDM_NAMES + ["fde_zc", "log10_zc", "theta_i"]
    base = [FIDUCIAL[n] for n in LCDM_NAMES]
    ref = camb_spectra(base + [0.0, log10_zc, theta_i], names)
    out = {}
    for f in fdes:
        s = camb_spectra(base + [f, log10_zc, theta_i], names)
        out[f] = {k: spline_to_integer(corpus_ell_grid(), s[k][None])[0] - spline_to_integer(corpus_ell_grid(), ref[k][None])[0]
                  for k in ("TT", "EE", "TE")}
        out[f]["ref"] = {k: spline_to_integer(corpus_ell_grid(), ref[k][None])[0] for k in ("TT", "EE", "TE")}
    return out


def plot_ede_traversal(decode, sigma, j: int, z_ede: np.ndarray, z_lcdm: np.ndarray, path, result: dict) -> Path:
    """Left: decoded spectra along the EDE latent (the others at their median over LCDM spectra), relative to the
    spectrum at the latent's LCDM value, in noise units; right: CAMB EDE minus LCDM at the fiducial LCDM parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .data import ell_grid

    ell = ell_grid()
    center = np.median(z_lcdm, 0)
    vals = np.quantile(z_ede[:, j], [0.02, 0.25, 0.75, 0.98])
    zs = np.repeat(center[None], len(vals) + 1, 0)
    zs[1:, j] = vals
    D = decode(zs)
    res = _camb_residuals()
    fig, ax = plt.subplots(2, 2, figsize=(12, 7), sharex=True)
    for r, s in enumerate(("TT", "EE")):
        sig = sigma[s]
        for i, v in enumerate(vals):
            ax[r, 0].plot(ell, (D[s][i + 1] - D[s][0]) / sig, lw=1, label=f"{result['ede_latent']} = {v:+.2f}")
        ax[r, 0].set_ylabel(f"delta D_ell^{s} / sigma_noise")
        for f, rr in res.items():
            ax[r, 1].plot(ell, rr[s] / sig, lw=1, label=f"f_EDE(z_c) = {f}")
        ax[r, 1].set_ylabel(f"CAMB EDE - LCDM, D^{s} / sigma_noise")
        for a in ax[r]:
            a.axhline(0, color="k", lw=0.5)
            a.legend(fontsize=7)
    ax[0, 0].set_title(f"traversal of {result['ede_latent']} from its LCDM value {result['lcdm_value']:+.2f} (decoder)")
    ax[0, 1].set_title("CAMB: EDE minus LCDM at Planck 2018 LCDM, log10 z_c 3.5, theta_i 2")
    for a in ax[1]:
        a.set_xlabel("ell")
        a.set_xscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    # shape agreement: cosine of the traversal (LCDM value -> 98% quantile) with the CAMB residual at f = 0.1,
    # both in noise units over TT and EE
    a = np.concatenate([(D[s][-1] - D[s][0]) / sigma[s] for s in ("TT", "EE")])
    b = np.concatenate([res[0.10][s] / sigma[s] for s in ("TT", "EE")])
    result["traversal_camb_cosine"] = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    return Path(path)


def run_anchor(out="scans/discover/anchor", lcdm="scans/discover/lcdm", lcdm_tt="scans/discover/lcdm-tt",
               ede="scans/discover/ede", corpus=None, progress: bool = False, bundle: str | None = None) -> dict:
    """The whole experiment; writes ``out/anchor.json`` and ``out/ede_traversal.png``. With ``bundle`` (a shipped
    discovered EDE model, e.g. ``cmb-ede-ive``) only part (b), on that bundle."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    C = Path(corpus) if corpus else corpus_path("lcdm.npz").parent  # the corpus root holding the shared files
    t0 = time.time()
    result = {"what": "anchor reproduction (latentinfer.ive.anchor): Piras et al. 2025 on our corpus", "lcdm": {}}
    with torch_threads(1):
        if bundle is not None:
            result = {"what": f"anchor part (b) on the shipped bundle {bundle} (latentinfer.ive.anchor --bundle)",
                      "ede": bundle_ede_latent(bundle, [C / "ede.npz", C / "ede_edge.npz"],
                                               [C / "lcdm.npz", C / "lcdm_core.npz"], out),
                      "wall_seconds": time.time() - t0}
            write_json(out / "anchor.json", to_jsonable(result))
            return result
        for key, folder in (("TTTEEEPP", lcdm), ("TT", lcdm_tt)):
            if Path(folder, "scan.json").is_file():
                result["lcdm"][key] = lcdm_latent_count(folder, [C / "lcdm.npz"])
                write_json(out / "anchor.json", to_jsonable(result))
        if Path(ede, "scan.json").is_file():
            result["ede"] = ede_latent(ede, [C / "ede.npz", C / "ede_edge.npz"], [C / "lcdm.npz", C / "lcdm_core.npz"], out,
                                       progress=progress)
    result["wall_seconds"] = time.time() - t0
    write_json(out / "anchor.json", to_jsonable(result))
    return result


if __name__ == "__main__":  # python -m latentinfer.ive.anchor [OUT [EDE_SCAN]] | OUT --bundle NAME
    import sys

    argv = sys.argv[1:]
    if "--bundle" in argv:
        i = argv.index("--bundle")
        r = run_anchor(argv[0] if i > 0 else "scans/discover/anchor-bundle", bundle=argv[i + 1], progress=True)
    else:
        r = run_anchor(*(argv[0:1] or []), **({"ede": argv[1]} if len(argv) > 1 else {}), progress=True)
    print(json.dumps(to_jsonable({k: v for k, v in r.get("ede", {}).items()
                                  if k in ("ede_latent", "margin", "margin_err", "criteria", "sd_ratio", "mi_with_fde")}), indent=1))
    print(json.dumps(to_jsonable(r.get("lcdm", {})), indent=1))
