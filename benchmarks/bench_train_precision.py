"""Training speed in float32 against bfloat16 autocast, through `aurorahash train` itself.

    python benchmarks/bench_train_precision.py --data ../shared/data/cifar10 --limit 4096 --json
                                     # + benchmarks/results/train-precision-<date>/result.json

Runs the same short `train` command (CIFAR-10 cifar10-2 recipe: compact, widths 64,256,256;
--limit training images, one epoch, no evaluation) once per precision, alternating
off, on, off, on, ... for --repeats rounds so that a change in the machine's load hits both,
and prints each run's training images/s (config.json train_seconds) and the ratio fp32 / bf16.
`train --amp auto` picks bf16 only where `pipeline.model.precision.bf16_native` says it runs in
hardware; this script is the measurement behind that default.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _record  # noqa: E402


def run_once(args, amp: str, out: str) -> float:
    """Images per second of one `train` run with --amp `amp`."""
    cmd = [sys.executable, "-m", "jobs.cli", "train", "--dataset", "cifar10", "--data", args.data]
    cmd += ["--protocol", "cifar10-2", "--arch", "compact", "--widths", "64,256,256"]
    cmd += ["--bits", "32", "--epochs", "1", "--limit", str(args.limit), "--no-eval"]
    cmd += ["--threads", str(args.threads), "--amp", amp, "--out", out]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with open(os.path.join(out, "config.json")) as f:
        cfg = json.load(f)
    return args.limit / float(cfg["train_seconds"])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="CIFAR-10 Parquet shards")
    p.add_argument("--limit", type=int, default=4096, help="training images per run")
    p.add_argument("--repeats", type=int, default=2, help="rounds of (fp32, bf16)")
    p.add_argument("--threads", type=int, default=2)
    _record.add_json_argument(p, "train-precision")
    args = p.parse_args(argv)
    from pipeline.model.precision import bf16_native

    rates = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for amp in ("off", "on"):
                rate = run_once(args, amp, os.path.join(tmp, f"{amp}-{r}"))
                rates[amp].append(rate)
                print(f"round {r + 1}: --amp {amp}: {rate:.1f} img/s", flush=True)
    fp32, bf16 = statistics.median(rates["off"]), statistics.median(rates["on"])
    doc = {
        "machine": platform.platform(),
        "processor": platform.processor(),
        "bf16_native": bf16_native("cpu"),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "args": vars(args),
        "img_per_s": rates,
        "fp32_median": round(fp32, 1),
        "bf16_median": round(bf16, 1),
        "ratio_fp32_over_bf16": round(fp32 / bf16, 2),
    }
    print(
        f"fp32 {fp32:.1f} img/s, bf16 autocast {bf16:.1f} img/s: fp32 is {fp32 / bf16:.2f}x "
        f"(bf16 native on this CPU: {doc['bf16_native']})"
    )
    _record.write(args.json, doc)
    return doc


if __name__ == "__main__":
    main()
