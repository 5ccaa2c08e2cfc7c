"""First compaction of fresh minute shards at several sizes: peak memory, and wall time against
the read floor measured in the same run (issue 20).

    python benchmarks/bench_compact_stream.py --sizes 10000,50000,200000 --json
    python benchmarks/bench_compact_stream.py --sizes 2000,4000 --workdir /tmp/x   # smoke run

Data: the largest size is written once (`pipeline.synth.codes.write_code_shards`: THEMIS minute
shards of 20 64-bit codes, `archive_relpaths(n)`, 4 sites, a night folder per day); each size
compacts a fresh hard-link copy of its first n shards (canonical order).

For each size, in this order (after one untimed read of every file, so that all timings read
from the page cache):
- floor (before): every shard read once with pyarrow
  (`ParquetFile(BufferReader(bytes)).read(use_threads=False)`, the fastest read of a small file,
  as `store.read_shard` does) by one process per core, from a file list made beforehand (the
  listing is timed on its own: `os.walk`);
- `aurorahash compact --codes COPY --no-vacuum` as a whole process under `/usr/bin/time -v`
  (its maximum resident set size: the largest of the job and every worker process it reaped),
  with the process tree's summed RSS sampled every 0.2 s from /proc;
- floor (after), the same as before. The ratio is the job's wall over the mean of the two floors;
  a second ratio takes off the job's start-up (`compact --help`, timed just before). A third
  floor reads with pyarrow's default (a thread pool per file, 28% slower on minute shards), the
  floor of the runs before 2026-12-08 (`ratio_to_default_floor`).

The cores are shared with other work on this machine; the figures that matter are the ratios,
taken within one run. A year (5M shards) is projected by a least-squares line through the
measured sizes (wall time and peak RSS against shards).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _record  # noqa: E402

from pipeline.codes import catalogue, store  # noqa: E402
from pipeline.synth.codes import archive_relpaths, write_code_shards  # noqa: E402

MODEL = "c0de5" + "0" * 59
YEAR_SHARDS = 5_000_000


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def make_base(workdir: str, n: int) -> str:
    base = os.path.join(workdir, "base")
    marker = os.path.join(workdir, f"base-{n}.ok")
    if os.path.exists(marker):
        log(f"reusing {n:,} shards in {base}")
        return base
    shutil.rmtree(base, ignore_errors=True)
    t0 = time.perf_counter()
    write_code_shards(base, archive_relpaths(n), 20, 64, 10, model=MODEL, threads=4)
    open(marker, "w").close()
    log(f"wrote {n:,} shards in {time.perf_counter() - t0:.0f} s")
    return base


def fresh_copy(base: str, dst: str, n: int) -> list[str]:
    """Hard links to the first n shards (canonical order) under dst; their paths."""
    shutil.rmtree(dst, ignore_errors=True)
    model = os.path.join(base, MODEL[:12])
    rels = sorted(archive_relpaths(n))
    out = []
    for rel in rels:
        src = os.path.join(model, rel + store.SHARD_SUFFIX)
        d = os.path.join(dst, MODEL[:12], rel + store.SHARD_SUFFIX)
        os.makedirs(os.path.dirname(d), exist_ok=True)
        os.link(src, d)
        out.append(d)
    return out


def _read_some(paths: list[str], threads: bool = False) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = 0
    for p in paths:
        with open(p, "rb") as f:
            rows += pq.ParquetFile(pa.BufferReader(f.read())).read(use_threads=threads).num_rows
    return rows


def floor(paths: list[str], procs: int, threads: bool = False) -> tuple[float, int]:
    """Seconds to read every shard once on `procs` processes (started before the clock).
    `threads=False` is the fastest pyarrow read of a small file (and the one `store.read_shard`
    makes); True is pyarrow's default, the floor of the runs before 2026-12-08."""
    chunks = [paths[i::procs] for i in range(procs)]
    with ProcessPoolExecutor(procs) as pool:
        list(pool.map(_read_some, [[] for _ in range(procs)]))  # start and import first
        t0 = time.perf_counter()
        rows = sum(pool.map(_read_some, chunks, [threads] * procs))
        return time.perf_counter() - t0, rows


def warm(paths: list[str]) -> None:
    """Read every file once, untimed, so that the floors and the job all read from the page
    cache (the runs of 2026-12-08 timed the first floor cold: 31.5 s against 11.0 warm)."""
    for p in paths:
        with open(p, "rb") as f:
            f.read()


def listing_seconds(folder: str) -> float:
    t0 = time.perf_counter()
    n = sum(1 for _, _, fs in os.walk(folder) for f in fs if f.endswith(".parquet"))
    assert n > 0
    return time.perf_counter() - t0


