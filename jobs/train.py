"""Train a deep hashing model (Im-AlexNet-SP family or the compact net) and evaluate it.

Writes OUT/model.safetensors, OUT/config.json and OUT/optimizer.safetensors after every epoch;
running the same command again resumes after the last completed epoch (a finished run only
re-evaluates). The summary has map (ties by index), map_tie_aware, accuracy (on the queries),
params_mb (float32 parameter bytes / 2**20), train_seconds, and precision@k. config.json keeps
the loss terms and training accuracy of every epoch (`history`); --report DIR writes them, the
evaluation and retrieval examples as a report to read (DIR/<UTC time>-train/report.html).

Examples:
  aurorahash train --dataset cifar10 --data ../shared/data/cifar10 --protocol cifar10-2 \\
      --arch compact --bits 48 --epochs 12 --seed 0 --out runs/c10-48
  aurorahash train --dataset synthetic-aurora --size 96 --arch im-alexnet-sp --bits 32 \\
      --epochs 20 --out runs/aurora-im32
  # a published peer on the same backbone, recipe and budget (no class head: no accuracy)
  aurorahash train --method dpsh --dataset cifar10 --data ../shared/data/cifar10 \\
      --protocol cifar10-1 --arch compact --bits 48 --epochs 80 --out runs/c10p1-dpsh-b48

  # no labels at all: CIBHash on an unlabelled archive (frames without label headers)
  aurorahash train --method cibhash --dataset archive --data night/ --size 64 --out runs/cib

--method picks what is trained (pipeline/training/methods): ours (Im-AlexNet-SP's multi-task
loss with a class head), or the published DPSH (Li et al. 2016), DSH (Liu et al. 2016) or CNNH
(Xia et al. 2014), each with its own head and loss and its published hyper-parameters as defaults,
or CIBHash (Qiu et al. 2021), which learns from two augmented views of each image and no labels.
Without labels in the queries and database the summary has no MAP (`evaluation` says why).
"""

from __future__ import annotations

import json
import logging
import time

from jobs.common import UsageError, add_s3_options, storage_options
from pipeline.choices import (
    AMP_CHOICES,
    ARCHS,
    DATASETS,
    DEFAULT_RECIPE,
    HASH_LOSSES,
    METHODS,
    POLICIES,
    RECIPES,
)

HELP = __doc__
log = logging.getLogger("aurorahash.train")
NO_LABELS = "skipped: the queries and database have no labels (MAP needs ground truth)"


def _bool(v: str) -> bool:
    t = str(v).lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise ValueError(v)


def add_data_arguments(p, required_dataset=True) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset",
        choices=DATASETS,
        required=required_dataset,
        help="cifar10 (Parquet shards of JPEGs), synthetic-aurora (seeded generator, frames "
        "archive-shaped), parquet (a labelled table or folder of tables), folder (one "
        "sub-folder per class), archive (a labelled archive, read as ingest reads it)",
    )
    g.add_argument(
        "--data",
        default=None,
        help="dataset location: local path, file:// or s3:// URI (not used by synthetic-aurora)",
    )
    g.add_argument(
        "--protocol",
        default=None,
        help="split protocol: cifar10-2 (default) or cifar10-1 for cifar10; synthetic for "
        "synthetic-aurora; holdout for parquet, folder and archive",
    )
    g.add_argument(
        "--data-seed",
        type=int,
        default=0,
        help="seed of the split (and of the synthetic frames); default 0",
    )
    g.add_argument(
        "--size",
        type=int,
        default=None,
        help="input size in px (synthetic-aurora/parquet/folder; default 64 for aurora frames, "
        "32 for photos; CIFAR-10 is 32)",
    )
    g.add_argument("--n-train", type=int, default=None, help="training images (synthetic: 2000)")
    g.add_argument("--n-query", type=int, default=None, help="queries (synthetic: 400)")
    g.add_argument("--n-database", type=int, default=None, help="database size (synthetic: 4000)")
    g.add_argument(
        "--preprocess",
        choices=("auto", "aurora", "photo"),
        default=None,
        help="preprocessing for parquet/folder/archive data (default auto: aurora for 16-bit grey)",
    )
    g.add_argument(
        "--labels",
        default=None,
        help="archive: a catalogue table (CSV or Parquet, columns id,label; ids as ingest writes "
        "them, RELATIVE/PATH#FRAME) instead of the frames' own label headers",
    )
    g.add_argument(
        "--unlabelled",
        choices=("none", "database"),
        default=None,
        help="cifar10-1: database adds the 54,000 database images that are not training images "
        "to training, unlabelled (for --method semi: a semi-supervised run)",
    )


