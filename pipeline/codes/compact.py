"""Compaction: merge committed per-file code shards into large search segments.

Why: ingest commits one shard per archive file (20 codes for a THEMIS minute), which is right for
exactly-once ingest and wrong for search: a year is millions of files. `compact` folds the shards
not yet compacted into segments of `target_rows` codes (a Delta Lake table under
`OUT/<model12>/_segments`, see `pipeline.codes.catalogue`), cutting only between nights (the first
`group_depth` folders of the archive path) unless a night alone exceeds twice the target.

Guarantees:
- Atomic: one Delta commit adds the new segments and removes the ones they replace; a killed run
  leaves readers on the previous version (its half-written files are orphans, see `vacuum`).
- Incremental: only shards that are new, or rewritten since they were compacted (re-ingested
  files), are read. Segments are rewritten only when they hold a re-ingested file, when new files
  fall inside their range, or (the last one) while it is below the target.
- Exactly once: every file's rows come from one place; a re-ingested file's old rows are removed
  in the same commit that adds its new ones. Rows stay in canonical (file, frame) order.
- Concurrent runs: each commit carries an application transaction version, so of two runs that
  read the same table version only the first commits; the other re-plans (up to 3 times).

The table itself (create, schema, files, commit) is `segments.SegmentTable`; this module decides
what to read, how to cut it into segments, and when to retry.
"""

from __future__ import annotations

import bisect
import logging
import os
import posixpath
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import storage
from pipeline.codes import catalogue, segments, store
from pipeline.codes.segments import Segment, SegmentTable
from pipeline.errors import BadInput
from pipeline.progress import Progress
from pipeline.storage import Location

log = logging.getLogger("aurorahash.compact")

DEFAULT_TARGET_ROWS = 2_000_000
DEFAULT_GROUP_DEPTH = 4  # stream0/YYYY/MM/DD: one night of every camera


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


# ---------------------------------------------------------------------------------- reading


def _read_pending(p: Plan, progress: Progress, threads: int) -> pa.Table | None:
    """Every pending shard as one table with its `file` and `shard_mtime` columns."""
    columns = list(store.all_columns())  # `meta`: null from older shards

    def load(uri):
        t = store.read_shard(p.root.at(uri), columns=columns)
        m = store.ShardMeta.from_kv(t.schema.metadata, where=uri)
        if not p.meta.compatible(m):
            raise BadInput(
                f"{uri}: nbits/model/classes differ from the other codes of {p.root.uri}"
            )
        return t.replace_schema_metadata(None)

    items = sorted(p.pending.items(), key=lambda it: it[1][0])  # canonical (file) order
    batches, tables, counts = [], [], []
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for t in pool.map(load, [u for u, _ in items]):
            tables.append(t)
            counts.append(t.num_rows)
            progress.advance(1, t.num_rows)
            if len(tables) == 1000:  # one contiguous chunk per 1,000 shards: small tables
                batches.append(pa.concat_tables(tables).combine_chunks())  # cost ~1 kB each
                tables = []
    if tables:
        batches.append(pa.concat_tables(tables).combine_chunks())
    if not batches:
        return None
    counts = np.array(counts)
    t = pa.concat_tables(batches)
    idx = pa.array(np.repeat(np.arange(len(items), dtype=np.int32), counts))
    rels = pa.array([rel for _, (rel, _, _) in items], pa.string())
    mtimes = np.array([np.nan if m is None else m for _, (_, m, _) in items], np.float64)
    t = t.set_column(t.column_names.index("code"), "code", pc.cast(t["code"], pa.binary()))
    t = t.append_column("file", pa.DictionaryArray.from_arrays(idx, rels).cast(pa.string()))
    return t.append_column("shard_mtime", pa.array(np.repeat(mtimes, counts)))


def _read_rewritten(p: Plan) -> list[pa.Table]:
    out = []
    cols = segments.file_schema().names
    for s in p.rewrite:
        t = segments.read_parquet(p.root.at(s.uri), columns=cols)
        stale = set(p.drop) | {rel for rel, _, _ in p.pending.values()}
        keep = pc.invert(pc.is_in(t.column("file"), pa.array(sorted(stale), pa.string())))
        out.append(t.filter(keep))
    return out


# ---------------------------------------------------------------------------------- cutting


def group_key(relpath: str, depth: int) -> str:
    """The night (or other group) a file belongs to: its first `depth` folders."""
    return "/".join(posixpath.dirname(relpath).split("/")[:depth])


