"""Issue 22's importance-sampling goal on the real Planck data (the demo problem's observed data vector).

    OMP_NUM_THREADS=1 python scans/npe-calibration/planck_is.py NPE_FOLDER [--ref REF.npy]

NPE_FOLDER: a trained amortized posterior of examples/demo.yaml's program (e.g. a coverage study's ``npe/``).
Times ``importance_sample`` (``--proposals``, default 10,000, 4,000 draws) on the observed data for three seeds and compares the
means with a ChEES reference (32 x 1000 draws; agrees with Pyro NUTS to 0.1 sd, tests/test_chees.py's slow test),
which it runs and caches in REF.npy. Goal: k-hat < 0.7, ESS >= 1000, <= 5 s, |mean - ref| < 0.1 ref sd.
Appends one JSON line to scans/npe-calibration/planck_is.jsonl.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("npe")
    p.add_argument("--ref", default="/tmp/npecal/chees_ref.npy")
    p.add_argument("--label", default="")
    p.add_argument("--proposals", type=int, default=10000)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    from latentinfer.amortized import AmortizedPosterior
    from latentinfer.config import load_config
    from latentinfer.runner import build_analysis

    an = build_analysis(load_config(HERE.parents[1] / "examples/demo.yaml"))
    ref_path = Path(a.ref)
    if ref_path.is_file():
        ref = np.load(ref_path)
    else:
        t0 = time.perf_counter()
        ref = an.sample("chees", chains=32, draws=1000, seed=0, progress=False).samples()
        np.save(ref_path, ref)
        print(f"chees reference: {ref.shape}, {time.perf_counter() - t0:.1f} s")
    amo = AmortizedPosterior.load(a.npe, an)
    observed = {lik.name: lik.data for lik in an.likelihoods}
    rows = []
    for seed in (0, 1, 2):
        t0 = time.perf_counter()
        post = amo.importance_sample(observed, num_proposals=a.proposals, num_samples=4000, seed=seed, warn=False)
        wall = time.perf_counter() - t0
        s = post.samples()
        shift = (s.mean(0) - ref.mean(0)) / ref.std(0)
        rows.append({"seed": seed, "khat": float(post.attrs["importance_khat"]), "ess": float(post.attrs["importance_ess"]), "seconds": wall,
                     "max_abs_shift_sd": float(np.abs(shift).max()), "shift_sd": [round(float(v), 3) for v in shift],
                     "sd_ratio": [round(float(v), 3) for v in s.std(0) / ref.std(0)]})
        print(json.dumps(rows[-1]))
    raw = amo.posterior(observed, num_samples=10000, seed=0).samples()
    raw_shift = (raw.mean(0) - ref.mean(0)) / ref.std(0)
    line = {"npe": a.npe, "label": a.label, "config": {k: amo.config.get(k) for k in ("num_simulations", "embedding", "ensemble", "epochs")},
            "proposals": a.proposals, "runs": rows, "raw_npe_max_abs_shift_sd": float(np.abs(raw_shift).max()),
            "raw_npe_sd_ratio": [round(float(v), 3) for v in raw.std(0) / ref.std(0)]}
    with open(HERE / "planck_is.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
