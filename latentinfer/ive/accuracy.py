"""Emulator accuracy in the units that matter: dchi^2 under the Planck 2018 plik_lite TTTEEE covariance.

For each held-out corpus row, the CAMB spectra and the emulated ones (encode -> decode, and emulate from the
row's parameters) are binned as plik_lite does (``C_b = sum_l w_l C_l`` with C_l = 2 pi D_l / (l(l+1)), bins
ell 30-2508 for TT (215), 30-1996 for TE and EE (199 each)) and compared with ``dchi2 = r^T C^-1 r``, r the
binned difference (613 values). The binning and covariance are read from the vendored plik_lite files, following
``likelihoods/planck2018-plik-lite/PROVENANCE.md`` (``run_accuracy`` computes, ``check_accuracy``
judges against the goal: median < 0.05, 99th percentile < 0.5).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..paths import resolve
from ..bundle import load_model

__all__ = ["PlikLiteBinning", "load_plik_lite_binning", "dchi2", "run_accuracy", "check_accuracy", "bundle_accuracy", "GOAL",
           "PLIK_LITE_DIR", "summarise", "quantile_interval", "quantile_below_confidence", "error_by_parameter", "describe_where"]

def _plik_lite_dir() -> Path:
    """The vendored ``likelihoods/planck2018-plik-lite`` folder (or ``$LATENTINFER_PLIK_LITE``)."""
    if os.environ.get("LATENTINFER_PLIK_LITE"):
        return Path(os.environ["LATENTINFER_PLIK_LITE"])

    return resolve("likelihoods", "planck2018-plik-lite")


PLIK_LITE_DIR = _plik_lite_dir()
GOAL = {"median": 0.05, "p99": 0.5}
_N_BINS = {"TT": 215, "TE": 199, "EE": 199}


@dataclass
class PlikLiteBinning:
    """Binning matrices ``{S: (n_bins, 3199)}`` acting on D_ell at ell 2..3200, and the inverse covariance (613, 613)."""

    matrices: dict[str, np.ndarray]
    cov: np.ndarray
    inv_cov: np.ndarray

    def bin(self, D: Mapping[str, np.ndarray]) -> np.ndarray:
        """D_ell ``{TT, TE, EE: (..., 3199)}`` in muK^2 -> binned C_b ``(..., 613)`` in muK^2 (TT, TE, EE)."""
        return np.concatenate([np.asarray(D[s]) @ self.matrices[s].T for s in ("TT", "TE", "EE")], axis=-1)


def load_plik_lite_binning(folder: str | os.PathLike = PLIK_LITE_DIR) -> PlikLiteBinning:
    """Read ``blmin.dat, blmax.dat, bweight.dat, c_matrix_plik_v22.dat`` from ``folder``."""
    from scipy.io import FortranFile

    folder = Path(folder)
    try:
        blmin = np.loadtxt(folder / "blmin.dat").astype(int)
        blmax = np.loadtxt(folder / "blmax.dat").astype(int)
        w = np.loadtxt(folder / "bweight.dat")
        with FortranFile(str(folder / "c_matrix_plik_v22.dat")) as f:
            c = f.read_reals(float).reshape(613, 613)
    except (OSError, ValueError) as exc:
        raise DataError(f"plik_lite files in {folder} unreadable ({exc})") from None
    cov = np.tril(c) + np.tril(c, -1).T
    ell = np.arange(2, 3201)
    conv = 2 * np.pi / (ell * (ell + 1.0))  # D_l -> C_l
    mats = {}
    for s, nb in _N_BINS.items():
        m = np.zeros((nb, len(ell)))
        for i in range(nb):
            idx = np.arange(blmin[i], blmax[i] + 1)
            m[i, idx + 30 - 2] = w[idx] * conv[idx + 30 - 2]
        mats[s] = m
    return PlikLiteBinning(mats, cov, np.linalg.inv(cov))


def dchi2(binning: PlikLiteBinning, D_a: Mapping[str, np.ndarray], D_b: Mapping[str, np.ndarray]) -> np.ndarray:
    """``r^T C^-1 r`` per row for binned differences of two sets of spectra ``{S: (N, 3199)}``; shape (N,)."""
    r = binning.bin(D_a) - binning.bin(D_b)
    return np.einsum("ni,ij,nj->n", r, binning.inv_cov, r)


def quantile_interval(x: np.ndarray, q: float, level: float = 0.68) -> tuple[float | None, float | None, float]:
    """Distribution-free interval ``[X_(r), X_(s)]`` for the ``q``-quantile of the population behind the sample ``x``.

    The number B of sample values below the true quantile is Binomial(n, q), so the order statistics
    ``X_(r) <= xi_q < X_(s)`` hold exactly when ``r <= B < s``: ``r`` is the largest with ``P(B < r) <= (1-level)/2``,
    ``s`` the smallest with ``P(B >= s) <= (1-level)/2``. An end that n values cannot bound is None (e.g. the upper
    end of the 99th percentile from fewer than ~180 values). Returns ``(low, high, coverage)``, coverage = the exact
    ``P(r <= B < s) >= level``, for any continuous distribution.
    """
    from scipy.stats import binom

    xs = np.sort(np.asarray(x, np.float64))
    n, a = len(xs), (1.0 - level) / 2
    k = np.arange(n + 2)
    below = binom.cdf(k - 1, n, q)                  # P(B < k)
    r = int(k[below <= a].max())                    # k = 0 always qualifies: X_(0) = -inf
    s = int(k[1.0 - below <= a].min())              # P(B >= k); k = n + 1 always qualifies: X_(n+1) = +inf
    coverage = float(binom.cdf(s - 1, n, q) - binom.cdf(r - 1, n, q))
    return (float(xs[r - 1]) if r >= 1 else None, float(xs[s - 1]) if s <= n else None, coverage)


def quantile_below_confidence(x: np.ndarray, q: float, threshold: float) -> float:
    """One-sided confidence that the population's ``q``-quantile lies below ``threshold``, from a sample ``x``.

    With k of the n values below the threshold, the exact binomial test of ``P(X < threshold) <= q`` has p-value
    ``P(Bin(n, q) >= k)``; the confidence is one minus it. All of 100 values below the threshold give only
    ``1 - 0.99**100 = 0.63`` for the 99th percentile: showing a 99th percentile with 95% confidence takes >= 299 values.
    """
    from scipy.stats import binom

    x = np.asarray(x, np.float64)
    k = int(np.sum(x < threshold))
    return float(binom.cdf(k - 1, len(x), q))


def summarise(x: np.ndarray) -> dict:
    """dchi^2 statistics of held-out rows, with distribution-free 68% intervals for the median and the 99th percentile
    and the confidence that each lies below its goal (:func:`quantile_interval`, :func:`quantile_below_confidence`)."""
    x = np.asarray(x, np.float64)
    out = {"n": int(len(x)), "mean": float(x.mean()), "median": float(np.median(x)), "p68": float(np.percentile(x, 68)),
           "p95": float(np.percentile(x, 95)), "p99": float(np.percentile(x, 99)), "max": float(x.max())}
    for key, q in (("median", 0.5), ("p99", 0.99)):
        lo, hi, _ = quantile_interval(x, q)
        out[f"{key}_ci68"] = [lo, hi]
    out["goal_confidence"] = {key: quantile_below_confidence(x, q, GOAL[key]) for key, q in (("median", 0.5), ("p99", 0.99))}
    return out


def error_by_parameter(params: np.ndarray, names: list[str], d: np.ndarray, box_low: np.ndarray | None = None,
                       box_high: np.ndarray | None = None, *, threshold: float = GOAL["p99"], alpha: float = 0.01) -> dict:
    """Where in parameter space the emulator error lives, to aim the next simulations.

    For each parameter: the Spearman rank correlation of dchi^2 with it and its (asymptotic) p-value, the median
    dchi^2 and the number of rows above ``threshold`` in the lower and upper half of its range (the box, or the rows'
    range), and the span of its values over those rows. ``leading`` is the parameter with the smallest p-value when it is below ``alpha`` after a Bonferroni
    correction over the parameters (else None: no parameter stands out), and ``aim`` the half of its range with the
    larger median, as a ``simulate --box`` argument.
    """
    from scipy.stats import spearmanr

    params, d = np.asarray(params, np.float64), np.asarray(d, np.float64)
    lo = params.min(0) if box_low is None else np.asarray(box_low, np.float64)
    hi = params.max(0) if box_high is None else np.asarray(box_high, np.float64)
    out: dict = {"threshold": threshold, "n_over": int((d > threshold).sum()), "alpha": alpha, "parameters": {}}
    for j, name in enumerate(names):
        x = params[:, j]
        rho, p = (0.0, 1.0) if np.ptp(x) == 0 else spearmanr(x, d)
        mid = 0.5 * (lo[j] + hi[j])
        low, high = d[x < mid], d[x >= mid]
        out["parameters"][name] = {
            "spearman": float(rho), "p_value": float(p), "range": [float(lo[j]), float(hi[j])],
            "median_low": float(np.median(low)) if len(low) else None,
            "median_high": float(np.median(high)) if len(high) else None,
            "over_low": int((low > threshold).sum()), "over_high": int((high > threshold).sum()),
            "over_span": [float(x[d > threshold].min()), float(x[d > threshold].max())] if (d > threshold).any() else None}
    best = min(out["parameters"], key=lambda k: out["parameters"][k]["p_value"])
    b = out["parameters"][best]
    out["leading"] = best if b["p_value"] * len(names) < alpha else None
    out["aim"] = None
    if out["leading"] is not None:
        mid = 0.5 * (b["range"][0] + b["range"][1])
        upper = (b["median_high"] or 0.0) >= (b["median_low"] or 0.0)
        a, z = (mid, b["range"][1]) if upper else (b["range"][0], mid)
        out["aim"] = f"{best}={a:.6g}:{z:.6g}"
    return out


def describe_where(w: Mapping) -> str:
    """One line of :func:`error_by_parameter` for the command line."""
    if w["leading"] is None:
        return f"no parameter stands out (Spearman, Bonferroni p >= {w['alpha']})"
    name, b = w["leading"], w["parameters"][w["leading"]]
    mid = 0.5 * (b["range"][0] + b["range"][1])
    return (f"error grows with {name} (Spearman {b['spearman']:+.2f}, p {b['p_value']:.1g}): median "
            f"{b['median_low']:.3g} at {name} < {mid:.4g}, {b['median_high']:.3g} above; rows over {w['threshold']}: "
            f"{b['over_low']} below, {b['over_high']} above"
            + (f" ({name} {b['over_span'][0]:.4g}-{b['over_span'][1]:.4g})" if b["over_span"] else "")
            + f"; aim new spectra with --box {w['aim']}")


def run_accuracy(D_true: Mapping[str, np.ndarray], emulated: Mapping[str, Mapping[str, np.ndarray]],
                 binning: PlikLiteBinning | None = None) -> dict[str, dict]:
    """dchi^2 statistics per path: ``emulated = {"encode_decode": D, "emulate": D}`` -> ``{path: summary + values}``."""
    binning = binning or load_plik_lite_binning()
    out = {}
    for path, D in emulated.items():
        d = dchi2(binning, D, D_true)
        out[path] = {**summarise(d), "values": d.tolist()}
    return out


def check_accuracy(result: Mapping[str, Mapping], goal: Mapping[str, float] = GOAL) -> dict[str, bool]:
    """Judge each path against the goal (median and 99th percentile of dchi^2)."""
    return {path: bool(r["median"] < goal["median"] and r["p99"] < goal["p99"]) for path, r in result.items()}


def bundle_accuracy(model_name_or_path, corpus=None, binning: PlikLiteBinning | None = None) -> dict[str, dict]:
    """dchi^2 of a loaded bundle on corpus rows (default: its held-out ``validation.npz``), both paths."""
    import torch

    from .data import full_spectra, load_corpus

    model = model_name_or_path if isinstance(model_name_or_path, torch.nn.Module) else load_model(model_name_or_path)
    c = load_corpus(corpus if corpus is not None else Path(model.meta["bundle"]) / "validation.npz", verbose=False)
    D = full_spectra(c)
    with torch.no_grad():
        dec = {k: v.numpy() for k, v in model(model.encode(D)).items()}
    emu = model.emulate(dict(zip(c.names, c.params.T)))
    res = run_accuracy(D, {"encode_decode": dec, "emulate": emu}, binning)
    for r in res.values():
        r["where"] = error_by_parameter(c.params, c.names, np.asarray(r["values"]), c.box_low, c.box_high)
    return res
