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
    from pipeline.metrics import RetrievalMetrics
    from pipeline.reports import figures

    runs, pr = {}, {}
    for label, *files in args.series:
        for f in files:
            with open(f) as fh:
                runs.setdefault(label, []).append(RetrievalMetrics.from_dict(json.load(fh)))
        longest = max(runs[label], key=lambda m: m.nbits)
        if longest.pr_precision is not None:
            pr[label] = longest
    title = "CIFAR-10 (compact, CPU)"
    png = figures.runs_figure(runs, pr, reference=REFERENCE, title=title)
    figures.write_png(png, args.out)
    print(args.out)


if __name__ == "__main__":
    main()
