"""Cost of the interpretation step: one GMM mutual-information estimate (CV over components + bootstrap).

A pair's cost sets ``latentinfer interpret``'s run time: it estimates d(d-1)/2 + d*p pairs (e.g. 8 latents and
15 parameters: 148 pairs), spread over worker processes.
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["run"]


def _pair(n: int, n_bootstrap: int, curved: bool) -> float:
    from latentinfer.interpret import MISettings, gmm_mi

    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    y = (np.tanh(2 * x) if curved else 0.6 * x) + 0.3 * rng.normal(size=n)
    t0 = time.process_time()
    gmm_mi(x, y, MISettings(n_bootstrap=n_bootstrap), seed=0)
    return time.process_time() - t0


def run(quick: bool = True) -> list[dict]:
    cases = [(2000, 10)] if quick else [(2000, 10), (5000, 20)]
    _pair(300, 2, False)  # warm-up: imports and first-call overheads are not the pair's cost
    rows = []
    for n, b in cases:
        for curved in (False, True):
            kind = "curved (several components)" if curved else "Gaussian (one component)"
            rows.append({"benchmark": "interpret", "metric": f"gmm_mi CPU time per pair, n={n}, {b} bootstrap, {kind}",
                         "value": round(_pair(n, b, curved), 3), "unit": "s", "note": "one core (thread pools limited to 1)"})
    return rows


if __name__ == "__main__":  # pragma: no cover
    for row in run(quick=False):
        print(row)
