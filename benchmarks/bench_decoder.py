"""Decoder spectra per second against CAMB, measured in the same run.

One "spectrum" = TT, TE, EE, PP at every ell 2..3200 from one latent vector of the shipped ``cmb-lcdm`` decoder,
with the gradient of their sum with respect to the latents (one backward pass). Batches of 1 and 10,000
(float32 and float64 for batch 1; float32 for 10,000, whose float64 graph would need ~4 GB). CAMB: one LCDM
spectrum at the Planck 2018 best fit with the corpus settings (lmax 3200, lens_potential_accuracy 1).
Threads: ``torch.get_num_threads()`` for the decoder, CAMB's OpenMP default for CAMB.
"""

from __future__ import annotations

import time

import torch

__all__ = ["run"]

PLANCK = {"ombh2": 0.02237, "omch2": 0.1200, "H0": 67.36, "logA": 3.044, "ns": 0.9649, "tau": 0.0544}


def _decoder_rate(model, batch: int, dtype, min_seconds: float) -> tuple[float, int]:
    model = model.to(dtype)
    z = torch.randn(batch, model.dim, dtype=dtype, generator=torch.Generator().manual_seed(0)).requires_grad_(True)

    def once():
        out = model(z)
        sum(v.sum() for v in out.values()).backward()
        z.grad = None

    once()  # warm-up
    reps, start = 0, time.perf_counter()
    while True:
        once()
        reps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and reps >= 2:
            return batch * reps / elapsed, reps


def _camb_rate(n: int) -> float:
    from latentinfer.simulate import camb_spectra

    start = time.perf_counter()
    for _ in range(n):
        out = camb_spectra(list(PLANCK.values()), list(PLANCK))
        assert out["ok"]
    return n / (time.perf_counter() - start)


def run(quick: bool = True) -> list[dict]:
    from latentinfer import load_model

    min_seconds = 1.0 if quick else 5.0
    model = load_model("cmb-lcdm")
    threads = torch.get_num_threads()
    rows = []
    camb = _camb_rate(1 if quick else 3)
    rows.append({"benchmark": "decoder", "metric": "camb_spectra_per_s", "value": camb, "unit": "spectra/s",
                 "note": "CAMB 2.0.5, one LCDM spectrum, corpus settings"})
    for batch, dtype in ((1, torch.float64), (1, torch.float32), (10_000, torch.float32)):
        rate, reps = _decoder_rate(model, batch, dtype, min_seconds)
        name = str(dtype).removeprefix("torch.")
        rows.append({"benchmark": "decoder", "metric": f"decoder_spectra_per_s_b{batch}_{name}", "value": rate,
                     "unit": "spectra/s", "note": f"TT,TE,EE,PP ell 2-3200 + gradient, {reps} reps, {threads} threads"})
        rows.append({"benchmark": "decoder", "metric": f"speedup_vs_camb_b{batch}_{name}", "value": rate / camb,
                     "unit": "x", "note": "decoder spectra/s over CAMB spectra/s, same run"})
    return rows


if __name__ == "__main__":  # pragma: no cover
    for row in run():
        print(row)
