"""Start-up of the jobs that do not encode: `aurorahash --help` and `search --query-id` on a
compacted archive, against the interpreter's floor and `import torch`, each a whole process.

    python benchmarks/bench_startup.py --repeat 5 --json
    python benchmarks/bench_startup.py --files 2000 --repeat 3        # a quick run
    python benchmarks/bench_startup.py --workdir /tmp/startup --keep  # keep (and reuse) the data

Commands, run in turn `--repeat` rounds (so that a busy spell of a shared machine hits all of
them alike), best and median wall time of each:

floor      python -c pass (the interpreter alone)
torch      python -c "import torch" (what every job paid before: reference)
help       aurorahash --help
catalogue  python -c: import the catalogue and open DB's (what search does first), and the
           seconds of the opening alone
search     aurorahash search --codes DB --query-id ID --k 10, default settings: the job picks
           this process or Ray itself (`pipeline.codes.placement`) and its summary says which
search-no-ray, search-ray (--with-ray): the same forced each way (reference)

DB: --files minute shards of --rows-per-file codes (64 bits; default 50,000 x 20 = 1M codes, the
THEMIS layout `pipeline.synth.codes.archive_relpaths`), written by `write_code_shards`, then
`aurorahash compact --codes DB` with its default settings, as a site would run it: the shards
stay for the grace period (vacuum deletes them later), so the catalogue still lists them. The
query is one frame in the middle of the archive. Data under --workdir is reused when its marker
matches. Jobs run with this checkout first on PYTHONPATH and without RAY_ADDRESS.

Targets (issue 20, quiet machine): help <= 0.6 s; search <= 1.5 s with the default settings.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.append(ROOT)

import _record  # noqa: E402
from _timing import interleaved  # noqa: E402

MODEL = "57a47" + "0" * 59
# What search spends opening the catalogue (listing, the segment table), as its own process; its
# JSON line gives the seconds inside it.
CATALOGUE = """import json, sys, time
from pipeline.codes import catalogue
t0 = time.perf_counter()
cat = catalogue.open_catalogue(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - t0, "n_database": cat.n_rows}))
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def env() -> dict:
    e = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    e["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    return e


def job(*args) -> list[str]:
    """`aurorahash ARGS` the way a user starts it: the console script when installed."""
    exe = os.path.join(os.path.dirname(sys.executable), "aurorahash")
    return [exe, *args] if os.path.exists(exe) else [sys.executable, "-m", "jobs.cli", *args]


def run(argv: list[str]) -> dict | None:
    """Run to completion; the JSON summary (a job's last stdout line) or None."""
    p = subprocess.run(argv, capture_output=True, text=True, env=env(), cwd=ROOT, timeout=900)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    lines = p.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1]) if lines else None
    except ValueError:
        return None


def build(workdir: str, files: int, rows: int) -> tuple[str, str, dict]:
    """(codes root, query id, compaction summary): the compacted archive, written or reused."""
    from pipeline.codes import store
    from pipeline.synth.codes import archive_relpaths, write_code_shards

    db = os.path.join(workdir, "db")
    marker = os.path.join(workdir, "marker.json")
    params = {"files": files, "rows_per_file": rows, "model": MODEL, "version": 1}
    relpaths = sorted(archive_relpaths(files))
    query = store.frame_id(relpaths[len(relpaths) // 2], rows // 2)
    try:
        with open(marker) as f:
            saved = json.load(f)
        if saved["params"] == params and os.path.isdir(db):
            log(f"reusing {files:,} shards x {rows} codes, compacted, in {db}")
            return db, query, saved["compact"]
    except (OSError, ValueError, KeyError):
        pass
    shutil.rmtree(db, ignore_errors=True)
    log(f"writing {files:,} shards x {rows} codes to {db}")
    t0 = time.perf_counter()
    write_code_shards(db, relpaths, rows_per_file=rows, nbits=64, model=MODEL)
    log(f"written in {time.perf_counter() - t0:.0f} s; compacting (default settings)")
    t0 = time.perf_counter()
    summary = run(job("compact", "--codes", db))
    summary["wall_s"] = time.perf_counter() - t0
    log(f"compacted in {summary['wall_s']:.0f} s")
    with open(marker, "w") as f:
        json.dump({"params": params, "compact": summary}, f)
    return db, query, summary


def commands(db: str, query: str, with_ray: bool) -> dict[str, list[str]]:
    py = sys.executable
    search = job("search", "--codes", db, "--query-id", query, "--k", "10")
    cmds = {
        "floor": [py, "-c", "pass"],
        "torch": [py, "-c", "import torch"],
        "help": job("--help"),
        "catalogue": [py, "-c", CATALOGUE, db],
        "search": search,
    }
    if with_ray:
        cmds["search-no-ray"] = [*search, "--no-ray"]
        cmds["search-ray"] = [*search, "--ray"]
    return cmds


def measure(cmds: dict[str, list[str]], repeat: int) -> dict:
    names = list(cmds)
    fns = [lambda argv=cmds[n]: run(argv) for n in names]
    run(cmds["search"])  # untimed: numba's on-disk cache and the page cache warm
    out = {}
    for name, (best, median, summary) in zip(names, interleaved(fns, repeat), strict=True):
        out[name] = {"best_s": round(best, 3), "median_s": round(median, 3)}
        for key in ("executor", "n_database", "seconds"):
            if summary and summary.get(key) is not None:
                out[name][key] = summary[key]  # the last run's; seconds: inside the process
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=50_000, help="minute shards (50,000)")
    ap.add_argument("--rows-per-file", type=int, default=20, help="codes per shard (20)")
    ap.add_argument("--repeat", type=int, default=5, help="rounds (5)")
    ap.add_argument("--with-ray", action="store_true", help="also search --no-ray and --ray")
    ap.add_argument("--workdir", default=None, help="where the archive goes (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the archive (reused next time)")
    _record.add_json_argument(ap, "startup")
    a = ap.parse_args(argv)
    workdir = a.workdir or tempfile.mkdtemp(prefix="aurorahash-startup-")
    os.makedirs(workdir, exist_ok=True)
    try:
        db, query, compact = build(workdir, a.files, a.rows_per_file)
        res = measure(commands(db, query, a.with_ray), a.repeat)
    finally:
        if not a.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    floor = res["floor"]["best_s"]
    print(
        f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, {_record.cpu_model()}, "
        f"load average {os.getloadavg()[0]:.1f}; best / median of {a.repeat}"
    )
    for name, r in res.items():
        extra = f"  executor {r['executor']}" if r.get("executor") else ""
        extra += f"  ({r['seconds']:.2f} s inside)" if r.get("seconds") is not None else ""
        print(
            f"{name:14s} {r['best_s']:7.3f} s / {r['median_s']:7.3f} s  "
            f"{r['best_s'] / floor:5.1f} x floor{extra}"
        )
    figures = {
        "files": a.files,
        "rows_per_file": a.rows_per_file,
        "codes": a.files * a.rows_per_file,
        "repeat": a.repeat,
        "compact": {
            k: compact.get(k) for k in ("wall_s", "segments_written", "files", "rows", "vacuum")
        },
        "load_average_after": os.getloadavg(),
        "commands": res,
        "targets": {"help_s": 0.6, "search_s": 1.5},
    }
    _record.write(a.json, figures)


if __name__ == "__main__":
    main()
