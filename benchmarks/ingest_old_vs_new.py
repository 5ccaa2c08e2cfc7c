"""The ingest job of two checkouts on the same archive and checkpoint, alternating, and whether
they store the same codes (issue 10: no throughput regression, no code changed).

    python benchmarks/ingest_old_vs_new.py --old ../wt-base --archive A --model M --repeats 3 --json

Each run is a fresh process with its own local Ray (`run_ingest`): frames/s over the pipeline,
Ray's start excluded. One JSON document on stdout; per-run lines on stderr; --json also writes
it as a result file (default benchmarks/results/ingest-old-vs-new-<date>/result.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

NEW = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _record  # noqa: E402

RUN = """
import json, sys
from pipeline.ingest.config import IngestConfig
from pipeline.ingest.driver import run_ingest
cfg = IngestConfig(source=sys.argv[1], out=sys.argv[2], model=sys.argv[3], progress_interval=60)
s = run_ingest(cfg)
keys = ("frames", "frames_per_s", "pipeline_seconds", "time_breakdown_s", "resources")
print(json.dumps({k: s.get(k) for k in keys}))
"""


def run(tree: str, archive: str, model: str, out: str) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=tree)
    cmd = [sys.executable, "-c", RUN, archive, out, model]
    p = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, check=True)
    return json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("{")][-1])


def _git_head(tree: str) -> str | None:
    p = subprocess.run(["git", "-C", tree, "rev-parse", "HEAD"], capture_output=True, text=True)
    return p.stdout.strip() or None if p.returncode == 0 else None


def codes(out: str) -> dict:
    """{frame id: code bytes} of a run's output, read through the catalogue."""
    from pipeline.codes import catalogue, search

    packed, _, ids = search.load_all(catalogue.open_catalogue(out))
    return dict(zip(ids.tolist(), [c.astype("<u8").tobytes() for c in packed], strict=True))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--old", required=True, help="the other checkout (e.g. a git worktree)")
    p.add_argument("--archive", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workdir", default="/tmp/aurorahash-old-vs-new")
    _record.add_json_argument(p, "ingest-old-vs-new")
    args = p.parse_args(argv)
    sys.path.insert(0, NEW)
    trees = {"old": str(Path(args.old).resolve()), "new": NEW}
    runs: dict[str, list] = {"old": [], "new": []}
    for r in range(args.repeats):
        for name, tree in trees.items():
            d = run(tree, args.archive, args.model, os.path.join(args.workdir, name))
            runs[name].append(d)
            print(f"[{r}] {name}: {d['frames_per_s']} frames/s", file=sys.stderr, flush=True)
    old, new = (codes(os.path.join(args.workdir, n)) for n in trees)
    med = {n: statistics.median(d["frames_per_s"] for d in runs[n]) for n in trees}
    out = {
        "old_checkout": trees["old"],
        "old_commit": _git_head(trees["old"]),
        "median_frames_per_s": med,
        "ratio_new_to_old": round(med["new"] / med["old"], 3),
        "codes_identical": old == new,
        "frames_compared": len(new),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "runs": runs,
    }
    print(json.dumps(out, indent=1))
    _record.write(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