def data_options(args) -> dict:
    return dict(
        size=args.size,
        n_train=args.n_train,
        n_query=args.n_query,
        n_database=args.n_database,
        preprocess=args.preprocess,
        labels=args.labels,
        unlabelled=getattr(args, "unlabelled", None),
    )


def add_arguments(p) -> None:
    add_data_arguments(p)
    p.add_argument("--limit", type=int, default=None, help="cap on training images (quick runs)")
    _add_model_arguments(p)
    _add_training_arguments(p)
    add_method_arguments(p, HASH_LOSSES)
    add_encode_arguments(p)
    g = p.add_argument_group("evaluation")
    g.add_argument("--topk", type=int, default=None, help="also report map@K")
    g.add_argument("--no-eval", action="store_true", help="train only")
    g.add_argument("--plot", default=None, help="write PR curves to this PNG")
    add_report_argument(g)
    add_s3_options(p)


def _add_model_arguments(p) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--arch", choices=ARCHS, default="compact", help="architecture (compact)")
    g.add_argument("--bits", type=int, default=48, help="code length (48)")
    g.add_argument(
        "--no-spp-pmt",
        action="store_true",
        help="ablation (Table 2): no SPP and no PMT (plain last max-pool)",
    )
    g.add_argument("--spp", type=_bool, default=None, help="force SPP on/off (true/false)")
    g.add_argument("--pmt", type=_bool, default=None, help="force PMT on/off (true/false)")
    g.add_argument(
        "--pmt-p",
        type=float,
        default=None,
        help="PMT's starting exponent in (0, 1] (default: 1 for the AlexNet rows, 0.5 compact)",
    )
    g.add_argument(
        "--widths", default=None, help="compact conv widths, comma-separated (64,128,128)"
    )
    g.add_argument("--dropout", type=float, default=None, help="dropout in the hidden FCs")


def _add_training_arguments(p) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=float, default=10, help="epochs (fractions allowed; 10)")
    g.add_argument("--seed", type=int, default=0, help="training seed (init, shuffles; 0)")
    g.add_argument("--out", required=True, help="checkpoint directory (local, file:// or s3://)")
    g.add_argument(
        "--init",
        default=None,
        metavar="CKPT",
        help="start a new run from CKPT's weights (e.g. a label-free model fine-tuned on labels): "
        "the backbone must match; head weights load where their shapes match. Ignored on resume",
    )
    g.add_argument(
        "--recipe",
        choices=RECIPES,
        default=None,
        help=f"optimiser recipe (default {DEFAULT_RECIPE}; muon: airbench with Muon on the conv "
        "filters, batch 2000, linear decay, no EMA; airbench: Keller Jordan's CIFAR-10 "
        "speed-run recipe; sgd: the classic AlexNet schedule)",
    )
    g.add_argument("--batch-size", type=int, default=None, help="batch size (recipe default)")
    g.add_argument("--lr", type=float, default=None, help="learning rate (recipe's units)")
    g.add_argument("--momentum", type=float, default=None, help="Nesterov momentum")
    g.add_argument("--weight-decay", type=float, default=None, help="weight decay")
    g.add_argument("--head-lr-scale", type=float, default=None, help="lr factor of the head")
    g.add_argument("--label-smoothing", type=float, default=None, help="CE label smoothing")
    g.add_argument("--no-flip", action="store_true", help="no horizontal flips")
    g.add_argument(
        "--augment",
        choices=("auto", *POLICIES),
        default="auto",
        help="training augmentation (pipeline/training/augment.py; recorded in config.json): "
        "auto (default) = shift-flip for one-view methods, and for cibhash allsky on all-sky "
        "frames (rotation about the zenith, mask, brightness/gamma, noise, star speckle, flips) "
        "or photo (resized crop, flips, colour jitter, grayscale)",
    )
    g.add_argument(
        "--translate", type=int, default=None, help="random translation in px (2 at 32 px)"
    )
    g.add_argument(
        "--amp",
        choices=AMP_CHOICES,
        default="auto",
        help="bfloat16 autocast: auto (default) = on where bf16 is native (CUDA, CPUs with "
        "AVX512-BF16 or AMX; elsewhere it is ~3x slower than float32), on, off",
    )
    g.add_argument("--no-amp", dest="amp", action="store_const", const="off", help="= --amp off")
    g.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    g.add_argument(
        "--checkpoint-every",
        type=int,
        default=1,
        help="epochs between checkpoints (default 1; the last epoch is always saved; a re-run "
        "resumes after the last saved one). Larger saves time where a checkpoint is big",
    )


