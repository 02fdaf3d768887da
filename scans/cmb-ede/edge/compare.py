"""Edge experiment: compare the direct emulators of arms A (400 spectra inside the box) and B (400 past its edge).

    python scans/cmb-ede/edge/compare.py          # reads A/baseline.json, B/baseline.json; writes edge.json, prints a table
    python scans/cmb-ede/edge/compare.py -seed1   # the arms trained with seed 1 (A-seed1, B-seed1 -> edge-seed1.json)

Test rows, in the order the trainer holds them out: the 100 uniform shared rows, then the 80 rows at fde_zc
0.135-0.15. The same rows in both arms, so the comparison is paired: Wilcoxon signed-rank test on the edge rows and a
bootstrap 68% interval of the ratio of medians (B / A).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon

HERE = Path(__file__).parent


def stats(d: np.ndarray) -> dict:
    return {"n": len(d), "median": float(np.median(d)), "p90": float(np.percentile(d, 90)), "max": float(d.max()),
            "over_0.5": int((d > 0.5).sum())}


def main(suffix: str = "") -> None:
    arms = {a: np.asarray(json.loads((HERE / f"{a}{suffix}" / "baseline.json").read_text())["dchi2_values"]) for a in "AB"}
    parts = {"uniform (100 shared rows)": slice(0, 100), "edge (80 rows, fde_zc 0.135-0.15)": slice(100, 180)}
    out = {"arms": {a: {name: stats(v[s]) for name, s in parts.items()} for a, v in arms.items()}}
    rng = np.random.default_rng(0)
    for name, s in parts.items():
        a, b = arms["A"][s], arms["B"][s]
        idx = rng.integers(0, len(a), (4000, len(a)))
        ratio = np.median(b[idx], 1) / np.median(a[idx], 1)
        out.setdefault("paired", {})[name] = {
            "median_ratio_B_over_A": float(np.median(b) / np.median(a)),
            "ratio_ci68": [float(x) for x in np.percentile(ratio, [16, 84])],
            "wilcoxon_p": float(wilcoxon(a, b).pvalue), "B_better_rows": int((b < a).sum())}
    (HERE / f"edge{suffix}.json").write_text(json.dumps(out, indent=1))
    print(f"{'test rows':36s} {'arm':3s} {'median':>7s} {'p90':>7s} {'max':>7s} {'>0.5':>5s}")
    for name in parts:
        for a in "AB":
            r = out["arms"][a][name]
            print(f"{name:36s} {a:3s} {r['median']:7.3f} {r['p90']:7.3f} {r['max']:7.3f} {r['over_0.5']:5d}")
        p = out["paired"][name]
        print(f"{'':36s} B/A median {p['median_ratio_B_over_A']:.2f} (68%: {p['ratio_ci68'][0]:.2f}-{p['ratio_ci68'][1]:.2f}), "
              f"B better on {p['B_better_rows']} rows, Wilcoxon p {p['wilcoxon_p']:.2g}")


if __name__ == "__main__":
    import sys

    main(sys.argv[1] if len(sys.argv) > 1 else "")
