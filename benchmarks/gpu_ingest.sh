#!/usr/bin/env bash
# Issue 10 on one GPU machine, as one prepared command (device time is minutes):
#   1. the GPU path of preprocessing against the CPU's (tests/test_preprocess_device.py);
#   2. bench_ingest.py --device cuda on 50,000 THEMIS-style frames: the ingest job's frames/s
#      against the model's forward-only frames/s (same call size / batch, input 224 px, same
#      GPU), one core's read rate, and the job's read stage alone.
# Ray: used from the image, else unpacked from .gpu/ray-site.tar.xz (as benchmarks/gpu_session.sh).
# Everything lands in $OUT (default ./out-gpu).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out-gpu}
BENCH_LIMIT=${BENCH_LIMIT:-420}
FRAMES=${FRAMES:-50000}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ! python3 -c "import ray" 2>/dev/null && [ -f .gpu/ray-site.tar.xz ]; then
  mkdir -p /tmp/raysite && tar -C /tmp/raysite -xJf .gpu/ray-site.tar.xz
fi
export PYTHONPATH=$PWD:/tmp/raysite${PYTHONPATH:+:$PYTHONPATH}
{ date -u +"start %FT%TZ"; nvidia-smi -L; nproc; free -g | head -2; } > "$OUT/machine.txt" 2>&1

timeout 180 python3 -m pytest tests/test_preprocess_device.py -q -p no:cacheprovider \
    > "$OUT/preprocess_device.txt" 2>&1
echo "preprocess_device rc=$?" | tee -a "$OUT/machine.txt"

timeout "$BENCH_LIMIT" python3 benchmarks/bench_ingest.py --device cuda --frames "$FRAMES" \
    --distinct 2000 --arch im-alexnet-sp --size 224 --bits 48 --repeats 2 \
    --workdir /tmp/bench-ingest --json "$OUT/ingest_gpu.json" \
    > "$OUT/ingest.stdout" 2> "$OUT/ingest.stderr"
echo "bench rc=$?" | tee -a "$OUT/machine.txt"
date -u +"end %FT%TZ" >> "$OUT/machine.txt"
grep -E '"(ingest_frames_per_s|frames_per_s|ratio_[a-z_]+|read_slots)"' "$OUT/ingest_gpu.json" | head -20
