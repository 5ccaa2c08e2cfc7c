"""Compaction: merge committed per-file code shards into large search segments.

Why: ingest commits one shard per archive file (20 codes for a THEMIS minute), which is right for
exactly-once ingest and wrong for search: a year is millions of files. `compact` folds the shards
not yet compacted into segments of `target_rows` codes (a Delta Lake table under
`OUT/<model12>/_segments`, see `pipeline.codes.catalogue`), cutting only between nights (the first
`group_depth` folders of the archive path) unless a night alone exceeds twice the target.

Streaming (a first compaction of a year is millions of shards): the plan is cut into units of
whole groups of about `target_rows` rows each (`make_units`); each unit streams its shards into
segment files in bounded memory (`compact_unit`), in this process, in local worker processes or
as Ray tasks across a cluster (`compact_runners`). The driver commits the units' segments in
batches of about `batch_rows` rows, each batch one atomic commit.

Guarantees:
- Atomic: one Delta commit per batch adds its new segments and removes the ones they replace; a
  killed run leaves readers on the last committed batch (its half-written files are orphans, see
  `vacuum`), and the next run re-plans what is still pending.
- Incremental: only shards that are new, or rewritten since they were compacted (re-ingested
  files), are read. Segments are rewritten only when they hold a re-ingested file, when new files
  fall inside their range, or (the last one) while it is below the target.
- Exactly once: every file's rows come from one place; a re-ingested file's old rows are removed
  in the same commit that adds its new ones (a segment and the shards inside its range are in one
  unit). Rows stay in canonical (file, frame) order.
- Concurrent runs: each commit carries an application transaction version, so of two runs that
  committed on the same table version only the first commits; the other re-plans what is left
  (up to 3 times in a row without a commit of its own).

The table itself (create, schema, files, commit) is `segments.SegmentTable`; this module decides
what to read, how to cut it into units and segments, and when to retry.
"""

from __future__ import annotations

import bisect
import logging
import os
import time
from dataclasses import dataclass, field

import pyarrow.parquet as pq

from pipeline import storage
from pipeline.codes import catalogue, compact_runners, store
from pipeline.codes.compact_unit import Job, Unit, group_key, run_unit
from pipeline.codes.segments import Segment, SegmentTable
from pipeline.errors import BadInput
from pipeline.progress import Progress
from pipeline.storage import Location

log = logging.getLogger("aurorahash.compact")

DEFAULT_TARGET_ROWS = 2_000_000
DEFAULT_GROUP_DEPTH = 4  # stream0/YYYY/MM/DD: one night of every camera
BATCH_SEGMENTS = 8  # a commit once the written units hold this many segments' worth of rows
UNSIZED_SHARD_ROWS = 20  # row estimate of a shard on a store that reports no sizes


@dataclass
class Plan:
    table: SegmentTable
    meta: store.ShardMeta
    pending: dict  # shard uri -> (relpath, mtime, size)
    rewrite: list[Segment]  # segments to rewrite (minus their dropped files)
    drop: set  # files whose segment rows are replaced by a pending shard
    version: int | None

    @property
    def root(self) -> Location:
        return self.table.root


def plan(table: SegmentTable, target_rows: int = DEFAULT_TARGET_ROWS) -> Plan | None:
    """What to compact now: None when every shard is already in the segments."""
    seg = table.state()
    entries = catalogue.list_shard_entries(table.root)
    pending, drop = catalogue.pending_shards(table.root.uri, entries, seg.recorded)
    if not pending:
        return None
    meta = seg.meta or store.shard_meta(table.root.at(next(iter(pending))))
    rels = sorted(rel for rel, _, _ in pending.values())
    rewrite = []
    last = max(seg.segments, key=lambda s: s.hi, default=None)
    for s in seg.segments:
        holds_dropped = any(seg.recorded[f][1] == s.name for f in drop)
        inside = _any_between(rels, s.lo, s.hi)
        small_last = s is last and s.rows < target_rows and rels[-1] > s.hi
        if holds_dropped or inside or small_last:
            rewrite.append(s)
    return Plan(table, meta, pending, rewrite, drop, seg.version)


def _any_between(sorted_rels: list[str], lo: str, hi: str) -> bool:
    i = bisect.bisect_left(sorted_rels, lo)
    return i < len(sorted_rels) and sorted_rels[i] <= hi


# ---------------------------------------------------------------------------------- units


