"""Planning at archive size: ingest's listing and done-set, and the catalogue's pending listing.

    .venv/bin/python benchmarks/bench_planning.py --sizes 10000 100000 1000000 --json
    .venv/bin/python benchmarks/bench_planning.py --sizes 2000 --code ../before   # quick, + peer

Layout: N THEMIS minute files (`pipeline.synth.codes.archive_relpaths`: 4 sites,
stream0/YYYY/MM/DD/SITE_themis19/utHH/<minute>.pgm.gz, 60 a folder). Planning opens no archive
file and no shard (it lists names, sizes and mtimes, and reads the segment table's `file` and
`shard_mtime` columns), so the archive files and the shards are empty stand-ins; the segment table
is real (Delta log + one Parquet segment, one row per file: the done-set reads one (file,
shard_mtime) pair per file, so 20 rows a file would only add to a group-by that dedups them).

States of the output, each measured in a fresh process per code tree (`--code`: this checkout,
and e.g. a copy of the commit before, side by side in the same run):
  fresh      no output yet: a first backfill plans all N files;
  pending    N shards written by ingest, not compacted: every file is done;
  compacted  the same N shards compacted into the segment table and left on disk for the
             grace period (vacuum has not run): every file is done. Also timed here:
             `open_catalogue` (what search/benchmark/export open) and compaction's own plan.

Figures per (state, code): wall seconds of the operation, its CPU seconds (user + system: on a
shared machine, less dependent on what else runs than the wall time), the process's peak RSS
(VmHWM: ru_maxrss would keep the bench's own RSS across fork and exec, a floor that hid
smaller peaks before 2026-12-07's re-plan rows) and its RSS after imports (so peak - base is
what planning itself holds). Growth:
the ratio of seconds (and of peak - base) from one size to the next, against the 10x in files.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _record  # noqa: E402

MODEL = "c" * 64

CHILD = r"""
import json, resource, sys, time
op, archive, out = sys.argv[1:4]
from pipeline.ingest.config import SourceOptions
from pipeline.ingest import plan as ingest_plan
from pipeline.codes import catalogue, store
from pipeline import storage
import deltalake  # noqa: F401  (imported by every state's work; not charged to it)
def rss_mb(field="VmRSS:"):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
base = rss_mb()
ru0 = resource.getrusage(resource.RUSAGE_SELF)
cpu0 = ru0.ru_utime + ru0.ru_stime
t0 = time.perf_counter()
if op == "plan":
    p = ingest_plan.plan_files(SourceOptions(source=archive, out=out), "MODEL", {}, {})
    what = {"todo": len(p.todo), "skipped": p.skipped, "seen": p.seen}
elif op == "catalogue":
    cat = catalogue.open_catalogue(store.model_prefix(out, "MODEL"))
    what = {"parts": len(cat.parts), "pending": len(cat.pending)}
else:  # compaction's plan: its planner's units, a group at a time (writes nothing)
    from pipeline.codes import compact
    from pipeline.codes.compact_plan import Planner
    from pipeline.codes.segments import SegmentTable
    root = storage.location(store.model_prefix(out, "MODEL"))
    seg = SegmentTable(root).state(with_files=False)
    planner = Planner(root, seg, compact.DEFAULT_TARGET_ROWS, compact.DEFAULT_GROUP_DEPTH)
    what = {"units": sum(1 for _ in planner.units()), "pending": planner.shards}
