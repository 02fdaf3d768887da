#!/usr/bin/env bash
# LCDM vs early dark energy on Planck 2018: two runs with the harmonic evidence, the Bayes factor with its
# error and Jeffreys-scale reading (`latentinfer compare`), and one report of both runs (evidence table included).
#
#   bash examples/lcdm_vs_ede.sh [OUT]            (OUT defaults to runs/lcdm_vs_ede)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/lcdm_vs_ede}
LI=${LATENTINFER:-latentinfer}

$LI run examples/lcdm_vs_ede/lcdm.yaml --out "$OUT/lcdm" --no-progress
$LI run examples/lcdm_vs_ede/ede.yaml --out "$OUT/ede" --no-progress
$LI compare "$OUT/lcdm" "$OUT/ede"
$LI report "$OUT/lcdm" "$OUT/ede" --out "$OUT/report.html"
echo "open $OUT/report.html"
