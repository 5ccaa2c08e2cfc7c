"""Report figure from finished runs: MAP vs bits (with reference figures) and PR curves.

Reads the metrics.json that `aurorahash train` writes into each run directory (or a results.json
of benchmarks/aurora_tables.py) and draws one PNG with pipeline.reports.figures.runs_figure.

  python benchmarks/hash_report.py --out benchmarks/cifar10_map_pr.png \\
      --series "cifar10-1 compact=runs/c10p1-b12,runs/c10p1-b24,runs/c10p1-b32,runs/c10p1-b48" \\
      --series "cifar10-2 compact=runs/c10-b32,runs/c10-b48" \\
      --reference "DPSH cifar10-1=12:0.713,24:0.727,32:0.744,48:0.757" \\
      --reference "paper cifar10-2=32:0.912,48:0.907"
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _metrics(run_dir: str) -> dict:
    with open(os.path.join(run_dir, "metrics.json")) as f:
        return json.load(f)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--series", action="append", default=[], help="LABEL=run_dir,run_dir,...")
    p.add_argument("--reference", action="append", default=[], help="LABEL=bits:map,...")
    p.add_argument("--pr-bits", type=int, default=None, help="PR curves of this code length")
    p.add_argument("--title", default=None)
    args = p.parse_args(argv)
    from pipeline.metrics import RetrievalMetrics
    from pipeline.reports import figures

    runs, series, pr = {}, {}, {}
    for spec in args.series:
        label, dirs = spec.split("=", 1)
        for d in dirs.split(","):
            m = RetrievalMetrics.from_dict(_metrics(d))
            runs.setdefault(label, []).append(m)
            series.setdefault(label, {})[m.nbits] = m.map
            if args.pr_bits is None or m.nbits == args.pr_bits:
                pr[f"{label}, {m.nbits}b"] = m
    ref = {}
    for spec in args.reference:
        label, pts = spec.split("=", 1)
        ref[label] = {int(b): float(v) for b, v in (x.split(":") for x in pts.split(","))}
    png = figures.runs_figure(runs, pr, reference=ref, title=args.title)
    figures.write_png(png, args.out)
    print(json.dumps({"out": args.out, "series": series, "reference": ref}))


if __name__ == "__main__":
    main()
