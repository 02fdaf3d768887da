#!/usr/bin/env bash
# Issue 20 item 5: does the discovered EDE latent tell the same story as f_EDE? Planck 2018 (plik_lite TT/TE/EE +
# low-ell TT) twice: in the latent space of the discovered model cmb-ede-ive (chees), reading its EDE latent against
# where LCDM spectra put it (card key latent_references.LCDM), and in physical parameters with the emulator-grade
# cmb-ede (Pyro NUTS; the f_EDE posterior). One report of both runs, and the two readings side by side.
#
#   bash examples/ede_latent.sh [OUT]            (OUT defaults to runs/ede_latent)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/ede_latent}
LI=${LATENTINFER:-latentinfer}
PY=${PYTHON:-python}

$LI run examples/ede_latent/latent.yaml --out "$OUT/latent" --no-progress
[ -f "$OUT/physical/summary.json" ] || $LI run examples/lcdm_vs_ede/ede.yaml --out "$OUT/physical" --no-progress
$LI report "$OUT/latent" "$OUT/physical" --out "$OUT/report.html"
$PY examples/ede_latent_story.py "$OUT/latent" "$OUT/physical" | tee "$OUT/story.txt"
echo "open $OUT/report.html"
