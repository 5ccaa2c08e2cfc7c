"""What each encode setting costs and buys: frames/s of the encode step and MAP, per setting.

    python benchmarks/bench_encode_views.py --model runs/demo/model --json
                                     # + benchmarks/results/encode-views-<date>/result.json

The encode settings (checkpoint config `encode`: test-time views none / mirror / mirror+shift,
precision fp32 / bf16) are applied by ingest exactly as by `evaluate`
(`pipeline.model.encode.encode_inputs`), so their cost is paid at ingest. This script runs that one
encode step over the same preprocessed synthetic-aurora frames (archive-shaped, as ingest feeds
them) for every setting, side by side with the default (views none, fp32), and prints frames/s,
the ratio to the default and the MAP each setting gives (the checkpoint's weights, the protocol's
queries against its database). The model step alone is timed (batches of --batch frames, the
inputs already in memory); reading and preprocessing, which ingest also pays, are not.

The settings are timed in alternating rounds and each keeps its median pass, so load from other
work on a shared machine falls on every setting alike instead of on whichever ran during it.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _record  # noqa: E402

SETTINGS = [
    {"views": "none", "precision": "fp32"},
    {"views": "none", "precision": "bf16"},
    {"views": "mirror", "precision": "fp32"},
    {"views": "mirror+shift", "precision": "fp32"},
]


def pass_seconds(model, x, settings, batch: int) -> float:
    """One timed pass of the encode step over x, in batches as ingest's actors run it."""
    from pipeline.model.encode import encode_inputs

    t0 = time.perf_counter()
    for i in range(0, len(x), batch):
        encode_inputs(model, x[i : i + batch], settings)
    return time.perf_counter() - t0


def frames_per_s(model, x, settings_list, batch: int, repeats: int) -> list[list[float]]:
    """frames/s of every pass, per setting; the settings alternate within each round."""
    out = [[] for _ in settings_list]
    for _ in range(repeats):
        for j, s in enumerate(settings_list):
            out[j].append(len(x) / pass_seconds(model, x, s, batch))
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint directory")
    p.add_argument("--n-query", type=int, default=400, help="queries (400)")
    p.add_argument("--n-database", type=int, default=2000, help="database frames (2000)")
    p.add_argument("--data-seed", type=int, default=11, help="seed of the frames (11)")
    p.add_argument("--batch", type=int, default=256, help="frames per forward (256)")
    p.add_argument("--repeats", type=int, default=3, help="alternating rounds, median kept (3)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (torch's default)")
    _record.add_json_argument(p, "encode-views")
    args = p.parse_args(argv)

    import statistics

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from pipeline.model.checkpoint import load_checkpoint
    from pipeline.training.datasets import load_splits
    from pipeline.training.evaluate import evaluate_model

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
    passes = frames_per_s(model, x, SETTINGS, args.batch, args.repeats)
    rows = []
    for s, fps in zip(SETTINGS, passes, strict=True):
        m = evaluate_model(model, splits, s)
        rows.append(
            {
                **s,
                "frames_per_s": round(statistics.median(fps), 1),
                "passes": [round(f, 1) for f in fps],
                "map": round(m.map, 4),
            }
        )
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
    _record.write(args.json, out)
    return out


if __name__ == "__main__":
    main()
