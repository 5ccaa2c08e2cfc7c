"""Exit codes of concurrent compactions, run after run (issue 20: "a finished compaction exits 0").

Each run is the concurrent-compaction test (`tests/test_compact.py::
test_concurrent_compactions_commit_each_frame_once`) as a script: a fresh archive of --files
per-minute shards (20 codes of 12 bits each), then two `python -m jobs.cli compact ... --no-vacuum`
started at the same moment on it. A run is clean when both exit 0, one or both committed every
file and nothing is left pending. The figures: exit codes seen, clean runs, and the longest streak
of consecutive clean runs; the stderr tail of every process that did not exit 0 goes into the
result file.

--repo runs the compactions from another checkout (e.g. the commit before the fix), so that
before and after can be compared on the same machine:

    nice -n 10 python benchmarks/stress_compact_exit.py --runs 50 --json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _record  # noqa: E402

from pipeline.synth.codes import archive_relpaths, write_code_shards  # noqa: E402

MODEL = "d" * 64  # tests/code_archive.py's model, bits and classes
NBITS, CLASSES, ROWS = 12, 3, 20


def one_run(repo: str, files: int, timeout: float) -> dict:
    """Two compactions at once on a fresh archive: exit codes, committed files, pending left."""
    from pipeline.codes import catalogue

    with tempfile.TemporaryDirectory(prefix="stress-compact-") as d:
        codes = f"{d}/codes"
        rels = archive_relpaths(files)
        write_code_shards(codes, rels, ROWS, NBITS, CLASSES, model=MODEL, threads=2)
        cmd = [sys.executable, "-m", "jobs.cli", "compact", "--codes", codes]
        cmd += ["--target-rows", "400", "--grace-hours", "0", "--no-vacuum"]
        env = dict(os.environ, PYTHONPATH=repo)
        pipes = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        t0 = time.perf_counter()
        procs = [subprocess.Popen(cmd, cwd=repo, env=env, **pipes) for _ in range(2)]
        outs = [p.communicate(timeout=timeout) for p in procs]
        seconds = time.perf_counter() - t0
        rcs = [p.returncode for p in procs]
        committed = []
        for out, _ in outs:
            lines = [ln for ln in out.splitlines() if ln.startswith("{")]
            committed.append(json.loads(lines[-1]).get("files") if lines else None)
        cat = catalogue.open_catalogue(codes)
        run = {
            "exit_codes": rcs,
            "files": committed,
            "pending_after": len(cat.shards),
            "rows_after": cat.n_rows,
            "seconds": round(seconds, 2),
        }
        run["clean"] = (
            rcs == [0, 0]
            and sorted(committed) in ([0, files], [files, files])
            and run["pending_after"] == 0
            and run["rows_after"] == files * ROWS
        )
        failed = [err for p, (_, err) in zip(procs, outs, strict=True) if p.returncode]
        run["stderr_tails"] = [err[-3000:] for err in failed]
        return run


def streak(runs: list[dict]) -> int:
    best = cur = 0
    for r in runs:
        cur = cur + 1 if r["clean"] else 0
        best = max(best, cur)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--files", type=int, default=120, help="shards per archive (the test's 120)")
    ap.add_argument("--repo", default=str(_record.ROOT), help="checkout the compactions run from")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per run at most")
    _record.add_json_argument(ap, "stress-compact-exit")
    args = ap.parse_args()
    runs = []
    for i in range(args.runs):
        r = one_run(os.path.abspath(args.repo), args.files, args.timeout)
        runs.append(r)
        print(f"run {i + 1}/{args.runs}: exit codes {r['exit_codes']}, files {r['files']}, "
              f"clean {r['clean']}, {r['seconds']} s", flush=True)  # fmt: skip
    codes = collections.Counter(rc for r in runs for rc in r["exit_codes"])
    figures = {
        "runs": len(runs),
        "processes": 2 * len(runs),
        "clean_runs": sum(r["clean"] for r in runs),
        "longest_clean_streak": streak(runs),
        "exit_codes": {str(k): v for k, v in sorted(codes.items())},
        "run_seconds_median": sorted(r["seconds"] for r in runs)[len(runs) // 2],
        "niceness": os.nice(0),
        "repo": args.repo,
    }
    print(json.dumps(figures), flush=True)
    _record.write(args.json, figures, runs=runs, cores_shared=True)


if __name__ == "__main__":
    main()