class TreeRss(threading.Thread):
    """Summed RSS of a process and its descendants, sampled every `interval` s (its peak)."""

    def __init__(self, pid: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak_kb = pid, interval, 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.peak_kb = max(self.peak_kb, self._sum())
            self.stop.wait(self.interval)

    def _sum(self) -> int:
        kids, rss = {}, {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    s = f.read()
                with open(f"/proc/{d}/status") as f:
                    kb = next((int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:")), 0)
            except (OSError, StopIteration, ValueError):
                continue
            ppid = int(s[s.rindex(")") + 2 :].split()[1])
            kids.setdefault(ppid, []).append(int(d))
            rss[int(d)] = kb
        total, todo = 0, [self.pid]
        while todo:
            p = todo.pop()
            total += rss.get(p, 0)
            todo += kids.get(p, [])
        return total


def run_compact(folder: str, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "jobs.cli", "compact", "--codes", folder, "--no-vacuum", *extra]
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("RAY_ADDRESS", None)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        ["/usr/bin/time", "-v", *cmd],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sampler = TreeRss(proc.pid)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"compact failed ({proc.returncode}): {err[-3000:]}")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    summary = json.loads(out.strip().splitlines()[-1])
    return {
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(int(m.group(1)) / 1024, 1) if m else None,
        "tree_rss_peak_mb": round(sampler.peak_kb / 1024, 1),
        "summary": {
            k: summary.get(k)
            for k in ("files", "rows", "segments_written", "commits", "runner", "workers")
        },
    }


def startup_seconds() -> float:
    """Wall time of `aurorahash compact --help`: the job's start-up (Python, imports)."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "jobs.cli", "compact", "--help"]
    subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, check=True)
    return time.perf_counter() - t0


def measure(base: str, workdir: str, n: int, procs: int, extra: list[str]) -> dict:
    folder = os.path.join(workdir, f"copy-{n}")
    log(f"{n:,} shards: linking a fresh copy")
    paths = fresh_copy(base, folder, n)
    list_s = listing_seconds(folder)
    warm(paths)
    f1, rows = floor(paths, procs)
    start = startup_seconds()
    log(f"{n:,}: floor {f1:.1f} s ({rows:,} rows), start-up {start:.1f} s; compacting")
    job = run_compact(folder, extra)
    f2, _ = floor(paths, procs)
    f_default, _ = floor(paths, procs, threads=True)
    fl = (f1 + f2) / 2
    log(
        f"{n:,}: compact {job['wall_s']:.1f} s, floor {f1:.1f}/{f2:.1f} s, "
        f"peak {job['peak_rss_mb']} MB (tree {job['tree_rss_peak_mb']} MB)"
    )
    cat = catalogue.open_catalogue(folder)
    assert not cat.shards and cat.n_rows == rows == 20 * n, "compaction lost or kept shards"
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "shards": n,
        "codes": rows,
        **job,
        "floor_read_s": [round(f1, 2), round(f2, 2)],
        "floor_default_read_s": round(f_default, 2),
        "ratio_to_default_floor": round(job["wall_s"] / f_default, 3),
        "listing_s": round(list_s, 2),
        "ratio_to_floor": round(job["wall_s"] / fl, 3),
        "ratio_to_floor_plus_listing": round(job["wall_s"] / (fl + list_s), 3),
        "startup_s": round(start, 2),
        "ratio_to_floor_after_startup": round((job["wall_s"] - start) / fl, 3),
    }


def project(rows: list[dict]) -> dict:
    x = np.array([r["shards"] for r in rows], float)
    out = {}
    for key in ("wall_s", "peak_rss_mb", "tree_rss_peak_mb"):
        y = np.array([r[key] for r in rows], float)
        slope, icpt = np.polyfit(x, y, 1) if len(x) > 1 else (0.0, y[0])
        out[key] = {
            "per_1k_shards": round(slope * 1000, 4),
            "intercept": round(icpt, 2),
            "year_5M": round(icpt + slope * YEAR_SHARDS, 1),
        }
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,50000,200000")
    ap.add_argument("--workdir", default="/tmp/aurorahash-bench-compact-stream")
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 1, help="floor processes")
    ap.add_argument("--job-args", default="", help="extra compact options, space-separated")
    ap.add_argument("--keep", action="store_true", help="keep the generated shards")
    _record.add_json_argument(ap, "compact-stream")
    a = ap.parse_args(argv)
    sizes = sorted(int(s) for s in a.sizes.split(","))
    os.makedirs(a.workdir, exist_ok=True)
    base = make_base(a.workdir, sizes[-1])
    load_start = [round(x, 2) for x in os.getloadavg()]
    rows = [measure(base, a.workdir, n, a.procs, a.job_args.split()) for n in sizes]
    rss = [r["peak_rss_mb"] for r in rows]
    figures = {
        "sizes": rows,
        "rss_growth_smallest_to_largest": round(rss[-1] / rss[0] - 1, 3),
        "projection": project(rows),
        "note": "ratios are taken within this run; whether other work shared the cores: "
        "machine.load_average at the end, load_average_start here",
        "load_average_start": load_start,
    }
    print(json.dumps(figures, indent=1))
    _record.write(a.json, figures)
    if not a.keep:
        shutil.rmtree(a.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
