"""Where a disagreement lives: per parameter, per eigen-direction, and in data space through the decoder.

- per parameter: ``(mean_A - mean_B)_i / sqrt(C_A,ii + C_B,ii)`` (combined sigma);
- per eigen-direction ``u_k`` of the combined covariance ``C = C_A + C_B = sum_k lambda_k u_k u_k^T``: the shift
  ``s_k = u_k . Delta / sqrt(lambda_k)`` in sigma along that direction (``sum_k s_k^2 = Delta^T C^-1 Delta``);
- in data space: ``J Delta`` with ``J`` the Jacobian of the forward model (decoder) at the runs' mean, for every
  output (e.g. D_ell in muK^2 per spectrum and ell), and for each likelihood of each run, ``J_d Delta / sigma_d``
  (the data-vector change in units of the data's own errors, sigma_d = sqrt(diag C_data)), grouped by spectrum
  and ell band into the share of ``sum (J_d Delta / sigma_d)^2`` that each group carries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..priors import centre, fixed_value, is_fixed
from ..program.jacobian import jacobian as _jacobian
from .base import TensionInputs

__all__ = ["attribute", "parameter_shifts", "eigen_modes", "data_space", "ELL_BANDS"]

#: Edges of the multipole bands used to summarise data-space patterns (ell).
ELL_BANDS = (2, 30, 400, 800, 1200, 1600, 2000, 2500, 3500)


def parameter_shifts(inp: TensionInputs) -> dict[str, dict[str, float]]:
    shift = inp.shift
    sig = np.sqrt(np.diag(inp.cov_a) + np.diag(inp.cov_b))
    return {n: {"shift": float(shift[i]), "sigma": float(sig[i]), "n_sigma": float(shift[i] / sig[i])} for i, n in enumerate(inp.names)}


def eigen_modes(inp: TensionInputs) -> list[dict[str, Any]]:
    """Eigen-directions of ``C_A + C_B``, sorted by the share of ``Delta^T C^-1 Delta`` they carry."""
    lam, u = np.linalg.eigh(inp.cov_a + inp.cov_b)
    proj = u.T @ inp.shift
    s = proj / np.sqrt(lam)
    q = float((s**2).sum())
    order = np.argsort(-(s**2))
    return [
        {
            "n_sigma": float(s[k]),
            "fraction": float(s[k] ** 2 / q) if q > 0 else 0.0,
            "sigma": float(np.sqrt(lam[k])),
            "projection": float(proj[k]),
            "vector": {n: float(u[i, k]) for i, n in enumerate(inp.names)},
        }
        for k in order
    ]


def _axis(meta: Mapping, key: str, n: int) -> np.ndarray | None:
    """An ``(n,)`` coordinate array from ``meta[key]`` (array or per-output mapping), else None."""
    val = meta.get(key)
    if isinstance(val, Mapping):
        return None
    if val is not None:
        arr = np.asarray(val)
        return arr if arr.shape == (n,) else None
    return None


def _output_ell(forward, out: str, n: int) -> np.ndarray | None:
    """Multipoles of output ``out`` (length ``n``) from the model's meta or card; None when not recorded."""
    for meta in (forward.meta, forward.meta.get("card", {}) or {}):
        val = meta.get("ell")
        if isinstance(val, Mapping) and out in val:
            val = val[out]
        if val is not None and np.asarray(val).shape == (n,):
            return np.asarray(val, dtype=float)
        if val is not None and np.asarray(val).shape == (2,) and val[1] - val[0] + 1 == n:  # a range [lmin, lmax]
            return float(val[0]) + np.arange(n)
        lo = meta.get("ell_min", meta.get("lmin"))
        if lo is not None:
            return float(lo) + np.arange(n)
    return None


def _value_at(analysis, post_means: Mapping[str, float], name: str) -> float:
    spec = analysis.prior_of(name)
    if is_fixed(spec):
        return fixed_value(spec)
    if name in post_means:
        return float(post_means[name])
    (kind, args), = spec.items() if isinstance(spec, Mapping) else (("normal", [0.0, 1.0]),)
    if kind in ("normal", "uniform", "truncnormal"):
        return centre(spec)
    if kind == "mvnormal":
        block = [n for b in analysis._nuisance_blocks for n in b.names if name in b.names]
        return float(args[0][block.index(name)])
    return 0.0


