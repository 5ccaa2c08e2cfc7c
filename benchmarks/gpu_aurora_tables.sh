#!/usr/bin/env bash
# Full-resolution synthetic-aurora tables (paper Tables 1-4 shape) on one CUDA GPU.
#
# Self-contained: needs only torch, numpy, pyarrow, safetensors, numba, matplotlib (no ray, s3fs,
# cdflib) and this repository. Writes everything into $OUT (default ./out-gpu):
#   $OUT/aurora/results.json   one JSON summary per cell (map, accuracy, params_mb, train_seconds,
#                              precision@k, PR curve, the exact command)
#   $OUT/aurora/tables.md      the tables;   $OUT/aurora/aurora_map_pr.png   MAP vs bits + PR
#   $OUT/gpu.txt               nvidia-smi and torch versions (the card that produced the figures)
# Checkpoints go to $CKPT (default /tmp/aurora-gpu-ckpt, not into $OUT: 20 x up to 220 MB).
#
# Budget knobs (defaults sized for ~10 minutes on one H100 at 224 px; scale EPOCHS/N_TRAIN up for
# a longer run): SIZE=224 N_TRAIN=4000 N_QUERY=400 N_DATABASE=8000 EPOCHS=12 BITS=12,24,32,48
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out-gpu}
CKPT=${CKPT:-/tmp/aurora-gpu-ckpt}
SIZE=${SIZE:-224}
N_TRAIN=${N_TRAIN:-4000}
N_QUERY=${N_QUERY:-400}
N_DATABASE=${N_DATABASE:-8000}
EPOCHS=${EPOCHS:-12}
BITS=${BITS:-12,24,32,48}
PY=${PY:-python3}
mkdir -p "$OUT/aurora" "$CKPT"
{ nvidia-smi || true; $PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"; date -u; } > "$OUT/gpu.txt" 2>&1
export AURORAHASH_CACHE=${AURORAHASH_CACHE:-/tmp/aurorahash-cache}
$PY benchmarks/aurora_tables.py --out "$CKPT" --device cuda --size "$SIZE" \
    --n-train "$N_TRAIN" --n-query "$N_QUERY" --n-database "$N_DATABASE" \
    --epochs "$EPOCHS" --bits "$BITS" --extra --threads 8 2>&1 | tee "$OUT/aurora/log.txt"
cp "$CKPT/results.json" "$CKPT/tables.md" "$CKPT/aurora_map_pr.png" "$OUT/aurora/"
