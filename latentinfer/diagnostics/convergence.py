"""The convergence verdict of a sampled posterior: R-hat and bulk/tail ESS per parameter, and divergences.

Used by the report, the tension and coverage stations and anyone holding a :class:`~latentinfer.Posterior`
summary; thresholds after Vehtari et al. (2021).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["check_convergence", "RHAT_MAX", "ESS_MIN"]

#: Thresholds of the convergence flags (Vehtari et al. 2021).
RHAT_MAX = 1.01
ESS_MIN = 400


def check_convergence(summary: Mapping[str, Mapping[str, Any]], divergences: int, rhat_max: float = RHAT_MAX, ess_min: float = ESS_MIN) -> dict[str, Any]:
    """Judge the parameter table: ``{"parameters": {name: [reasons]}, "divergences": int, "ok": bool}``.

    A parameter is flagged when R-hat > ``rhat_max`` or bulk/tail ESS < ``ess_min``; any divergence flags the run.
    """
    flags = {}
    for name, row in summary.items():
        why = []
        r = row.get("r_hat")
        if r is not None and r > rhat_max:
            why.append(f"R-hat {r:.3f} > {rhat_max}")
        for key in ("ess_bulk", "ess_tail"):
            e = row.get(key)
            if e is not None and e < ess_min:
                why.append(f"{key} {e:.0f} < {ess_min}")
        flags[name] = why
    return {"parameters": flags, "divergences": int(divergences), "ok": not any(flags.values()) and divergences == 0, "thresholds": {"r_hat_max": rhat_max, "ess_min": ess_min}}
