"""The paper's aurora tables on synthetic aurora: archs x bits, and the two ablations.

Trains each cell as `aurorahash train` would (same options, same code, one process sharing the
generated frames; checkpoints per cell, so a re-run resumes or skips finished cells) for
  Tables 3-4: alexnet, alexnet-sp, im-alexnet-sp at each code length (MAP, accuracy, params MB,
              training seconds);
  Table 1:    im-alexnet-sp without the hash-layer loss (--hash-loss none);
  Table 2:    im-alexnet-sp without SPP/PMT (--no-spp-pmt);
then writes OUT/results.json, OUT/tables.md and OUT/aurora_map_pr.png (MAP vs bits + PR curves)
(OUT: --report-dir, default --out). results.json also holds the command, commit, machine and
date of the run (benchmarks/_record.py), its paths relative to the project.

CPU (reduced resolution; run it under the shared CPU lock):
  flock /tmp/aurorahash-cpu.lock .venv/bin/python benchmarks/aurora_tables.py \\
      --out runs/aurora-cpu --size 96 --n-train 2000 --epochs 15
GPU, full resolution (see benchmarks/gpu_aurora_tables.sh):
  python benchmarks/aurora_tables.py --out $OUT/aurora --size 256 --device cuda ...
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import _record  # noqa: E402

ARCHS = ("alexnet", "alexnet-sp", "im-alexnet-sp")


def cells(bits, archs, ablations):
    for b in bits:
        for a in archs:
            yield f"{a}-{b}", a, b, []
        if ablations:
            yield f"im-alexnet-sp-nohashloss-{b}", "im-alexnet-sp", b, ["--hash-loss", "none"]
            yield f"im-alexnet-sp-nosppmt-{b}", "im-alexnet-sp", b, ["--no-spp-pmt"]


def train_argv(args, name, arch, bits, extra):
    """The equivalent `aurorahash train` command line of one cell."""
    return [
        "train",
        "--dataset",
        "synthetic-aurora",
        "--size",
        str(args.size),
        "--n-train",
        str(args.n_train),
        "--n-query",
        str(args.n_query),
        "--n-database",
        str(args.n_database),
        "--arch",
        arch,
        "--bits",
        str(bits),
        "--epochs",
        str(args.epochs),
        "--seed",
        str(args.seed),
        "--device",
        args.device,
        "--out",
        os.path.join(args.out, name),
        *extra,
        *args.extra,
    ]


def run_cell(args, splits, name, arch, bits, extra):
    """Train (or resume / skip) one cell in this process, on the shared splits, and evaluate."""
    return train_cell(name, train_argv(args, name, arch, bits, extra), splits)


def train_cell(name, argv, splits):
    """Run the `aurorahash train` command line `argv` (after "aurorahash") in this process on
    already loaded `splits`: train (or resume / skip a finished checkpoint), then evaluate
    through the shipped encode path. Returns the cell's result; an error fails the cell only."""
    from jobs.cli import build_parser
    from jobs.train import encode_settings_of, train_config
    from pipeline.model.settings import encode_settings
    from pipeline.training.evaluate import evaluate_model
    from pipeline.training.loop import train_model

    parser, _ = build_parser()
    targs = parser.parse_args(argv)
    t0 = time.time()
    try:
        cfg = train_config(targs, log_every=0)  # its checks fail this cell, not the run
        model, config = train_model(
            splits, cfg, targs.out, splits["info"], encode_settings=encode_settings_of(targs)
        )
        t1 = time.time()
        m = evaluate_model(model, splits, encode_settings(config), device=targs.device)
    except Exception as exc:  # one failed cell must not lose the others
        traceback.print_exc()
        return {"name": name, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {
        "name": name,
        "ok": True,
        "arch": config["arch"],
        "method": config.get("method", "ours"),
        "bits": int(config["bits"]),
        "params_mb": round(float(config["params_mb"]), 2),
        "train_seconds": round(float(config.get("train_seconds", 0.0)), 1),
        "eval_seconds": round(time.time() - t1, 1),
        "wall": round(time.time() - t0, 1),
        "epochs_done": config.get("epochs_done"),
        "method_info": config.get("method_info"),
        "command": "aurorahash " + " ".join(argv),
        **m.to_dict(),
    }


def tables(results, bits) -> str:
    by = {r["name"]: r for r in results if r.get("ok")}

    def cell(name, key, fmt="{:.4f}"):
        r = by.get(name)
        return fmt.format(r[key]) if r and r.get(key) is not None else "-"

    lines = ["### Tables 3-4 shape: MAP / accuracy / params MB / training s", ""]
    head = "| arch | " + " | ".join(f"MAP@{b}b" for b in bits)
    head += " | " + " | ".join(f"acc@{b}b" for b in bits) + " | params MB (48b) | train s (48b) |"
    lines += [head, "|" + "---|" * (2 + 2 * len(bits) + 1)]
    for a in ARCHS:
        row = f"| {a} | " + " | ".join(cell(f"{a}-{b}", "map") for b in bits)
        row += " | " + " | ".join(cell(f"{a}-{b}", "accuracy") for b in bits)
        bb = 48 if 48 in bits else bits[-1]
        row += f" | {cell(f'{a}-{bb}', 'params_mb', '{:.2f}')}"
        row += f" | {cell(f'{a}-{bb}', 'train_seconds', '{:.0f}')} |"
        lines.append(row)
    for title, suffix in (
        ("Table 1 shape: im-alexnet-sp with / without the hash-layer loss", "nohashloss"),
        ("Table 2 shape: im-alexnet-sp with / without SPP+PMT", "nosppmt"),
    ):
        lines += ["", f"### {title} (MAP)", ""]
        lines += ["| variant | " + " | ".join(f"{b} bits" for b in bits) + " |"]
        lines += ["|" + "---|" * (1 + len(bits))]
        lines.append(
            "| with | " + " | ".join(cell(f"im-alexnet-sp-{b}", "map") for b in bits) + " |"
        )
        lines.append(
            "| without | "
            + " | ".join(cell(f"im-alexnet-sp-{suffix}-{b}", "map") for b in bits)
            + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--n-query", type=int, default=400)
    p.add_argument("--n-database", type=int, default=4000)
    p.add_argument("--epochs", type=float, default=15)
    p.add_argument("--bits", default="12,24,32,48")
    p.add_argument("--archs", default=",".join(ARCHS))
    p.add_argument("--no-ablations", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report-dir", default=None, help="results/tables/PNG here (default --out)")
    p.add_argument(
        "--deadline-s",
        type=float,
        default=None,
        help="start no new cell after this many seconds (the tables are still written)",
    )
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more train options")
    args = p.parse_args(argv)
    bits = [int(b) for b in args.bits.split(",")]
    archs = [a for a in args.archs.split(",") if a]
    report = args.report_dir or args.out
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(report, exist_ok=True)
    path = os.path.join(report, "results.json")
    t_start = time.time()
    from pipeline.training.datasets import load_splits

    t0 = time.time()
    splits = load_splits(
        "synthetic-aurora",
        None,
        "synthetic",
        0,
        None,
        None,
        size=args.size,
        n_train=args.n_train,
        n_query=args.n_query,
        n_database=args.n_database,
    )
    data_seconds = round(time.time() - t0, 1)
    head = _record.header(argv if argv is None else ["benchmarks/aurora_tables.py", *argv])
    print(f"data: {splits['info']} in {data_seconds} s", file=sys.stderr, flush=True)
    results = []
    for name, arch, b, extra in cells(bits, archs, not args.no_ablations):
        if args.deadline_s is not None and time.time() - t_start > args.deadline_s:
            print(f"deadline: {name} and later cells not run", file=sys.stderr, flush=True)
            break
        r = run_cell(args, splits, name, arch, b, extra)
        first_failed = not r["ok"] and not any(x.get("ok") for x in results)
        keep = {k: v for k, v in r.items() if k != "pr_curve"}
        print(json.dumps(keep), flush=True)
        results.append(r)
        with open(path, "w") as f:
            doc = {
                **head,
                "processor": platform.processor(),
                "args": vars(args),
                "data_seconds": data_seconds,
                "results": results,
            }
            json.dump(_record.portable(doc), f, indent=1)
        if first_failed:  # the same failure would repeat in every cell and spend the budget
            print(f"first cell failed, stopping: {r['error']}", file=sys.stderr, flush=True)
            break
    md = tables(results, bits)
    with open(os.path.join(report, "tables.md"), "w") as f:
        f.write(md)
    print(md)
    from pipeline.metrics import RetrievalMetrics
    from pipeline.reports import figures

    runs, pr = {}, {}
    for r in (r for r in results if r.get("ok")):
        label, m = r["name"].rsplit("-", 1)[0], RetrievalMetrics.from_dict(r)
        runs.setdefault(label, []).append(m)
        if m.nbits == max(bits):
            pr[label] = m
    title = f"synthetic aurora, {args.size}px, {args.n_train} training frames ({args.device})"
    png = figures.runs_figure(runs, pr, title=title)
    figures.write_png(png, os.path.join(report, "aurora_map_pr.png"))


if __name__ == "__main__":
    main()