def add_report_argument(g) -> None:
    g.add_argument(
        "--report",
        default=None,
        metavar="DIR",
        help="write an HTML report (loss and accuracy per epoch, MAP, PR and P@k, retrieval "
        "examples of the query set) with report.json and PNG figures into a new folder "
        "DIR/<UTC time>-<job>/",
    )


def plot_pr(config: dict, metrics, path: str) -> str:
    """--plot of train and evaluate: the report's PR figure as a PNG file."""
    from pipeline.reports import figures

    return figures.write_png(figures.pr_figure({config["arch"]: metrics}), path)


def job_report(kind, args, so, config, metrics, splits, enc, model_uri) -> str:
    """--report of train and evaluate (`metrics`: a `RetrievalMetrics`): where the report.html
    went."""
    from pipeline.reports.training import write_model_report

    info = splits["info"]
    run = {"model": model_uri, "dataset": info["dataset"], "protocol": info["protocol"]}
    path = write_model_report(kind, args.report, so, config, metrics, splits, enc, run)
    log.info("report: %s", path)
    return path


def add_method_arguments(p, hash_losses) -> None:
    g = p.add_argument_group(
        "method (pipeline/training/methods; each option belongs to one method)"
    )
    g.add_argument(
        "--method",
        choices=METHODS,
        default="ours",
        help="ours (default: class head + multi-task loss), dpsh, dsh or cnnh (the published "
        "methods on the same backbone, recipe and budget), or cibhash (no labels: contrastive "
        "codes of two augmented views), semi (ours on the labelled images + cibhash on all + "
        "FixMatch's pseudo-labels on the unlabelled: "
        "--labels covering part of an archive, or cifar10-1 with --unlabelled database), or "
        "classifier (the backbone as a plain classifier: "
        "cross-entropy on its features, the codes untrained; the recipe's accuracy ceiling)",
    )
    g.add_argument(
        "--hash-loss",
        choices=hash_losses,
        default=None,
        help="ours: the pair term on the hash layer: dpsh (default), dsh, or none (ablation: "
        "classification loss only, Table 1)",
    )
    g.add_argument("--ce-weight", type=float, default=None, help="ours: cross-entropy weight (1)")
    g.add_argument("--pair-weight", type=float, default=None, help="ours: pair loss weight (0.1)")
    g.add_argument(
        "--quant-weight", type=float, default=None, help="ours: quantisation loss weight (0.1)"
    )
    g.add_argument(
        "--dpsh-eta",
        type=float,
        default=None,
        help="dpsh: quantisation weight eta (10, the authors' CIFAR-10 setting)",
    )
    g.add_argument(
        "--dsh-margin", type=float, default=None, help="dsh: margin m (2 x bits, the paper's)"
    )
    g.add_argument(
        "--dsh-alpha", type=float, default=None, help="dsh: regulariser weight (0.01, the paper's)"
    )
    g.add_argument(
        "--cnnh-sweeps",
        type=int,
        default=None,
        help="cnnh: stage-1 coordinate-descent sweeps over every code entry (10)",
    )
    g.add_argument(
        "--cnnh-labels",
        type=_bool,
        default=None,
        help="cnnh: class units beside the hash units (true, default: CNNH+) or not (plain CNNH)",
    )
    _add_label_free_method_arguments(g)


