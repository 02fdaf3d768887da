"""Log-likelihood evaluations per second of planck2018-plik-lite TTTEEE, gradient included.

A batch of B theories (TT, TE, EE as D_ell in muK^2 from ell = 2 up to the largest multipole the likelihood
uses: 2508 for TT, 1996 for TE and EE, as a forward model that emits what is needed would give) with
``requires_grad``; one evaluation = ``log_prob`` of the batch plus ``backward`` through the theory and
``A_planck``. Rows for B = 1, 100, 10,000 in float64 and float32, and the batched/single speed-up measured in
the same run. Threads: ``torch.get_num_threads()`` (set ``OMP_NUM_THREADS``/``torch.set_num_threads``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

__all__ = ["run"]

_FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "camb_lcdm_planck2018.txt"


def _theory(lik, batch: int, dtype, seed: int = 0) -> dict[str, torch.Tensor]:
    tab = np.loadtxt(_FIXTURE)
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i, key in enumerate(["TT", "TE", "EE"], start=1):
        n = lik.lmax[key] - 1  # ell = 2..lmax
        base = torch.tensor(tab[:n, i], dtype=dtype)
        amp = 1 + 0.01 * torch.randn(batch, 1, generator=g, dtype=dtype)
        out[key] = (base * amp).requires_grad_(True)
    return out


def _rate(lik, batch: int, dtype, min_seconds: float) -> tuple[float, int]:
    theory = _theory(lik, batch, dtype)
    a_planck = torch.ones(batch, dtype=dtype, requires_grad=True)

    def once():
        lp = lik.log_prob(theory, {"A_planck": a_planck})
        lp.sum().backward()
        for t in (*theory.values(), a_planck):
            t.grad = None

    once()  # warm-up
    reps, start, cpu0 = 0, time.perf_counter(), time.process_time()
    while True:
        once()
        reps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and reps >= 2:
            return batch * reps / elapsed, batch * reps / (time.process_time() - cpu0), reps


def run(quick: bool = True) -> list[dict]:
    from latentinfer import load_likelihood

    min_seconds = 1.0 if quick else 5.0
    batches = (1, 100, 10_000)
    threads = torch.get_num_threads()
    rows = []
    for dtype in (torch.float64, torch.float32):
        lik = load_likelihood("planck2018-plik-lite", spectra="TTTEEE").to(dtype)
        rates = {}
        for b in batches:
            rate, cpu_rate, reps = _rate(lik, b, dtype, min_seconds)
            rates[b] = rate
            name = f"batch {b}, {str(dtype).removeprefix('torch.')}"
            note = f"{reps} repetitions, {threads} torch threads, theory to the needed ell_max"
            rows.append({"benchmark": "likelihood", "metric": f"plik_lite TTTEEE log_prob+grad, {name}", "value": rate,
                         "unit": "evaluations/s", "note": f"wall clock; {note}"})
            rows.append({"benchmark": "likelihood", "metric": f"plik_lite TTTEEE log_prob+grad per CPU second, {name}",
                         "value": cpu_rate, "unit": "evaluations/CPU-s",
                         "note": f"process CPU time (all threads), insensitive to other load on the machine; {note}"})
        rows.append({
            "benchmark": "likelihood",
            "metric": f"plik_lite speed-up batch {batches[-1]} / batch 1, {str(dtype).removeprefix('torch.')}",
            "value": rates[batches[-1]] / rates[1],
            "unit": "ratio",
            "note": "same run",
        })
    return rows


if __name__ == "__main__":
    for row in run(quick=True):
        print(f"{row['metric']:<70} {row['value']:>10.4g} {row['unit']:<18} {row['note']}")