sec = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_SELF)
cpu = ru.ru_utime + ru.ru_stime - cpu0
peak = rss_mb("VmHWM:")  # this process's own high-water mark (ru_maxrss keeps the parent's)
fig = {"seconds": sec, "cpu_s": round(cpu, 3), "peak_mb": peak, "base_mb": base}
print(json.dumps({**fig, **what}))
""".replace("MODEL", MODEL)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def touch_all(root: Path, rels: list[str], suffix: str = "") -> None:
    """Empty files at root/rel+suffix: hard links to one empty file (one system call each;
    listing stats each name all the same), folders made once each."""
    root.mkdir(parents=True, exist_ok=True)
    made = set()
    for i, rel in enumerate(rels):
        if i % 60_000 == 0:  # a file takes at most 65,000 links (ext4)
            seed = root / f".seed-{i}"
            seed.touch()
        p = f"{root}/{rel}{suffix}"
        d = os.path.dirname(p)
        if d not in made:
            os.makedirs(d, exist_ok=True)
            made.add(d)
        os.link(seed, p)


def build(work: Path, n: int, shards: bool = True) -> tuple[Path, Path, list[str]]:
    """The archive and an output with N stand-in shards (pending: as ingest leaves them), or
    no output (shards=False)."""
    from pipeline.codes import store
    from pipeline.synth.codes import archive_relpaths

    rels = archive_relpaths(n)
    archive, out = work / "archive", work / "out"
    if work.exists():
        shutil.rmtree(work)
    t0 = time.perf_counter()
    touch_all(archive, rels)
    time.sleep(0.05)  # shards strictly newer than their archive files
    if shards:
        prefix = Path(store.model_prefix(str(out), MODEL))
        touch_all(prefix, rels, store.SHARD_SUFFIX)
        real_shard(prefix, min(rels))
        mark_pending(prefix, rels)
    log(f"built {n:,} archive files and shards in {time.perf_counter() - t0:.1f} s")
    return archive, out, rels


def real_shard(prefix: Path, rel: str) -> None:
    """One real shard, the first in canonical order: with no segment table yet, the catalogue
    takes the model's metadata from its footer (the only shard it opens)."""
    from pipeline.codes import store
    from pipeline.synth.codes import write_code_shards

    write_code_shards(str(prefix.parent.parent / "one"), [rel], model=MODEL, threads=1)
    one = Path(store.model_prefix(str(prefix.parent.parent / "one"), MODEL))
    os.replace(one / (rel + store.SHARD_SUFFIX), prefix / (rel + store.SHARD_SUFFIX))
    shutil.rmtree(prefix.parent.parent / "one")


def pending_module():
    """`pipeline.codes.pending` where the checkout that builds the data has it, else None."""
    try:
        from pipeline.codes import pending
    except ImportError:
        return None
    return pending


def mark_pending(prefix: Path, rels: list[str]) -> None:
    """What ingest records beside its shards (its pending marks), where this checkout does."""
    from pipeline import storage

    marks = pending_module()
    if marks is not None:
        marks.mark(storage.location(str(prefix)), rels)


def compact_standins(out: Path, rels: list[str] | None = None) -> None:
    """Record every stand-in shard in a real segment table (one row a file), as compaction
    would, and leave the shards in place (the grace period); then retire the pending marks.
    With `rels` (no shards were made): record those files, as if compacted and vacuumed."""
    import numpy as np
    import pyarrow as pa

    from pipeline import storage
    from pipeline.codes import catalogue, segments, store
    from pipeline.codes.segments import SegmentTable

    root = storage.location(store.model_prefix(str(out), MODEL))
    marks = pending_module()
    entries = (marks or catalogue).__dict__.get("list_all_shard_entries", None)
    if rels is None:
        entries = (entries or catalogue.list_shard_entries)(root)
        files = [catalogue.shard_relpath(u, root.uri) for u in entries]
        mtimes = np.array([m for m, _ in entries.values()], np.float64)
    else:
        files, mtimes = sorted(rels), np.full(len(rels), time.time())
    n = len(files)
    schema = segments.segment_schema()
    cols = {f.name: pa.nulls(n, f.type) for f in schema}
    cols["segment"] = pa.array(["v000001-0000-bench"] * n)
    cols["file"] = pa.array(files, pa.string())
    cols["frame"] = pa.array(np.zeros(n, np.int32))
    cols["id"] = pa.array([f + "#0" for f in files], pa.string())
    cols["shard_mtime"] = pa.array(mtimes)
    data = pa.table(cols, schema=schema)
    table = SegmentTable(root)
    table.create(store.ShardMeta(nbits=64, model=MODEL, classes=tuple(f"c{i}" for i in range(10))))
    writer = segments.SegmentWriter(table.loc, "v000001-0000-bench")  # rows in canonical order
    writer.write(data.remove_column(0))  # `segment` is the partition, not a column
    table.commit([writer.close()], [], 0, files=n)
    if marks is not None:
        marks.retire(root)


