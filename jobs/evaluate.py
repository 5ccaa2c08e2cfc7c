"""Evaluate a trained model's codes: MAP, tie-aware MAP, accuracy, precision@k and PR curves.

Loads MODEL/model.safetensors + config.json (never unpickles), encodes the protocol's queries and
database with the checkpoint's own preprocessing and encode settings (the codes ingest would
store for the same frames), and prints one JSON line with `map`
(ties broken by database index), `map_tie_aware` (expected AP over orderings inside Hamming-tie
groups), `accuracy` (classifier on the queries), `precision_at_k` and `pr_curve` (precision and
recall within Hamming radius r = 0..bits). --plot FILE.png draws the PR curves; --report DIR
writes a report to read (DIR/<UTC time>-evaluate/report.html: these numbers and figures, the
checkpoint's training history, retrieval examples of the query set).

Example:
  aurorahash evaluate --model runs/c10-48 --dataset cifar10 --data ../shared/data/cifar10 \\
      --protocol cifar10-2 --topk 1000 --plot runs/c10-48/pr.png
"""

from __future__ import annotations

import time

from jobs.common import UsageError, add_s3_options, storage_options
from jobs.train import add_data_arguments, add_report_argument, data_options, job_report, plot_pr

HELP = __doc__


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="checkpoint directory (local, file://, s3://)")
    add_data_arguments(p)
    p.add_argument("--topk", type=int, default=None, help="also report map@K (and precision@K)")
    p.add_argument("--plot", default=None, help="write the PR curves to this PNG")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    p.add_argument("--batch-size", type=int, default=1000, help="encoding batch size")
    add_report_argument(p)
    add_s3_options(p)


def run(args) -> dict:
    from pipeline.model.checkpoint import load_checkpoint
    from pipeline.training.datasets import load_splits
    from pipeline.training.evaluate import encode_splits, evaluate_encoded

    if args.topk is not None and args.topk < 1:
        raise UsageError("--topk must be positive")
    so = storage_options(args)
    model, cfg = load_checkpoint(args.model, args.device, so)
    opts = data_options(args)
    if args.dataset != "cifar10" or cfg.get("preprocess"):
        opts["preprocess"] = cfg.get("preprocess") or opts.get("preprocess")
    t0 = time.perf_counter()
    splits = load_splits(args.dataset, args.data, args.protocol, args.data_seed, None, so, **opts)
    x = splits["query"][0]
    if x.shape[1] != cfg["in_channels"]:
        raise UsageError(
            f"the data has {x.shape[1]} channels, the model takes {cfg['in_channels']}"
        )
    if cfg["classes"] and len(splits["classes"]) != len(cfg["classes"]):  # []: trained unlabelled
        raise UsageError(
            f"the data has {len(splits['classes'])} classes, the model {len(cfg['classes'])}"
        )
    t1 = time.perf_counter()
    from pipeline.model.settings import encode_settings

    settings = encode_settings(cfg)
    enc = encode_splits(model, splits, settings, batch=args.batch_size, device=args.device)
    m = evaluate_encoded(enc, splits, args.topk)
    report = None
    if args.report:
        report = job_report("evaluate", args, so, cfg, m, splits, enc, args.model)
    if args.plot:
        plot_pr(cfg, m, args.plot)
    info = splits["info"]
    return {
        "model": args.model,
        "model_sha256": cfg["model_sha256"],
        "arch": cfg["arch"],
        "encode": settings,
        "dataset": info["dataset"],
        "protocol": info["protocol"],
        "data_seconds": round(t1 - t0, 1),
        "eval_seconds": round(time.perf_counter() - t1, 1),
        **m.to_dict(),
        **({"report": report} if report else {}),
    }
