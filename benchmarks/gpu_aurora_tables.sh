#!/usr/bin/env bash
# Full-resolution synthetic-aurora tables (paper Tables 1-4 shape) on one CUDA GPU.
#
# Self-contained: needs only python3 with torch, numpy, pyarrow, safetensors, numba, matplotlib
# (no ray, s3fs, cdflib) and this repository. Everything the report needs lands in $OUT:
#   $OUT/aurora/results.json   one entry per cell (map, map_tie_aware, accuracy, params_mb,
#                              train_seconds, precision@k, PR curve, the equivalent command);
#                              rewritten after every cell, so a timeout keeps what was done
#   $OUT/aurora/tables.md      the tables;   $OUT/aurora/aurora_map_pr.png   MAP vs bits + PR
#   $OUT/aurora/log.txt        progress;     $OUT/gpu.txt   nvidia-smi + torch (the card)
# Checkpoints go to $CKPT (default /tmp/aurora-gpu-ckpt), not into $OUT (up to 220 MB each, plus
# the optimiser state); only the last epoch's is written (--checkpoint-every 1000): writing
# ~0.7 GB a cell every epoch cost more than the training in the first GPU session.
#
# Knobs (environment): SIZE=224 N_TRAIN=2000 N_QUERY=400 N_DATABASE=4000 EPOCHS=15
# BITS=12,24,32,48 DEADLINE_S=420 (no new cell starts after that; tables are still written).
# 20 cells = 3 archs x 4 code lengths + 2 ablations x 4. Rough cost on one H100 at 224 px:
# frame rendering ~15 s on 16 cores, then ~10-20 s per cell.
#   OUT=$OUT bash benchmarks/gpu_aurora_tables.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out-gpu}
CKPT=${CKPT:-/tmp/aurora-gpu-ckpt}
SIZE=${SIZE:-224}
N_TRAIN=${N_TRAIN:-2000}
N_QUERY=${N_QUERY:-400}
N_DATABASE=${N_DATABASE:-4000}
EPOCHS=${EPOCHS:-15}
BITS=${BITS:-12,24,32,48}
DEADLINE_S=${DEADLINE_S:-420}
PY=${PY:-python3}
mkdir -p "$OUT/aurora" "$CKPT"
{ nvidia-smi || true; $PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"; date -u; } > "$OUT/gpu.txt" 2>&1
export AURORAHASH_CACHE=${AURORAHASH_CACHE:-/tmp/aurorahash-cache}
$PY benchmarks/aurora_tables.py --out "$CKPT" --report-dir "$OUT/aurora" --device cuda \
    --size "$SIZE" --n-train "$N_TRAIN" --n-query "$N_QUERY" --n-database "$N_DATABASE" \
    --epochs "$EPOCHS" --bits "$BITS" --deadline-s "$DEADLINE_S" \
    --extra --threads 8 --checkpoint-every 1000 \
    2>&1 | tee "$OUT/aurora/log.txt"