def _add_label_free_method_arguments(g) -> None:
    """The options of the methods that learn from unlabelled images: cibhash and semi."""
    g.add_argument(
        "--cibhash-tau", type=float, default=None, help="cibhash: NT-Xent temperature (0.3)"
    )
    g.add_argument(
        "--cibhash-beta",
        type=float,
        default=None,
        help="cibhash: weight of the views' bit KL, the bottleneck term (0.001)",
    )
    g.add_argument(
        "--semi-weight",
        type=float,
        default=None,
        help="semi: weight of the label-free (CIBHash) term beside ours on the labelled (1)",
    )
    g.add_argument(
        "--semi-pseudo-weight",
        type=float,
        default=None,
        help="semi: weight of FixMatch's pseudo-label term on the unlabelled images (an image's "
        "strong view learns its weak view's confident class; 1; 0 leaves it out)",
    )
    g.add_argument(
        "--semi-confidence",
        type=float,
        default=None,
        help="semi: confidence the weak view's class needs to become a pseudo-label, as a "
        "fraction of the label-smoothed ceiling 1 - eps + eps/K (0.95)",
    )


_METHOD_OPTIONS = {  # CLI option -> (method, option name); ours' go to TrainConfig fields
    "hash_loss": ("ours", None),
    "ce_weight": ("ours", None),
    "pair_weight": ("ours", None),
    "quant_weight": ("ours", None),
    "dpsh_eta": ("dpsh", "eta"),
    "dsh_margin": ("dsh", "margin"),
    "dsh_alpha": ("dsh", "alpha"),
    "cnnh_sweeps": ("cnnh", "sweeps"),
    "cnnh_labels": ("cnnh", "labels"),
    "cibhash_tau": ("cibhash", "tau"),
    "cibhash_beta": ("cibhash", "beta"),
    "semi_weight": ("semi", "weight"),
    "semi_pseudo_weight": ("semi", "pseudo"),
    "semi_confidence": ("semi", "confidence"),
}


def method_config(args) -> dict:
    """TrainConfig fields of the method options; an option of another method is a usage error."""
    out = {"method": args.method, "method_options": {}}
    for key, (method, name) in _METHOD_OPTIONS.items():
        v = getattr(args, key)
        if v is None:
            continue
        if method != args.method:
            flag = "--" + key.replace("_", "-")
            raise UsageError(f"{flag} is an option of --method {method}, not {args.method}")
        if name is None:
            out[key] = v
        else:
            out["method_options"][name] = v
    return out


def add_encode_arguments(p) -> None:
    from pipeline.model.settings import DEFAULT_ENCODE, PRECISIONS, VIEWS

    g = p.add_argument_group(
        "encoding (saved in the checkpoint: evaluation and ingest both encode this way)"
    )
    g.add_argument(
        "--encode-views",
        choices=VIEWS,
        default=DEFAULT_ENCODE["views"],
        help="test-time views averaged into each code: none (default), mirror (2 forward "
        "passes), mirror+shift (6 passes); ingest pays the same factor in model time",
    )
    g.add_argument(
        "--encode-precision",
        choices=PRECISIONS,
        default=DEFAULT_ENCODE["precision"],
        help="arithmetic of the encode step: fp32 (default) or bf16 autocast",
    )


def encode_settings_of(args) -> dict:
    return {"views": args.encode_views, "precision": args.encode_precision}


def train_config(args, **overrides):
    """The TrainConfig of parsed `train` arguments (shared with benchmarks/aurora_tables.py)."""
    from pipeline.training.loop import TrainConfig

    widths = None
    if args.widths:
        try:
            widths = tuple(int(w) for w in args.widths.split(","))
        except ValueError:
            raise UsageError(f"--widths must be comma-separated integers: {args.widths}") from None
    spp, pmt = args.spp, args.pmt
    if args.no_spp_pmt:
        spp, pmt = False, False
    cfg = TrainConfig(
        arch=args.arch,
        bits=args.bits,
        epochs=args.epochs,
        seed=args.seed,
        recipe=args.recipe,
        batch_size=args.batch_size,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        head_lr_scale=args.head_lr_scale,
        label_smoothing=args.label_smoothing,
        **method_config(args),
        flip=not args.no_flip,
        translate=args.translate,
        augment=getattr(args, "augment", None),
        amp=args.amp,
        device=args.device,
        threads=args.threads,
        spp=spp,
        pmt=pmt,
        pmt_p=args.pmt_p,
        widths=widths,
        dropout=args.dropout,
        checkpoint_every=args.checkpoint_every,
        init=getattr(args, "init", None),
        **overrides,
    )
    cfg.resolved()  # the method's options are checked there: before the data is loaded
    return cfg


