"""How long a released HashEncoder actor takes to end after its ingest (issue 20's orphan).

In one local Ray session (as the demo holds one across its jobs), ingest a small synthetic
archive, then time how long the encoder actors' processes (their pids are in the summary's
`encoders`) stay alive after `run_ingest` returned. Before the fix they ran the interpreter's
and libtorch's teardown after their core worker had shut down; when the session ended first,
they were orphaned. `--repo` runs the actors from another checkout (the workers import from the
PYTHONPATH), so before and after are measured on the same machine, alternating:

    python benchmarks/actor_exit_latency.py --repo ../main --repo . --rounds 2 --json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _record  # noqa: E402

CHILD = """
import json, os, sys, time
from pipeline.ingest.config import IngestConfig
from pipeline.ingest.driver import run_ingest
from pipeline.ray_runtime import ray_session
src, model, out, wait = sys.argv[1:5]
with ray_session(None):
    s = run_ingest(IngestConfig(source=src, out=out, model=model))
    t0 = time.perf_counter()
    pids = [e["pid"] for e in s["encoders"]]
    alive = lambda: [p for p in pids if os.path.exists(f"/proc/{p}") and
                     open(f"/proc/{p}/stat").read().split(")")[1].split()[0] not in "ZX"]
    while alive() and time.perf_counter() - t0 < float(wait):
        time.sleep(0.05)
    left = alive()
    for p in left:  # never leave one behind on a shared machine
        os.kill(p, 9)
    print(json.dumps({"encoders": pids, "seconds_to_end": None if left else
                      round(time.perf_counter() - t0, 2), "alive_after_wait": left}), flush=True)
"""


def prepare(d: str, repo: str) -> tuple[str, str]:
    """A 40-frame synthetic archive and a random-init 32-px model (tests/ingest_helpers.py)."""
    env = dict(os.environ, PYTHONPATH=f"{repo}{os.pathsep}{repo}/tests")
    argv = [sys.executable, "-m", "jobs.cli", "synth", "--out", f"{d}/archive", "--frames", "40"]
    subprocess.run([*argv, "--size", "64"], cwd=repo, env=env, check=True, capture_output=True)
    code = f"from ingest_helpers import make_model; make_model({d!r} + '/model', size=32)"
    subprocess.run([sys.executable, "-c", code], cwd=repo, env=env, check=True)
    return f"{d}/archive", f"{d}/model"


def one(repo: str, src: str, model: str, out: str, wait: float) -> dict:
    env = dict(os.environ, PYTHONPATH=repo)
    env.pop("RAY_ADDRESS", None)
    argv = [sys.executable, "-c", CHILD, src, model, out, str(wait)]
    p = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode or not lines:
        return {"error": p.stderr[-2000:]}
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", action="append", required=True, help="checkouts to compare")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the actors")
    _record.add_json_argument(ap, "actor-exit-latency")
    args = ap.parse_args()
    repos = [os.path.abspath(r) for r in args.repo]
    results = {r: [] for r in repos}
    with tempfile.TemporaryDirectory(prefix="actor-exit-") as d:
        src, model = prepare(d, repos[-1])
        for i in range(args.rounds):
            for r in repos:
                res = one(r, src, model, f"{d}/out-{len(results[r])}-{repos.index(r)}", args.wait)
                results[r].append(res)
                print(f"round {i + 1}, {r}: {res}", flush=True)
    by_repo = [{"repo": r, "runs": runs} for r, runs in results.items()]  # values: made relative
    figures = {"wait_s": args.wait, "by_repo": by_repo}
    _record.write(args.json, figures, cores_shared=True)


if __name__ == "__main__":
    main()
