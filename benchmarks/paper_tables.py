"""The paper's Table 6 on CIFAR-10: LSH, ITQ, KSH, CNNH, DPSH, DSH and ours, at 12-48 bits.

For each protocol (cifar10-1, cifar10-2):
- LSH, ITQ and KSH on GIST (512-d, pipeline/baselines/gist.py), fitted on the protocol's
  training set by benchmarks/bench_baselines.py's code (KSH: 2,000 labelled samples, 300
  anchors);
- CNNH, DPSH, DSH and ours: `aurorahash train --method M`, all four on the same backbone, recipe
  and budget: the protocol's recorded command for ours (benchmarks/RESULTS.md, "CIFAR-10,
  `cifar10-1`" and "CIFAR-10, `cifar10-2`": cifar10-1 compact, 80 epochs, batch 256; cifar10-2
  compact with widths 64,256,256, 18 epochs). Each cell is trained in this process as the train
  job would run it (one checkpoint folder per cell under --out: a re-run resumes or skips it)
  and evaluated through the shipped encode path (the codes ingest would store).
MAP over the whole database, ties by database index. OUT/results.json is rewritten after every
cell (with each cell's equivalent `aurorahash train` command and where, when and at which
commit it was measured; the last run's command, commit, machine and date at the top, paths
relative to the project: benchmarks/_record.py); a cell already in
--report-dir/results.json is not run again, so the table can be filled over several sessions.
OUT/table6.md holds the table; cells not measured read "-".

GPU session (benchmarks/gpu_paper_tables.sh wraps this):
  python3 benchmarks/paper_tables.py --data ../shared/data/cifar10 --out /tmp/t6 \\
      --report-dir $OUT/table6 --device cuda --deadline-s 700 --extra --threads 8
Smoke on the CPU (proves the runner end to end; the MAPs mean nothing):
  .venv/bin/python benchmarks/paper_tables.py --data ../shared/data/cifar10 --out runs/t6-smoke \\
      --protocols cifar10-1 --bits 12 --limit 256 --epochs 1 --ksh-labelled 300
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import _record  # noqa: E402

CLASSIC = ("lsh", "itq", "ksh")
DEEP = ("cnnh", "dpsh", "dsh", "ours")
RECIPE = {  # the recorded ours commands (RESULTS.md), the budget of every deep method
    "cifar10-1": ["--arch", "compact", "--epochs", "80", "--batch-size", "256"],
    "cifar10-2": ["--arch", "compact", "--widths", "64,256,256", "--epochs", "18"],
}
ROWS = {"lsh": "LSH", "itq": "ITQ", "ksh": "KSH", "cnnh": "CNNH", "dpsh": "DPSH", "dsh": "DSH"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def train_argv(args, protocol: str, method: str, bits: int) -> list[str]:
    recipe = list(RECIPE[protocol])
    if args.epochs is not None:
        recipe[recipe.index("--epochs") + 1] = str(args.epochs)
    argv = ["train", "--dataset", "cifar10", "--data", args.data, "--protocol", protocol]
    argv += ["--method", method, "--bits", str(bits), "--seed", str(args.seed), *recipe]
    argv += [
        "--device",
        args.device,
        "--out",
        os.path.join(args.out, f"{protocol}-{method}-b{bits}"),
    ]
    if args.limit:
        argv += ["--limit", str(args.limit)]
    return argv + list(args.extra)


def classic_rows(args, protocol: str, bits: list[int]) -> list[dict]:
    """LSH, ITQ, KSH on GIST for one protocol, one result per (method, bits)."""
    import bench_baselines

    argv = ["--dataset", "cifar10", "--data", args.data, "--protocol", protocol]
    argv += ["--bits", ",".join(map(str, bits)), "--methods", ",".join(args.classic)]
    argv += ["--features", "gist", "--real", "", "--ksh-labelled", str(args.ksh_labelled)]
    argv += ["--seed", str(args.seed)]
    r = bench_baselines.main(argv)
    out = []
    for m, row in r["hashing"]["gist"]["rows"].items():
        for b, cell in row.items():
            name = f"{protocol}-{m}-b{b}"
            ok = cell.get("map") is not None
            out.append({"name": name, "ok": ok, "method": m, "bits": int(b), **cell})
            out[-1]["command"] = "python benchmarks/bench_baselines.py " + " ".join(argv)
    return out


def table(results: list[dict], protocols: list[str], bits: list[int], methods) -> str:
    by = {r["name"]: r for r in results if r.get("ok")}
    head = "| method | " + " | ".join(f"{p} {b} bits" for p in protocols for b in bits) + " |"
    lines = [head, "|" + " --- |" * (1 + len(protocols) * len(bits))]
    for m in methods:
        cells = []
        for p in protocols:
            for b in bits:
                r = by.get(f"{p}-{m}-b{b}")
                cells.append(f"{r['map']:.4f}" if r else "-")
        lines.append(f"| {ROWS.get(m, m)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _where(args) -> dict:
    """Where and when a cell was measured (cells of several sessions share one results.json)."""
    cpu = platform.processor() or platform.machine()
    if args.device.startswith("cuda"):
        import torch

        cpu = torch.cuda.get_device_name(0)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    return {"device": args.device, "hardware": cpu, "date": day, "commit": _record.commit()}


def _save(path: str, args, results: list[dict]) -> None:
    doc = {
        **_record.header(),
        "processor": platform.processor(),
        "args": vars(args),
        "results": results,
    }
    doc = _record.portable(json.loads(json.dumps(doc, default=str)))
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="CIFAR-10 Parquet shards")
    p.add_argument("--out", required=True, help="checkpoints, one folder per cell")
    p.add_argument("--report-dir", default=None, help="results.json and table6.md (default --out)")
    p.add_argument("--protocols", default="cifar10-1,cifar10-2")
    p.add_argument("--bits", default="12,24,32,48")
    p.add_argument("--classic", default=",".join(CLASSIC), help="GIST hashers ('' for none)")
    p.add_argument("--methods", default=",".join(DEEP), help="deep methods ('' for none)")
    p.add_argument("--epochs", type=float, default=None, help="override the recipes' epochs")
    p.add_argument("--limit", type=int, default=None, help="cap on training images (smoke)")
    p.add_argument("--ksh-labelled", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--deadline-s", type=float, default=None, help="start no cell after this")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more train options")
    args = p.parse_args(argv)
    args.classic = [m for m in args.classic.split(",") if m]
    methods = [m for m in args.methods.split(",") if m]
    protocols = [x for x in args.protocols.split(",") if x]
    bits = [int(b) for b in args.bits.split(",") if b]
    report = args.report_dir or args.out
    os.makedirs(report, exist_ok=True)
    path = os.path.join(report, "results.json")
    results = []
    if os.path.exists(path):  # cells measured earlier (another session) are kept, not rerun
        with open(path) as f:
            results = [r for r in json.load(f)["results"] if r.get("ok")]
    done = {r["name"] for r in results}
    t_start = time.time()

    def late() -> bool:
        return args.deadline_s is not None and time.time() - t_start > args.deadline_s

    from aurora_tables import train_cell

    from pipeline.training.datasets import load_splits

    for protocol in protocols:
        if late():
            break
        if args.classic and not all(
            f"{protocol}-{m}-b{b}" in done for m in args.classic for b in bits
        ):
            rows = [r for r in classic_rows(args, protocol, bits) if r["name"] not in done]
            results += [{**r, "protocol": protocol, "measured_on": _where(args)} for r in rows]
            _save(path, args, results)
        todo = [(m, b) for b in bits for m in methods if f"{protocol}-{m}-b{b}" not in done]
        if not todo:
            continue
        splits = load_splits("cifar10", args.data, protocol, limit=args.limit)
        for m, b in todo:
            if late():
                log(f"deadline: {protocol} {m} {b} bits and later cells not run")
                break
            r = train_cell(f"{protocol}-{m}-b{b}", train_argv(args, protocol, m, b), splits)
            r.update(protocol=protocol, measured_on=_where(args))
            log(json.dumps({k: v for k, v in r.items() if k not in ("pr_curve",)}))
            results.append(r)
            _save(path, args, results)
    md = table(results, protocols, bits, [*args.classic, *methods])
    with open(os.path.join(report, "table6.md"), "w") as f:
        f.write(md)
    print(md)
    return results


if __name__ == "__main__":
    main()