def _load(args, so) -> tuple[dict, float]:
    """The dataset's splits and the seconds it took."""
    from pipeline.training.datasets import load_splits
    from pipeline.training.methods import needs_labels

    t0 = time.perf_counter()
    splits = load_splits(
        args.dataset,
        args.data,
        args.protocol,
        data_seed=args.data_seed,
        limit=args.limit,
        storage_options=so,
        need_labels=needs_labels(args.method),
        **data_options(args),
    )
    seconds = time.perf_counter() - t0
    info = splits["info"]
    log.info(
        "data: %s/%s train %d, queries %d, database %d (%.1f s)",
        *(info["dataset"], info["protocol"], info["train"], info["query"], info["database"]),
        seconds,
    )
    return splits, seconds


def _train_summary(args, config: dict, info: dict, data_seconds: float) -> dict:
    summary = {
        "out": args.out,
        "arch": config["arch"],
        "method": config.get("method", "ours"),
        "bits": config["bits"],
        "dataset": info["dataset"],
        "protocol": info["protocol"],
        "epochs_done": config.get("epochs_done"),
        "params_mb": round(float(config["params_mb"]), 3),
        "train_seconds": round(float(config.get("train_seconds", 0.0)), 1),
        "model_sha256": config["model_sha256"],
        "encode": config.get("encode"),
        "data_seconds": round(data_seconds, 1),
    }
    if config.get("method_info"):  # CNNH: its stage 1 (seconds, objective per sweep)
        summary["method_info"] = config["method_info"]
    return summary


def _evaluate(args, so, model, config: dict, splits: dict, summary: dict) -> None:
    """Score the shipped codes (the encode path ingest uses) into summary and OUT/metrics.json."""
    from pipeline import storage
    from pipeline.model.settings import encode_settings
    from pipeline.training.evaluate import encode_splits, evaluate_encoded, labelled

    t1 = time.perf_counter()
    enc = encode_splits(model, splits, encode_settings(config), device=args.device)
    m = evaluate_encoded(enc, splits, args.topk) if labelled(splits) else None
    summary["eval_seconds"] = round(time.perf_counter() - t1, 1)
    if m is None:  # no ground truth: codes, but nothing to score them against
        summary["evaluation"] = NO_LABELS
        log.warning("no MAP: %s", NO_LABELS)
    if args.report:
        summary["report"] = job_report("train", args, so, config, m, splits, enc, args.out)
    if args.plot and m is not None:
        plot_pr(config, m, args.plot)
    metrics = m.to_dict() if m is not None else {}
    pr = metrics.pop("pr_curve", None)
    summary.update(metrics)
    if pr is not None:
        summary["pr_curve"] = pr
    storage.atomic_write_bytes(
        args.out.rstrip("/") + "/metrics.json",
        json.dumps({**summary, "pr_curve": pr}, indent=1, default=str).encode(),
        so,
    )


def run(args) -> dict:
    from pipeline.training.loop import train_model

    t_start = time.perf_counter()
    if args.report and args.no_eval:
        raise UsageError("--report shows the evaluation: drop --no-eval")
    cfg = train_config(args)
    so = storage_options(args)
    splits, data_seconds = _load(args, so)
    info = splits["info"]
    model, config = train_model(
        splits, cfg, args.out, info, so, encode_settings=encode_settings_of(args)
    )
    summary = _train_summary(args, config, info, data_seconds)
    if not args.no_eval:
        _evaluate(args, so, model, config, splits, summary)
    summary["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    return summary
