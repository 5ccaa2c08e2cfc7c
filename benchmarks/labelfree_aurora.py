"""Label-free against supervised on synthetic aurora: same frames, budget and code length.

Why: an observatory without labels trains `--method cibhash`; the issue's target is that its
codes retrieve the synthetic classes within 0.1 MAP of a supervised method's, with the labels
hidden in training. One call renders the synthetic-aurora split once (as `train --dataset
synthetic-aurora` does) and trains every method on it with the same TrainConfig but the method
(the loop, recipe, epochs, batch size, seed); a label-free method gets the training labels
replaced by -1, so hiding them is not a promise of the loss but a fact of its input. Each row is
MAP over the codes the shipped encode path gives (`pipeline.training.evaluate`), plus the
distinct database codes, the training time, and the MAP of the trunk's MAC descriptors
(`trunk_mac_map`, cosine) beside that of the untrained model (`untrained_trunk_mac_map`): whether
the features learned the classes at all. Runs go under --runs/<method>-s<seed> and are
resumed like `train` resumes (a finished run is only re-evaluated).

`--allsky JSON` overrides fields of the all-sky augmentation (pipeline.training.augment.AllSky)
for an ablation, e.g. '{"crop": [0.6, 1], "glow": 0.3}'; `--sample` makes cibhash contrast
sampled codes (the paper's layer, its default before 2026-12-07); `--preprocess JSON` overrides
fields of the aurora preprocessing (PreprocessConfig), e.g. '{"flatten": 0.25}' to remove each
frame's smooth sky before every method sees it.

  python benchmarks/labelfree_aurora.py --size 32 --n-train 2000 --epochs 8 \\
      --methods dpsh,cibhash --seeds 0 --runs runs/labelfree-aurora --json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _record  # noqa: E402


def load(
    size: int, n_train: int, n_query: int, data_seed: int, cache: str | None, pre: dict | None
) -> dict:
    """The synthetic-aurora splits as `train` loads them; `pre`: PreprocessConfig fields to
    override (an ablation). `cache`: a pickle of them to reuse across calls (rendering is the
    slow part), written when missing, checked when read."""
    from pipeline.model.preprocess import PreprocessConfig
    from pipeline.training.datasets import load_splits

    pcfg = dataclasses.replace(PreprocessConfig.aurora(size), **(pre or {})).to_dict()
    want = dict(size=size, n_train=n_train, n_query=n_query, n_database=n_train)
    if cache and Path(cache).exists():
        with open(cache, "rb") as f:
            splits = pickle.load(f)
        info, had = splits["info"], PreprocessConfig.from_dict(splits["preprocess"]).to_dict()
        if any(info.get(k) != v for k, v in want.items()) or info.get("seed") != data_seed:
            raise SystemExit(f"{cache}: cached splits of {info}, not {want} seed {data_seed}")
        if had != pcfg:
            raise SystemExit(f"{cache}: cached splits preprocessed with {had}, not {pcfg}")
        return splits
    splits = load_splits(
        "synthetic-aurora", None, None, data_seed=data_seed, preprocess=pcfg, **want
    )
    if cache:
        tmp = Path(cache + ".tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            pickle.dump(splits, f)
        os.replace(tmp, cache)
    return splits


def hide_labels(splits: dict) -> dict:
    """The splits with every training label -1 (queries and database keep theirs for MAP)."""
    x, y = splits["train"]
    return {**splits, "train": (x, np.full(len(y), -1, dtype=np.int64))}


def _allsky_override(fields: dict):
    """Make `augment.build` return AllSky with `fields` replaced (an ablation)."""
    from pipeline.training import augment

    build = augment.build

    def patched(policy, pre):
        t = build(policy, pre)
        if isinstance(t, augment.AllSky):
            vals = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
            t = dataclasses.replace(t, **vals)
        return t

    augment.build = patched


def train_and_score(splits: dict, method: str, seed: int, a, out: str) -> dict:
    """Train (or resume) one method and score its shipped codes."""
    from pipeline.model.settings import encode_settings
    from pipeline.training.evaluate import encode_splits, evaluate_encoded
    from pipeline.training.loop import TrainConfig, train_model
    from pipeline.training.methods import needs_labels

    data = splits if needs_labels(method) else hide_labels(splits)
    opts = {"sample": True} if a.sample and method == "cibhash" else {}
    if method != "dpsh":  # the label-free method's options (an ablation); dpsh keeps its own
        opts.update(json.loads(a.method_options or "{}"))
    cfg = TrainConfig(
        arch="compact", bits=a.bits, epochs=a.epochs, seed=seed, method=method,
        threads=a.threads, method_options=opts, **json.loads(a.train or "{}"),
    )  # fmt: skip
    t0 = time.perf_counter()
    model, config = train_model(data, cfg, out, splits["info"])
    wall = time.perf_counter() - t0
    enc = encode_splits(model, splits, encode_settings(config))
    m = evaluate_encoded(enc, splits, None)
    db = np.asarray(enc.db_h) > 0
    return {
        "method": method,
        "seed": seed,
        "map": round(float(m.map), 4),
        "train_seconds": round(float(config.get("train_seconds", 0.0)), 1),
        "wall_seconds_this_call": round(wall, 1),
        "epochs_done": config.get("epochs_done"),
        "batch_size": config.get("train", {}).get("batch_size"),
        "augment": config.get("augment"),
        "distinct_db_codes": int(len(np.unique(db, axis=0))),
        "trunk_mac_map": trunk_map(model, splits),
        "bit_balance_min_max": [
            round(float(db.mean(0).min()), 3),
            round(float(db.mean(0).max()), 3),
        ],
        "last_epoch": config["history"][-1],
        "out": _record.portable(str(Path(out).resolve())),
    }


def trunk_map(model, splits: dict) -> float:
    """MAP of the trunk's MAC descriptors (cosine, last conv map): whether training taught the
    features the classes at all, whatever the hash layer made of them."""
    from pipeline.baselines.cnn import conv_batches, mac
    from pipeline.baselines.ranking import cosine_map

    def desc(x):
        return np.concatenate(
            [mac(b["maps"][0]) for b in conv_batches(model, x, splits["preprocess"])]
        )

    (xq, yq), (xd, yd) = splits["query"], splits["db"]
    return round(cosine_map(desc(xq), desc(xd), yq, yd), 4)


def untrained_trunk_map(splits: dict, a) -> float:
    """trunk_map of the model a run starts from (seed 0): the reference a label-free method's
    trunk must beat to have learned anything about the classes."""
    from pipeline.training.loop import TrainConfig, new_model

    torch.manual_seed(0)  # the conv init draws from the global generator: the same reference
    cfg = TrainConfig(arch="compact", bits=a.bits, method="cibhash").resolved(
        len(splits["train"][1])
    )
    return trunk_map(new_model(cfg, splits), splits)


def summarise(rows: list[dict]) -> dict:
    """Mean and spread of MAP per method, and the label-free minus supervised gap."""
    out = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        maps = [r["map"] for r in rows if r["method"] == method]
        out[method] = {
            "map_mean": round(float(np.mean(maps)), 4),
            "map_sd": round(float(np.std(maps)), 4),
            "runs": len(maps),
        }
    return out


def cli(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--n-train", type=int, default=2000, help="training frames = database")
    p.add_argument("--n-query", type=int, default=400)
    p.add_argument("--data-seed", type=int, default=2)
    p.add_argument("--bits", type=int, default=32)
    p.add_argument("--epochs", type=float, default=8)
    p.add_argument("--methods", default="dpsh,cibhash")
    p.add_argument("--seeds", default="0")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--sample", action="store_true", help="cibhash: contrast sampled codes")
    p.add_argument("--allsky", default=None, help="JSON: AllSky fields to override (ablation)")
    p.add_argument(
        "--method-options", default=None, help="JSON: the label-free method's options, e.g. tau"
    )
    p.add_argument(
        "--preprocess", default=None, help='JSON: PreprocessConfig fields, e.g. {"flatten": 0.25}'
    )
    p.add_argument("--train", default=None, help="JSON: TrainConfig fields, e.g. lr, batch_size")
    p.add_argument("--runs", default="runs/labelfree-aurora")
    p.add_argument("--cache", default=None, help="pickle of the rendered splits to reuse")
    _record.add_json_argument(p, "labelfree-aurora")
    a = p.parse_args(argv)
    if a.allsky:
        _allsky_override(json.loads(a.allsky))
    t0 = time.perf_counter()
    pre = json.loads(a.preprocess) if a.preprocess else None
    splits = load(a.size, a.n_train, a.n_query, a.data_seed, a.cache, pre)
    data_s = time.perf_counter() - t0
    rows = []
    for seed in (int(s) for s in a.seeds.split(",")):
        for method in a.methods.split(","):
            row = train_and_score(splits, method, seed, a, f"{a.runs}/{method}-s{seed}")
            print(json.dumps(row), flush=True)
            rows.append(row)
    figures = {
        "setting": {
            k: getattr(a, k)
            for k in (
                "size",
                "n_train",
                "n_query",
                "data_seed",
                "bits",
                "epochs",
                "allsky",
                "preprocess",
                "sample",
                "method_options",
                "train",
            )
        },
        "data_seconds": round(data_s, 1),
        "untrained_trunk_mac_map": untrained_trunk_map(splits, a),
        "rows": rows,
        "summary": summarise(rows),
    }
    print(json.dumps(figures["summary"]))
    _record.write(a.json, figures)  # machine.load_average says whether the cores were shared
    return 0


if __name__ == "__main__":
    sys.exit(cli())