def cut_segments(files: list[str], rows: list[int], target: int, depth: int) -> list[int]:
    """Start indices (into `files`, canonical order) of the segments: cut at a group boundary
    once a segment has `target` rows, or anywhere once it has twice that."""
    starts, acc = [0], 0
    for i, (f, n) in enumerate(zip(files, rows, strict=True)):
        new_group = i > 0 and group_key(f, depth) != group_key(files[i - 1], depth)
        if i > starts[-1] and acc >= target and (new_group or acc >= 2 * target):
            starts.append(i)
            acc = 0
        acc += n
    return starts


def _segment_table(tables: list[pa.Table], target: int, depth: int, version: int) -> pa.Table:
    t = pa.concat_tables(tables, promote_options="permissive")
    if not _is_canonical(t):  # pending shards are read in order; merging segments needs a sort
        t = t.take(pc.sort_indices(t, [("file", "ascending"), ("frame", "ascending")]))
    counts = t.group_by("file", use_threads=False).aggregate([([], "count_all")])
    counts = counts.take(pc.sort_indices(counts, [("file", "ascending")]))
    files = counts.column("file").to_pylist()
    starts = cut_segments(files, counts.column("count_all").to_pylist(), target, depth)
    tag = uuid.uuid4().hex[:8]
    names = np.empty(len(files), dtype=object)
    bounds = [*starts, len(files)]
    for j in range(len(starts)):
        names[bounds[j] : bounds[j + 1]] = f"v{version:06d}-{j:04d}-{tag}"
    row_seg = pa.array(names).take(_file_index(t.column("file"), files))
    return t.append_column("segment", row_seg).select(segments.segment_schema().names)


def _is_canonical(t: pa.Table) -> bool:
    """Rows already in (file, frame) order: file non-decreasing, frame rising within a file."""
    if t.num_rows < 2:
        return True
    f, fr = t.column("file"), t.column("frame")
    f0, f1 = f.slice(0, t.num_rows - 1), f.slice(1)
    fr0, fr1 = fr.slice(0, t.num_rows - 1), fr.slice(1)
    same = pc.equal(f0, f1)
    ok = pc.or_(pc.less(f0, f1), pc.and_(same, pc.less(fr0, fr1)))
    return bool(pc.all(ok).as_py())


def _file_index(col, files: list[str]) -> pa.Array:
    return pc.index_in(col, value_set=pa.array(files, pa.string()))


# ---------------------------------------------------------------------------------- commit


def _commit(p: Plan, data: pa.Table) -> int:
    """Write the new segment files, then one atomic commit that adds them and removes the
    segments they replace (`SegmentTable.commit`: a concurrent compaction's commit fails).
    Killed before the commit, the written files are orphans that no reader sees (vacuum
    deletes them)."""
    adds = p.table.write_files(data)
    fault_point("compact:before-commit")
    version = p.table.commit(adds, p.rewrite, p.version, files=len(p.pending))
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
) -> dict:
    """Compact one model's pending shards under `where` into segments; returns a summary."""
    if target_rows < 1:
        raise BadInput(f"target rows must be >= 1, got {target_rows}")
    from deltalake.exceptions import CommitFailedError

    loc = storage.location(where)
    root = catalogue.resolve_root(loc, model)
    if not root.exists():
        raise BadInput(f"{loc.uri}: not found")
    table = SegmentTable(root)
    read_threads = read_threads or (4 if root.is_local else 16)
    t0 = time.perf_counter()
    for attempt in range(retries + 1):
        p = _plan_on_table(table, target_rows)
        if p is None:
            log.info("compact %s: nothing new", root.uri)
            return _summary(root, t0)
        log.info(
            "compact %s: %d shards to add, %d segments to rewrite",
            *(root.uri, len(p.pending), len(p.rewrite)),
        )
        progress = Progress("compact", total=len(p.pending), unit="shards")
        pending = _read_pending(p, progress, read_threads)
        tables = [t for t in [pending, *_read_rewritten(p)] if t is not None]
        data = _segment_table(tables, target_rows, group_depth, p.version + 1)
        try:
            version = _commit(p, data)
            break
        except CommitFailedError as exc:
            if attempt == retries:
                raise
            log.warning("compact: another writer committed first (%s); planning again", exc)
    progress.done()
    return _summary(root, t0, p, data, version)


def _summary(root: Location, t0: float, p: Plan | None = None, data=None, version=None) -> dict:
    seconds = time.perf_counter() - t0
    if p is None:
        keys = ("files", "rows", "segments_written", "segments_replaced")
        return {"root": root.uri, **dict.fromkeys(keys, 0), "seconds": round(seconds, 3)}
    return {
        "root": root.uri,
        "version": version,
        "files": len(p.pending),
        "rows": data.num_rows,
        "segments_written": len(pc.unique(data.column("segment"))),
        "segments_replaced": len(p.rewrite),
        "seconds": round(seconds, 3),
        "shards_per_s": round(len(p.pending) / max(seconds, 1e-9), 1),
    }
