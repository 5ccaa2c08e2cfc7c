#!/usr/bin/env bash
# The paper's Table 6 on CIFAR-10 (LSH, ITQ, KSH, CNNH, DPSH, DSH, ours; 12-48 bits) on one CUDA
# GPU: benchmarks/paper_tables.py does the work. The whole table is 8 GIST-hasher runs (CPU) and
# 32 trainings; it may take more than one session: results land in $OUT/table6/results.json,
# rewritten after every cell, and a session started with the same $OUT runs only the cells still
# missing; without one there, it starts from the committed benchmarks/results/table6/results.json
# (copy a session's results.json there to carry it to the next).
#
# Needs python3 with torch, numpy, pyarrow, safetensors, numba, matplotlib, Pillow (no Ray), this
# repository and the CIFAR-10 Parquet shards at $DATA (default ../shared/data/cifar10).
# Checkpoints go to $CKPT (not into $OUT), written once, after the last epoch.
#
# Knobs: PROTOCOLS=cifar10-1,cifar10-2 BITS=12,24,32,48 METHODS=cnnh,dpsh,dsh,ours
#        CLASSIC=lsh,itq,ksh DEADLINE_S=700 (no cell starts after that; the table is still written)
# Rough cost (estimate, not measured): a cifar10-1 cell ~0.5 min and a cifar10-2 cell ~1 min
# on one H100-class GPU; GIST of the 60,000 images ~1-2 min once (cached in $AURORAHASH_CACHE).
#   OUT=$OUT bash benchmarks/gpu_paper_tables.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out-gpu}
CKPT=${CKPT:-/tmp/paper-tables-ckpt}
DATA=${DATA:-../shared/data/cifar10}
PROTOCOLS=${PROTOCOLS:-cifar10-1,cifar10-2}
BITS=${BITS:-12,24,32,48}
METHODS=${METHODS:-cnnh,dpsh,dsh,ours}
CLASSIC=${CLASSIC:-lsh,itq,ksh}
DEADLINE_S=${DEADLINE_S:-700}
PY=${PY:-python3}
mkdir -p "$OUT/table6" "$CKPT"
# cells measured in earlier sessions (committed): kept, only the missing ones run
SEED=benchmarks/results/table6/results.json
[ -f "$OUT/table6/results.json" ] || { [ -f "$SEED" ] && cp "$SEED" "$OUT/table6/"; } || true
{ nvidia-smi || true; $PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"; date -u; } > "$OUT/gpu.txt" 2>&1
export AURORAHASH_CACHE=${AURORAHASH_CACHE:-/tmp/aurorahash-cache}
export PYTHONUNBUFFERED=1
$PY benchmarks/paper_tables.py --data "$DATA" --out "$CKPT" --report-dir "$OUT/table6" \
    --device cuda --protocols "$PROTOCOLS" --bits "$BITS" --methods "$METHODS" \
    --classic "$CLASSIC" --deadline-s "$DEADLINE_S" \
    --extra --threads 8 --checkpoint-every 1000 \
    2>&1 | tee "$OUT/table6/log.txt"
