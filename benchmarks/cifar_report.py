"""MAP vs bits and PR curves of CIFAR-10 runs, from the JSON summaries `aurorahash train` prints.

    .venv/bin/python benchmarks/cifar_report.py --out benchmarks/results/cifar10_map_pr.png \\
        --series cifar10-1 runs/c10p1-b12.json runs/c10p1-b24.json runs/c10p1-b32.json \\
                 runs/c10p1-b48.json \\
        --series cifar10-2 runs/c10-w256-e18-b32.json runs/c10-w256-e18-b48.json

The paper's references are drawn beside them: DPSH on cifar10-1 (0.713 / 0.727 / 0.744 / 0.757)
and the paper's Im-AlexNet-SP on cifar10-2 (0.912 at 32 bits, 0.907 at 48).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

REFERENCE = {
    "DPSH, cifar10-1 (paper)": {12: 0.713, 24: 0.727, 32: 0.744, 48: 0.757},
    "Im-AlexNet-SP, cifar10-2 (paper)": {32: 0.912, 48: 0.907},
}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument(
        "--series",
        nargs="+",
        action="append",
        required=True,
        metavar="LABEL JSON",
        help="a label, then the train summaries (JSON) of its code lengths",
    )
    args = p.parse_args(argv)
    from pipeline.reports.curves import plot_report

    series, pr = {}, {}
    for label, *files in args.series:
        runs = []
        for f in files:
            with open(f) as fh:
                runs.append(json.load(fh))
        series[label] = {int(r["bits"]): float(r["map"]) for r in runs}
        longest = max(runs, key=lambda r: int(r["bits"]))
        if longest.get("pr_curve"):
            pr[f"{label}, {longest['bits']} bits"] = longest
    plot_report(series, pr, args.out, reference=REFERENCE, title="CIFAR-10 (compact, CPU)")
    print(args.out)


if __name__ == "__main__":
    main()
