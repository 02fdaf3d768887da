"""Latents read against a reference model: "the EDE latent is consistent with LCDM at 0.8 sigma".

A discovered latent has no physical value of its own, but a reference model gives it one: encode spectra of the
reference model (e.g. LCDM rows near the Planck posterior, f_EDE = 0) and the latent's values there form a narrow
distribution when the latent carries only what the reference model lacks. A bundle's card keeps that distribution
under ``latent_references`` (written by ``latentinfer interpret ... --reference NAME=ROWS --update-card``)::

    "latent_references": {"LCDM": {"rows": [{"path": "lcdm_core.npz", "sha256": "..."}], "n": 1000,
                                    "parameter": "fde_zc",
                                    "latents": {"z6": {"median": -0.66, "sd": 0.08, "sd_all_rows": 0.31,
                                                       "mi_with_parameter": 0.19, "mi_err": 0.01}}}}

``sd`` is the robust spread (1.4826 x median absolute deviation) of the latent over the reference rows and
``sd_all_rows`` its spread over the rows the MI was measured on. A latent-space run then reads each watched latent's
posterior against it (:func:`reference_readings`): the distance in sigma is
``(posterior mean - reference median) / sqrt(posterior sd^2 + reference sd^2)``, so the reference's own spread (the
latent is not exactly constant over the reference model) widens the yardstick rather than being ignored.

Torch-free: the run summary, the CLI and the report use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import BundleError

__all__ = ["KEY", "check_references", "describe", "reference_readings"]

KEY = "latent_references"


def check_references(card: Mapping[str, Any], where: str = "card.json") -> dict[str, Any]:
    """The card's ``latent_references`` checked (names of latents, finite medians, positive spreads); ``{}`` if absent.
    Raises :class:`BundleError` naming the key."""
    refs = card.get(KEY)
    if refs is None:
        return {}
    if not isinstance(refs, Mapping):
        raise BundleError(f"{where}: key '{KEY}' must be an object")
    names = set(card.get("latent_names") or [])
    for ref, spec in refs.items():
        lat = spec.get("latents") if isinstance(spec, Mapping) else None
        if not isinstance(lat, Mapping) or not lat:
            raise BundleError(f"{where}: key '{KEY}.{ref}.latents' must be a non-empty object")
        for z, v in lat.items():
            if z not in names:
                raise BundleError(f"{where}: key '{KEY}.{ref}.latents' names '{z}', which is not a latent of the bundle")
            med, sd = (v.get("median"), v.get("sd")) if isinstance(v, Mapping) else (None, None)
            if not _finite(med) or not _finite(sd) or sd <= 0:
                raise BundleError(f"{where}: key '{KEY}.{ref}.latents.{z}' needs a finite median and a positive sd")
    return dict(refs)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def reference_readings(card: Mapping[str, Any], draws: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """One reading per watched latent present in ``draws`` (posterior draws by latent name, any shape): posterior
    mean and sd, the reference median and sd, the distance in sigma, the posterior probability that the latent lies
    beyond the reference median (the one-sided tail on the far side), and a sentence."""
    out = []
    labels = card.get("latent_labels") if isinstance(card.get("latent_labels"), Mapping) else {}
    for ref, spec in check_references(card).items():
        for z, v in spec["latents"].items():
            if z not in draws:
                continue
            x = np.asarray(draws[z], dtype=float).ravel()
            x = x[np.isfinite(x)]
            if len(x) < 2:
                continue
            mean, sd = float(x.mean()), float(x.std(ddof=1))
            sigma = (mean - float(v["median"])) / math.hypot(sd, float(v["sd"]))
            tail = float(np.mean(x <= v["median"]) if mean > v["median"] else np.mean(x >= v["median"]))
            reading = {"reference": ref, "latent": z, "label": str(labels.get(z, "")), "parameter": spec.get("parameter"),
                       "posterior_mean": mean, "posterior_sd": sd, "reference_median": float(v["median"]),
                       "reference_sd": float(v["sd"]), "sigma": sigma, "tail_probability": tail}
            reading["text"] = describe(reading)
            out.append(reading)
    return out


def describe(r: Mapping[str, Any]) -> str:
    """``"z6 (fde_zc / log10_zc): 0.12 +- 0.30 against LCDM -0.66 +- 0.08: consistent with LCDM at 0.8 sigma"``."""
    label = f" ({r['label']})" if r.get("label") else ""
    s = abs(r["sigma"])
    verdict = (f"consistent with {r['reference']} at {s:.1f} sigma" if s < 2 else
               f"departs from {r['reference']} at {s:.1f} sigma")
    return (f"{r['latent']}{label}: {r['posterior_mean']:.3g} +- {r['posterior_sd']:.2g} against {r['reference']} "
            f"{r['reference_median']:.3g} +- {r['reference_sd']:.2g}: {verdict}")
