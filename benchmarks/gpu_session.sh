#!/usr/bin/env bash
# One prepared GPU session (the project's device budget is minutes): the synthetic-aurora tables
# at full resolution, then the ingest job's frames/s with GPU-pinned HashEncoder actors.
#
# The GPU image has torch but no Ray: a trimmed Ray wheel for its Python (jars and source maps
# removed) may travel as .gpu/ray-site.tar.xz and is unpacked onto PYTHONPATH for step 2.
# Everything lands in $OUT (default ./out-gpu). Time limits per step keep the session bounded.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out-gpu}
TABLES_LIMIT=${TABLES_LIMIT:-330}
INGEST_LIMIT=${INGEST_LIMIT:-200}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
date -u +"start %FT%TZ" | tee "$OUT/timeline.txt"

# 1. Tables 1-4 shape on synthetic aurora (benchmarks/gpu_aurora_tables.sh does the work).
SIZE=${SIZE:-224} N_TRAIN=${N_TRAIN:-3000} N_QUERY=${N_QUERY:-400} N_DATABASE=${N_DATABASE:-6000} \
EPOCHS=${EPOCHS:-12} OUT="$OUT" timeout "$TABLES_LIMIT" bash benchmarks/gpu_aurora_tables.sh \
    > "$OUT/tables.stdout" 2>&1
echo "tables rc=$?" | tee -a "$OUT/timeline.txt"
date -u +"tables done %FT%TZ" | tee -a "$OUT/timeline.txt"
# Keep whatever finished, even if the step ran out of time.
cp /tmp/aurora-gpu-ckpt/results.json /tmp/aurora-gpu-ckpt/tables.md "$OUT/" 2>/dev/null || true

# 2. Ingest throughput with GPU actors (needs Ray).
if [ -f .gpu/ray-site.tar.xz ]; then
  mkdir -p /tmp/raysite && tar -C /tmp/raysite -xJf .gpu/ray-site.tar.xz
fi
# The repository first (Ray workers import `pipeline` too), then the unpacked Ray.
export PYTHONPATH=$PWD:/tmp/raysite${PYTHONPATH:+:$PYTHONPATH}
timeout "$INGEST_LIMIT" python3 benchmarks/bench_ingest.py --device cuda --arch im-alexnet-sp \
    --size 224 --bits 48 --frames 2000 --repeats 1 --workdir /tmp/bench-ingest \
    --json "$OUT/ingest_gpu.json" > "$OUT/ingest.stdout" 2>&1
echo "ingest rc=$?" | tee -a "$OUT/timeline.txt"
date -u +"end %FT%TZ" | tee -a "$OUT/timeline.txt"
tail -5 "$OUT/tables.stdout" "$OUT/ingest.stdout"
