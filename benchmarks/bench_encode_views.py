"""What each encode setting costs and buys: frames/s of the encode step and MAP, per setting.

    python benchmarks/bench_encode_views.py --model runs/demo/model --size 64

The encode settings (checkpoint config `encode`: test-time views none / mirror / mirror+shift,
precision fp32 / bf16) are applied by ingest exactly as by `evaluate`
(`pipeline.encoder.encode_inputs`), so their cost is paid at ingest. This script runs that one
encode step over the same preprocessed synthetic-aurora frames (archive-shaped, as ingest feeds
them) for every setting, side by side with the default (views none, fp32), and prints frames/s,
the ratio to the default and the MAP each setting gives (the checkpoint's weights, the protocol's
queries against its database). The model step alone is timed (batches of --batch frames, the
inputs already in memory); reading and preprocessing, which ingest also pays, are not.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SETTINGS = [
    {"views": "none", "precision": "fp32"},
    {"views": "none", "precision": "bf16"},
    {"views": "mirror", "precision": "fp32"},
    {"views": "mirror+shift", "precision": "fp32"},
]


def frames_per_s(model, x, settings, batch: int, repeats: int) -> float:
    from pipeline.encoder import encode_inputs

    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(0, len(x), batch):
            encode_inputs(model, x[i : i + batch], settings)
        best = min(best, time.perf_counter() - t0)
    return len(x) / best


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint directory")
    p.add_argument("--n-query", type=int, default=400, help="queries (400)")
    p.add_argument("--n-database", type=int, default=2000, help="database frames (2000)")
    p.add_argument("--data-seed", type=int, default=11, help="seed of the frames (11)")
    p.add_argument("--batch", type=int, default=256, help="frames per forward (256)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes, best kept (3)")
    args = p.parse_args(argv)

    import torch

    from pipeline.checkpoint import load_checkpoint
    from pipeline.datasets import load_splits
    from pipeline.evaluate import evaluate_model

    model, cfg = load_checkpoint(args.model)
    splits = load_splits(
        "synthetic-aurora",
        data_seed=args.data_seed,
        n_train=0,
        n_query=args.n_query,
        n_database=args.n_database,
        preprocess=cfg["preprocess"],
    )
    x = splits["db"][0]
    rows = []
    for s in SETTINGS:
        fps = frames_per_s(model, x, s, args.batch, args.repeats)
        m = evaluate_model(model, splits, s)
        rows.append({**s, "frames_per_s": round(fps, 1), "map": round(m["map"], 4)})
    base = rows[0]["frames_per_s"]
    for r in rows:
        r["ratio_to_default"] = round(r["frames_per_s"] / base, 3)
    out = {
        "model": args.model,
        "arch": cfg["arch"],
        "bits": cfg["bits"],
        "input": [cfg["in_channels"], cfg["input_size"], cfg["input_size"]],
        "frames": len(x),
        "batch": args.batch,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
