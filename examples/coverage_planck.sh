#!/usr/bin/env bash
# Coverage of the real analysis (issue 22 item 3): SBC, TARP, HPD expected coverage and the two joint checks
# (density rank, local TARP) on the Planck demo problem (examples/demo.yaml: plik_lite TTTEEE + low-ell TT in the
# 6-d latent space of cmb-lcdm, A_planck nuisance) for NPE with its defaults, importance-weighted NPE (default and
# PCA-embedded proposals), VI and the batched gradient sampler chees. Each study writes OUT/<study>/coverage.json
# (verdict, readings, next step) and plots; rerunning continues from the checkpoints. A table of the verdicts is
# printed at the end.
#
#   bash examples/coverage_planck.sh [OUT]        (OUT defaults to runs/coverage_planck)
#   N=500 N_VI=100 bash examples/coverage_planck.sh   # data sets per study (VI: examples/coverage_planck/vi.yaml)
#   LATENTINFER="python -m latentinfer" bash examples/coverage_planck.sh
#
# Costs on the 2-core development machine (README, "Coverage of the Planck demo problem"): NPE default about a
# minute; importance-weighted NPE 1-2 min per 100 data sets plus its NPE's training (the default proposal reuses the
# first study's NPE; the PCA one trains its own, ~6 min loaded); chees about 1 min per 100 data sets; VI (batched:
# data sets as a batch dimension; 500 steps x 8 particles) several min per 100.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/coverage_planck}
LI=${LATENTINFER:-latentinfer}
N=${N:-500}
N_VI=${N_VI:-100}
CFG="examples/demo.yaml"

$LI coverage $CFG --method npe --n "$N" --out "$OUT/npe"
# the importance-weighted study reuses the NPE trained above (same config, same seed: the same estimator)
mkdir -p "$OUT/npe-importance"
[ -e "$OUT/npe-importance/npe" ] || cp -r "$OUT/npe/npe" "$OUT/npe-importance/npe"
$LI coverage $CFG --method npe --importance --n "$N" --out "$OUT/npe-importance"
$LI coverage examples/coverage_planck/npe_pca_importance.yaml --method npe --n "$N" --out "$OUT/npe-pca-importance"
$LI coverage $CFG --method chees --n "$N" --out "$OUT/chees"
$LI coverage examples/coverage_planck/vi.yaml --method vi --n "$N_VI" --out "$OUT/vi"

python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
for study in ("npe", "npe-importance", "npe-pca-importance", "chees", "vi"):
    f = Path(sys.argv[1]) / study / "coverage.json"
    if not f.is_file():
        continue
    r = json.loads(f.read_text())
    checks = ", ".join(f"{k} {'pass' if v['pass'] else 'FAIL'}" for k, v in r["diagnostics"].items())
    print(f"{study:15s} N = {r['n']:4d}  {r['verdict']['overall']:15s} {checks}  ({r['timing']['wall_seconds']:.0f} s)")
PY
