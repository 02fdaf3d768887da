"""The MI table of an encoder: every latent against every other latent and against every physical parameter.

``mi_table(z, params)`` runs :func:`~latentinfer.interpret.mi.gmm_mi` on each pair, in parallel through
:func:`latentinfer.execution.map_tasks` (one task per pair, seeded by the pair's index, so the numbers do not
depend on the number of workers). For a disentangled encoder the latent-latent block is ~0; the latent-parameter
block says what each latent encodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DataError
from .mi import MISettings, gmm_mi
from ..execution import map_tasks

__all__ = ["MITable", "mi_table"]


@dataclass
class MITable:
    """MI in nats with bootstrap errors.

    latent_latent, latent_latent_err : (d, d), symmetric, NaN on the diagonal
    latent_parameter, latent_parameter_err : (d, p)
    n_components_* : mixture components chosen by cross-validation for each pair
    """

    latent_names: list[str]
    parameter_names: list[str]
    latent_latent: np.ndarray
    latent_latent_err: np.ndarray
    latent_parameter: np.ndarray
    latent_parameter_err: np.ndarray
    n_components_latent_latent: np.ndarray
    n_components_latent_parameter: np.ndarray
    n: int
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit": "nat",
            "n": self.n,
            "latent_names": list(self.latent_names),
            "parameter_names": list(self.parameter_names),
            "latent_latent": {"mi": self.latent_latent, "err": self.latent_latent_err, "n_components": self.n_components_latent_latent},
            "latent_parameter": {"mi": self.latent_parameter, "err": self.latent_parameter_err, "n_components": self.n_components_latent_parameter},
            "settings": dict(self.settings),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MITable":
        def arr(block, key):
            return np.array([[np.nan if v is None else v for v in row] for row in d[block][key]], dtype=float).reshape(
                len(d["latent_names"]), -1
            )

        return cls(
            list(d["latent_names"]), list(d["parameter_names"]),
            arr("latent_latent", "mi"), arr("latent_latent", "err"), arr("latent_parameter", "mi"), arr("latent_parameter", "err"),
            arr("latent_latent", "n_components"), arr("latent_parameter", "n_components"), int(d["n"]), dict(d.get("settings", {})),
        )


def _pair_task(task: dict[str, Any]) -> dict[str, Any]:
    est = gmm_mi(task["x"], task["y"], MISettings(**task["settings"]), seed=task["seed"])
    return {"mi": est.mi, "err": est.err, "n_components": est.n_components, "n_unconverged": est.n_unconverged}


def _as_matrix(a, what: str, n: int | None) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise DataError(f"{what} must be a 2-D array (n, k), got shape {a.shape}")
    if n is not None and a.shape[0] != n:
        raise DataError(f"{what} has {a.shape[0]} rows but the latents have {n}")
    if not np.all(np.isfinite(a)):
        raise DataError(f"{what} has NaN or inf entries (drop those rows first)")
    return a


def mi_table(
    z: np.ndarray,
    params: np.ndarray,
    latent_names: Sequence[str] | None = None,
    parameter_names: Sequence[str] | None = None,
    *,
    settings: MISettings | None = None,
    seed: int = 0,
    workers: int | None = 1,
    progress: bool = True,
) -> MITable:
    """MI between all latent pairs and between each latent and each parameter.

    Parameters
    ----------
    z : (n, d) latents (e.g. encoder means of a corpus)
    params : (n, p) physical parameters, inputs and derived side by side (e.g. H0 and thetastar)
    latent_names, parameter_names : names of the columns (default ``z0..``, ``p0..``)
    settings : :class:`MISettings` for every pair
    seed : base seed; pair ``k`` uses ``SeedSequence([seed, k])``
    workers : processes for :func:`~latentinfer.execution.map_tasks` (None: one per core)
    progress : show a progress bar on stderr
    """

    z = _as_matrix(z, "latents z", None)
    n, d = z.shape
    params = _as_matrix(params, "parameters", n)
    p = params.shape[1]
    lnames = [str(v) for v in (latent_names if latent_names is not None else [f"z{i}" for i in range(d)])]
    pnames = [str(v) for v in (parameter_names if parameter_names is not None else [f"p{j}" for j in range(p)])]
    if len(lnames) != d:
        raise DataError(f"{len(lnames)} latent names for {d} latent columns")
    if len(pnames) != p:
        raise DataError(f"{len(pnames)} parameter names for {p} parameter columns")
    for names, data, what in ((lnames, z, "latent"), (pnames, params, "parameter")):
        const = [nm for nm, sd in zip(names, data.std(axis=0)) if sd == 0]
        if const:
            raise DataError(f"constant {what} column(s) {const}: drop them before computing MI")
    s = settings or MISettings()
    pairs = [("ll", i, j) for i in range(d) for j in range(i + 1, d)] + [("lp", i, j) for i in range(d) for j in range(p)]
    tasks = []
    for k, (kind, i, j) in enumerate(pairs):
        y = z[:, j] if kind == "ll" else params[:, j]
        tasks.append({"x": z[:, i], "y": y, "settings": s.to_dict(), "seed": int(np.random.SeedSequence([seed, k]).generate_state(1)[0])})
    keys = [f"{kind}-{lnames[i]}-{(lnames if kind == 'll' else pnames)[j]}" for kind, i, j in pairs]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tasks), desc="mutual information", unit="pair", leave=False)

    def tick(done, total):
        if bar is not None:
            bar.update(done - bar.n)

    try:
        results = map_tasks(_pair_task, tasks, keys=keys, workers=workers, progress=tick)
    finally:
        if bar is not None:
            bar.close()
    ll, ll_err, ll_k = (np.full((d, d), np.nan) for _ in range(3))
    lp, lp_err, lp_k = (np.full((d, p), np.nan) for _ in range(3))
    unconverged = 0
    for (kind, i, j), r in zip(pairs, results):
        unconverged += int(r["n_unconverged"])
        if kind == "ll":
            ll[i, j] = ll[j, i] = float(r["mi"])
            ll_err[i, j] = ll_err[j, i] = float(r["err"])
            ll_k[i, j] = ll_k[j, i] = int(r["n_components"])
        else:
            lp[i, j], lp_err[i, j], lp_k[i, j] = float(r["mi"]), float(r["err"]), int(r["n_components"])
    meta = {"estimator": "gmm-mi (sklearn GaussianMixture, CV over components, bootstrap errors)", "seed": int(seed),
            "n_pairs": len(pairs), "n_unconverged_fits": unconverged, **s.to_dict()}
    return MITable(lnames, pnames, ll, ll_err, lp, lp_err, ll_k, lp_k, n, meta)