def make_units(p: Plan, target_rows: int, depth: int) -> list[Unit]:
    """Cut the plan into units of whole groups, about `target_rows` (estimated) each, in
    canonical order: a unit closes at a group boundary once it has `target_rows`, anywhere once
    it has twice that, never inside a rewritten segment's range (its rows go to one unit)."""
    per_byte = _rows_per_byte(p)
    items = [
        (rel, rel, _estimate(size, per_byte), (uri, rel, m))
        for uri, (rel, m, size) in p.pending.items()
    ]
    items += [(s.lo, s.hi, s.rows, s) for s in p.rewrite]
    items.sort(key=lambda it: (it[0], it[1]))
    units, shards, rewrite, rows, hi = [], [], [], 0, None
    for lo, top, n, item in items:
        if (
            hi is not None
            and lo > hi
            and rows
            and should_cut(rows, target_rows, group_key(lo, depth) != group_key(hi, depth))
        ):
            units.append(Unit(len(units), tuple(shards), tuple(rewrite), rows))
            shards, rewrite, rows = [], [], 0
        (rewrite if isinstance(item, Segment) else shards).append(
            item.uri if isinstance(item, Segment) else item
        )
        rows += n
        hi = top if hi is None else max(hi, top)
    if shards or rewrite:
        units.append(Unit(len(units), tuple(shards), tuple(rewrite), rows))
    return units


def _rows_per_byte(p: Plan, sample: int = 8) -> float | None:
    """Rows per shard byte, from the footers of a few pending shards spread over the plan (minute
    shards are alike; the catalogue's fixed estimate is off 5x for 20-row shards)."""
    uris = list(p.pending)
    picks = [
        uris[i]
        for i in sorted({round(j * (len(uris) - 1) / max(1, sample - 1)) for j in range(sample)})
    ]
    rows = size = 0
    for u in picks:
        sz = p.pending[u][2]
        if not sz:
            return None
        with p.root.at(u).open("rb") as f:
            rows += pq.ParquetFile(f).metadata.num_rows
        size += sz
    return rows / size if size else None


def _estimate(size, per_byte: float | None) -> int:
    if per_byte is None:  # a store that reports no sizes
        return UNSIZED_SHARD_ROWS
    return max(1, round(int(size) * per_byte))


# ---------------------------------------------------------------------------------- cutting


def should_cut(rows: int, target: int, new_group: bool) -> bool:
    """The cutting rule: a segment (or unit) of `rows` ends before the next file when it has
    `target` rows and that file starts a new group, or whatever the file once it has twice
    that."""
    return rows >= target and (new_group or rows >= 2 * target)


def cut_segments(files: list[str], rows: list[int], target: int, depth: int) -> list[int]:
    """Start indices (into `files`, canonical order) of the segments `should_cut` makes (what
    a unit does as its rows stream by)."""
    starts, acc = [0], 0
    for i, (f, n) in enumerate(zip(files, rows, strict=True)):
        new_group = i > 0 and group_key(f, depth) != group_key(files[i - 1], depth)
        if i > starts[-1] and should_cut(acc, target, new_group):
            starts.append(i)
            acc = 0
        acc += n
    return starts


# ---------------------------------------------------------------------------------- commit


@dataclass
class _Batch:
    """Units written and not yet committed."""

    adds: list = field(default_factory=list)
    replaced: list = field(default_factory=list)
    files: int = 0
    rows: int = 0

    def take(self, res: dict, unit: Unit, by_uri: dict) -> None:
        self.adds += res["adds"]
        self.replaced += [by_uri[u] for u in unit.rewrite]
        self.files += res["files"]
        self.rows += res["rows"]


def _commit(p: Plan, batch: _Batch, read_version: int) -> int:
    """One atomic commit of a batch: it adds the units' segment files and removes the segments
    they replace (`SegmentTable.commit`: a concurrent compaction's commit fails). Killed before
    the commit, the written files are orphans that no reader sees (vacuum deletes them)."""
    fault_point("compact:before-commit")
    version = p.table.commit(batch.adds, batch.replaced, read_version, files=batch.files)
    fault_point("compact:after-commit")
    return version


def fault_point(name: str) -> None:
    """Crash here when $AURORAHASH_FAULT names this point (tests of killed runs)."""
    if os.environ.get("AURORAHASH_FAULT") == name:
        log.error("fault injected at %s", name)
        os._exit(137)


# ---------------------------------------------------------------------------------- job


