"""Compaction: merge committed per-file code shards into large search segments.

Why: ingest commits one shard per archive file (20 codes for a THEMIS minute), which is right for
exactly-once ingest and wrong for search: a year is millions of files. `compact` folds the shards
not yet compacted into segments of `target_rows` codes (a Delta Lake table under
`OUT/<model12>/_segments`, see `pipeline.codes.catalogue`), cutting only between nights (the first
`group_depth` folders of the archive path) unless a night alone exceeds twice the target.

Streaming (a first compaction of a year is millions of shards): the pending shards are listed a
group at a time and cut into units of whole groups of about `target_rows` rows each
(`compact_plan`); each unit streams its shards into
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

import itertools
import logging
import os
import time
from dataclasses import dataclass, field

from pipeline import storage
from pipeline.codes import catalogue, compact_runners
from pipeline.codes.compact_plan import Planner
from pipeline.codes.compact_unit import Job, Unit, group_key, run_unit, should_cut
from pipeline.codes.segments import SegmentTable
from pipeline.errors import BadInput
from pipeline.progress import Progress
from pipeline.storage import Location

log = logging.getLogger("aurorahash.compact")

DEFAULT_TARGET_ROWS = 2_000_000
DEFAULT_GROUP_DEPTH = 4  # stream0/YYYY/MM/DD: one night of every camera
BATCH_SEGMENTS = 8  # a commit once the written units hold this many segments' worth of rows


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

    def take(self, res: dict, unit: Unit) -> None:
        self.adds += res["adds"]
        self.replaced += list(unit.rewrite)
        self.files += res["files"]
        self.rows += res["rows"]


def _commit(table: SegmentTable, batch: _Batch, read_version: int) -> int:
    """One atomic commit of a batch: it adds the units' segment files and removes the segments
    they replace (`SegmentTable.commit`: a concurrent compaction's commit fails). Killed before
    the commit, the written files are orphans that no reader sees (vacuum deletes them)."""
    fault_point("compact:before-commit")
    version = table.commit(batch.adds, batch.replaced, read_version, files=batch.files)
    fault_point("compact:after-commit")
    return version


def fault_point(name: str) -> None:
    """Crash here when $AURORAHASH_FAULT names this point (tests of killed runs)."""
    if os.environ.get("AURORAHASH_FAULT") == name:
        log.error("fault injected at %s", name)
        os._exit(137)


# ---------------------------------------------------------------------------------- job


def _start(table: SegmentTable, target_rows: int, depth: int):
    """(planner, its units, the version to commit on), after creating the table (first run) or
    adding columns newer shards have; None when nothing is pending."""
    seg = table.state(with_files=False)
    planner = Planner(table.root, seg, target_rows, depth)
    units = planner.units()
    first = next(units, None)
    if first is None:
        return None
    if seg.version is None:
        table.create(planner.meta)
        if table.state(with_files=False).version != 0:  # another run committed first
            return _start(table, target_rows, depth)
        return planner, itertools.chain([first], units), 0
    if table.add_missing_columns():
        return _start(table, target_rows, depth)
    return planner, itertools.chain([first], units), seg.version


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
        started = _start(table, target_rows, group_depth)
        if started is None:
            break
        planner, units, version = started
        log.info("compact %s: units of whole groups on %s", root.uri, runner.name)
        job = Job(root, planner.meta, target_rows, group_depth, version, read_threads)
        committed = totals.commits
        try:
            _run_units(table, job, units, runner, batch_rows, totals)
            break
        except CommitFailedError as exc:
            failures = 1 if totals.commits > committed else failures + 1
            if failures > retries:
                raise
            log.warning("compact: another writer committed first (%s); planning again", exc)
    if not totals.commits:
        log.info("compact %s: nothing new", root.uri)
    return totals.summary(root)


def _run_units(table: SegmentTable, job: Job, units, runner, batch_rows: int, totals) -> None:
    """Run the units as the planner yields them; commit their segments whenever a batch holds
    `batch_rows` rows, and at the end."""
    progress = Progress("compact", total=None, unit="shards")  # the plan streams
    version, batch, taken = job.version, _Batch(), {}

    def calls():
        for u in units:
            taken[u.index] = u
            progress.plan(len(u.shards))
            yield job, u
        progress.planned()

    for res in runner.run(run_unit, calls()):
        batch.take(res, taken.pop(res["index"]))
        totals.nodes.add(res["node"])
        totals.workers.add((res["node"], res["pid"]))
        progress.advance(res["files"], res["rows"])
        if batch.rows >= batch_rows:
            version = _commit(table, batch, version)
            totals.add(batch, version)
            batch = _Batch()
    if batch.adds or batch.replaced:
        version = _commit(table, batch, version)
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
