#!/usr/bin/env bash
# Planck 2018 vs SPT-3G 2018 in the latent space of cmb-lcdm: two runs, the joint run, then
# `latentinfer tension` (parameter-shift probability, Q_DM with N_eff, suspiciousness S, evidence ratio R, and
# which spectra and ell ranges carry the shift) and one report of everything.
#
#   bash examples/planck_vs_spt.sh [OUT]          (OUT defaults to runs/planck_vs_spt)
#   LATENTINFER="python -m latentinfer" bash examples/planck_vs_spt.sh   # without the console script
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/planck_vs_spt}
LI=${LATENTINFER:-latentinfer}

$LI run examples/planck_vs_spt/planck.yaml --out "$OUT/planck" --no-progress
$LI run examples/planck_vs_spt/spt3g.yaml --out "$OUT/spt3g" --no-progress
$LI run examples/planck_vs_spt/joint.yaml --out "$OUT/joint" --no-progress
$LI tension "$OUT/planck" "$OUT/spt3g" --joint "$OUT/joint" --out "$OUT/tension"
$LI report "$OUT/planck" "$OUT/spt3g" "$OUT/joint" "$OUT/tension" --out "$OUT/report.html"
echo "open $OUT/report.html"