def _bands(ell: np.ndarray | None, spectrum: np.ndarray | None, x2: np.ndarray) -> list[dict[str, Any]]:
    total = float(x2.sum()) or 1.0
    spectra = np.asarray(spectrum) if spectrum is not None else np.full(x2.shape[0], "all")
    coord = ell if ell is not None else np.arange(x2.shape[0])
    edges = ELL_BANDS if ell is not None else np.linspace(0, x2.shape[0], 9)
    rows = []
    for spec in dict.fromkeys(spectra.tolist()):
        for lo, hi in zip(edges[:-1], edges[1:]):
            sel = (spectra == spec) & (coord >= lo) & (coord < hi)
            if sel.any():
                c = float(x2[sel].sum())
                rows.append({"spectrum": str(spec), "ell_min": float(coord[sel].min()), "ell_max": float(coord[sel].max()), "n": int(sel.sum()), "chi2": c, "fraction": c / total})
    return sorted(rows, key=lambda r: -r["fraction"])


def data_space(inp: TensionInputs, analyses: Mapping[str, Any], modes: list[dict]) -> dict[str, Any]:
    """Map the parameter shift (and its leading mode) through the decoder and each run's likelihoods."""
    first = next(iter(analyses.values()))
    fwd = first.forward
    dtype = first.dtype
    means = dict(zip(inp.names, 0.5 * (inp.a.mean(0) + inp.b.mean(0))))
    z0 = torch.tensor([_value_at(first, means, n) for n in fwd.latent_names], dtype=dtype)
    delta = torch.zeros(fwd.dim, dtype=dtype)
    lead = torch.zeros(fwd.dim, dtype=dtype)
    top = modes[0] if modes else None
    for i, n in enumerate(fwd.latent_names):
        if n in inp.names:
            j = inp.names.index(n)
            delta[i] = float(inp.shift[j])
            if top is not None:
                lead[i] = top["projection"] * top["vector"][n]
    out: dict[str, Any] = {"point": {n: float(v) for n, v in zip(fwd.latent_names, z0)}, "outputs": {}, "likelihoods": {}}
    with torch.no_grad():
        theory0 = fwd(z0)
    for name, y0 in theory0.items():
        J = _jacobian(lambda z, name=name: fwd(z)[name], z0)
        n = int(y0.shape[-1])
        ell = _output_ell(fwd, name, n)
        out["outputs"][name] = {
            "ell": None if ell is None else ell.tolist(),
            "value": y0.numpy().tolist(),
            "delta": (J @ delta).numpy().tolist(),
            "delta_leading_mode": (J @ lead).numpy().tolist(),
        }
    for label, analysis in analyses.items():
        post = {"A": inp.post_a, "B": inp.post_b}.get(label)
        pmeans = {n: float(post.samples(n).mean()) for n in post.parameter_names} if post is not None else {}
        pmeans.update(means)
        for lik in analysis.likelihoods:
            nuis = {n: torch.tensor(_value_at(analysis, pmeans, n), dtype=dtype) for n in lik.nuisance_names}
            J = _jacobian(lambda z, lik=lik, nuis=nuis: lik.predict(analysis.forward(z), nuis), z0)
            sig = torch.sqrt(torch.diagonal(lik.cov)).to(dtype)
            x = ((J @ delta) / sig).numpy()
            xl = ((J @ lead) / sig).numpy()
            ell = _axis(lik.meta, "ell", lik.n_data)
            spectrum = _axis(lik.meta, "spectrum", lik.n_data)
            out["likelihoods"][f"{label}:{lik.name}"] = {
                "run": label,
                "likelihood": lik.name,
                "ell": None if ell is None else ell.astype(float).tolist(),
                "spectrum": None if spectrum is None else [str(s) for s in spectrum],
                "delta_sigma": x.tolist(),
                "delta_sigma_leading_mode": xl.tolist(),
                "chi2_of_shift": float((x**2).sum()),
                "bands": _bands(ell, spectrum, x**2),
            }
    return out


def attribute(inp: TensionInputs, analyses: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Per-parameter and per-mode shifts; data-space patterns when ``analyses`` (label -> Analysis) are given."""
    modes = eigen_modes(inp)
    res: dict[str, Any] = {"parameters": parameter_shifts(inp), "modes": modes}
    if analyses:
        res["data_space"] = data_space(inp, analyses, modes)
    return res