def _plan_on_table(table: SegmentTable, target_rows: int):
    """The plan, after creating the table (first run) or adding columns newer shards have."""
    p = plan(table, target_rows)
    if p is not None and p.version is None:
        table.create(p.meta)
        p.version = table.state(with_files=False).version
        if p.version != 0:  # another run created the table and committed first
            p = plan(table, target_rows)
    elif p is not None and table.add_missing_columns():
        p = plan(table, target_rows)
    return p


def compact(
    where: Location | str,
    model: str | None = None,
    target_rows: int = DEFAULT_TARGET_ROWS,
    group_depth: int = DEFAULT_GROUP_DEPTH,
    read_threads: int | None = None,
    retries: int = 3,
    runner=None,
    batch_rows: int | None = None,
) -> dict:
    """Compact one model's pending shards under `where` into segments; returns a summary.

    `runner` (`compact_runners`: in this process by default, local processes or Ray tasks)
    runs the units; their segments are committed a batch at a time, once a batch holds
    `batch_rows` rows (default BATCH_SEGMENTS x target_rows) and at the end."""
    if target_rows < 1:
        raise BadInput(f"target rows must be >= 1, got {target_rows}")
    from deltalake.exceptions import CommitFailedError

    loc = storage.location(where)
    root = catalogue.resolve_root(loc, model)
    if not root.exists():
        raise BadInput(f"{loc.uri}: not found")
    table = SegmentTable(root)
    runner = runner or compact_runners.InProcess()
    batch_rows = batch_rows or BATCH_SEGMENTS * target_rows
    read_threads = read_threads or (4 if root.is_local else 16)
    totals = _Totals(time.perf_counter(), runner.name)
    failures = 0
    while True:
        p = _plan_on_table(table, target_rows)
        if p is None:
            break
        units = make_units(p, target_rows, group_depth)
        log.info(
            "compact %s: %d shards to add, %d segments to rewrite, %d units on %s",
            *(root.uri, len(p.pending), len(p.rewrite), len(units), runner.name),
        )
        job = Job(root, p.meta, target_rows, group_depth, p.version, read_threads)
        committed = totals.commits
        try:
            _run_units(p, job, units, runner, batch_rows, totals)
            break
        except CommitFailedError as exc:
            failures = 1 if totals.commits > committed else failures + 1
            if failures > retries:
                raise
            log.warning("compact: another writer committed first (%s); planning again", exc)
    if not totals.commits:
        log.info("compact %s: nothing new", root.uri)
    return totals.summary(root)


def _run_units(p: Plan, job: Job, units: list[Unit], runner, batch_rows: int, totals) -> None:
    """Run the units; commit their segments whenever a batch holds `batch_rows` rows."""
    by_uri = {s.uri: s for s in p.rewrite}
    progress = Progress("compact", total=len(p.pending), unit="shards")
    version, batch = p.version, _Batch()
    for res in runner.run(run_unit, ((job, u) for u in units)):
        batch.take(res, units[res["index"]], by_uri)
        totals.nodes.add(res["node"])
        totals.workers.add((res["node"], res["pid"]))
        progress.advance(res["files"], res["rows"])
        if batch.rows >= batch_rows:
            version = _commit(p, batch, version)
            totals.add(batch, version)
            batch = _Batch()
    if batch.adds or batch.replaced:
        version = _commit(p, batch, version)
        totals.add(batch, version)
    progress.done()


@dataclass
class _Totals:
    """What a run committed, over its batches (and re-plans)."""

    t0: float
    runner: str
    version: int | None = None
    commits: int = 0
    files: int = 0
    rows: int = 0
    written: int = 0
    replaced: int = 0
    nodes: set = field(default_factory=set)  # where units ran
    workers: set = field(default_factory=set)  # (node, pid)

    def add(self, batch: _Batch, version: int) -> None:
        self.version, self.commits = version, self.commits + 1
        self.files += batch.files
        self.rows += batch.rows
        self.written += len(batch.adds)
        self.replaced += len(batch.replaced)

    def summary(self, root: Location) -> dict:
        seconds = time.perf_counter() - self.t0
        out = {
            "root": root.uri,
            "files": self.files,
            "rows": self.rows,
            "segments_written": self.written,
            "segments_replaced": self.replaced,
            "seconds": round(seconds, 3),
        }
        if self.commits:
            out.update(
                version=self.version,
                commits=self.commits,
                runner=self.runner,
                nodes=len(self.nodes),
                workers=len(self.workers),
                shards_per_s=round(self.files / max(seconds, 1e-9), 1),
            )
        return out
