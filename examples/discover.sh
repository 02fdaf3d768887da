#!/usr/bin/env bash
# Unsupervised IVE scans (issue 20): beta scan then latent-count scan, LCDM (TT/TE/EE/PP and TT only) and EDE.
# Run from the repository root; corpus files are named under the corpus root ($LATENTINFER_CORPUS or ./corpus;
# README 'Corpus'). One training at a time, 1 thread.
set -euo pipefail
export OMP_NUM_THREADS=1
PY=${PYTHON:-python}
$PY -m latentinfer discover scans/discover/lcdm.yaml --out scans/discover/lcdm --mi-rows lcdm.npz
$PY -m latentinfer discover scans/discover/ede.yaml --out scans/discover/ede --mi-rows ede.npz,ede_edge.npz
$PY -m latentinfer discover scans/discover/lcdm-tt.yaml --out scans/discover/lcdm-tt --mi-rows lcdm.npz \
    --beta-from scans/discover/lcdm/scan.json --dims 3,4,5,6,7,8