def measure(code: Path, op: str, archive: Path, out: Path, timeout: float) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code), PYTHONDONTWRITEBYTECODE="1")
    argv = [sys.executable, "-c", CHILD, op, str(archive), str(out)]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, cwd=code)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish in {timeout:.0f} s"}
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed"}
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["process_s"] = round(time.perf_counter() - t0, 2)
    res["seconds"] = round(res["seconds"], 3)
    res["peak_mb"], res["base_mb"] = round(res["peak_mb"], 1), round(res["base_mb"], 1)
    return res


def run_size(n: int, work: Path, codes: dict, timeout: float, max_shards: int) -> dict:
    shards = n <= max_shards
    archive, out, rels = build(work, n, shards)
    res = {"files": n, "shards_left_on_storage": shards}
    ops = ("plan", "catalogue", "compact_plan")
    states = (("fresh", None), ("pending", ops), ("compacted", ops))
    if not shards:  # the output only as segments (compacted and vacuumed)
        states = (("fresh", None), ("compacted", ("plan", "catalogue")))
    for state, ops in states:
        if state == "compacted":
            t0 = time.perf_counter()
            compact_standins(out, None if shards else rels)
            log(f"recorded {n:,} files in the segment table in {time.perf_counter() - t0:.1f} s")
        target = work / "none" if state == "fresh" else out
        for op in ops or ("plan",):
            for name, code in codes.items():
                r = measure(code, op, archive, target, timeout)
                res.setdefault(state, {}).setdefault(op, {})[name] = r
                log(f"{n:>9,} {state:9} {op:12} {name:8} {json.dumps(r)}")
    shutil.rmtree(work, ignore_errors=True)
    return res


def growth(results: list[dict]) -> dict:
    """Per (state, op, code): seconds and (peak - base) ratios between consecutive sizes."""
    out = {}
    for a, b in zip(results, results[1:], strict=False):
        key = f"{a['files']}->{b['files']}"
        for state in ("fresh", "pending", "compacted"):
            for op, by_code in a.get(state, {}).items():
                for code, ra in by_code.items():
                    rb = b[state][op].get(code, {})
                    if "error" in ra or "error" in rb:
                        continue
                    mem_a = max(ra["peak_mb"] - ra["base_mb"], 1.0)
                    out.setdefault(f"{state}/{op}/{code}", {})[key] = {
                        "time_x": round(rb["seconds"] / max(ra["seconds"], 1e-3), 2),
                        "memory_x": round((rb["peak_mb"] - rb["base_mb"]) / mem_a, 2),
                    }
    return out


def markdown(results: list[dict], codes: dict) -> str:
    rows = ["| files | state | operation | code | seconds | peak RSS MB (after imports) |"]
    rows.append("| ---: | --- | --- | --- | ---: | ---: |")
    for r in results:
        for state in ("fresh", "pending", "compacted"):
            for op, by_code in r.get(state, {}).items():
                for code in codes:
                    x = by_code.get(code, {})
                    head = f"| {r['files']:,} | {state} | {op} | {code} |"
                    if "error" in x:
                        rows.append(f"{head} {x['error']} | |")
                        continue
                    fig = f"{x['seconds']:.2f} | {x['peak_mb']:.0f} ({x['base_mb']:.0f})"
                    rows.append(f"{head} {fig} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--workdir", default="/tmp/aurorahash-bench-planning")
    ap.add_argument(
        "--code",
        action="append",
        default=[],
        metavar="[NAME=]DIR",
        help="another code tree to measure side by side (e.g. before=../old-checkout)",
    )
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per measurement")
    ap.add_argument(
        "--max-shards",
        type=int,
        default=200_000,
        help="above this size no stand-in shards are made: states fresh and compacted "
        "(segments only, as after vacuum)",
    )
    _record.add_json_argument(ap, "planning")
    args = ap.parse_args(argv)
    codes = {"this": ROOT}
    for c in args.code:
        name, _, path = c.rpartition("=")
        codes[name or Path(path).name] = Path(path).resolve()
    results = []
    for n in args.sizes:
        work = Path(args.workdir) / str(n)
        results.append(run_size(n, work, codes, args.timeout, args.max_shards))
    figures = {"sizes": results, "growth": growth(results), "codes": list(codes)}
    table = markdown(results, codes)
    print(table)
    print(json.dumps(figures))
    _record.write(args.json, figures, argv, notes="cores shared with other work")
    return 0


if __name__ == "__main__":
    sys.exit(main())
