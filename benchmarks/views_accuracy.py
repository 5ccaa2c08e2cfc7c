"""Query accuracy of a checkpoint's classifier under each encode setting (test-time views).

Why: airbench's 94.01% on CIFAR-10 is measured with test-time augmentation (mirror and 1-px
translations), and the codes ingest stores use one view. To attribute a gap to the views, this
scores the same weights through the one encode step (`pipeline.training.evaluate.encode`) under
each `views` setting, on the protocol's queries: a side path (the codes ingest stores are the
checkpoint's own setting), labelled so in RESULTS.

  python benchmarks/views_accuracy.py --model runs/c10-ceiling-e10 --dataset cifar10 \\
      --data ../shared/data/cifar10 --protocol cifar10-2 --json
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _record  # noqa: E402


def accuracy(model, splits: dict, views: str, threads: int) -> dict:
    import torch

    from pipeline.training.evaluate import encode

    torch.set_num_threads(threads)
    x, y = splits["query"]
    t0 = time.perf_counter()
    settings = {"views": views, "precision": "fp32"}
    _, logp = encode(model, x, settings, preprocess=splits["preprocess"])
    if logp is None:
        raise SystemExit("the model has no class head: no accuracy to score")
    acc = float((np.asarray(logp).argmax(1) == np.asarray(y)).mean())
    dt = time.perf_counter() - t0
    return {"views": views, "accuracy": round(acc, 4), "seconds": round(dt, 1)}


def cli(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint directory")
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--data", default=None)
    p.add_argument("--protocol", default="cifar10-2")
    p.add_argument("--views", default="none,mirror,mirror+shift")
    p.add_argument("--threads", type=int, default=1)
    _record.add_json_argument(p, "views-accuracy")
    a = p.parse_args(argv)
    from pipeline.model.checkpoint import load_checkpoint
    from pipeline.training.datasets import load_splits

    model, config = load_checkpoint(a.model, "cpu")
    splits = load_splits(a.dataset, a.data, a.protocol, config["data"].get("seed", 0))
    rows = [accuracy(model, splits, v, a.threads) for v in a.views.split(",")]
    for r in rows:
        print(r, flush=True)
    figures = {
        "model": _record.portable(str(Path(a.model).resolve())),
        "weights_sha256": hashlib.sha256(
            (Path(a.model) / "model.safetensors").read_bytes()
        ).hexdigest(),
        "method": config.get("method"),
        "epochs_done": config.get("epochs_done"),
        "queries": len(splits["query"][1]),
        "rows": rows,
    }
    _record.write(a.json, figures, machine_extra={"cores_shared": True})
    return 0


if __name__ == "__main__":
    sys.exit(cli())
