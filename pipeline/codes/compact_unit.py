"""One unit of compaction: a contiguous range of the canonical order, streamed into segments.

Why units: a first compaction of a year is millions of shards; held at once they cost GBs. A
unit is whole groups (nights) of pending shards plus the segments they rewrite. It runs anywhere
(this process, a local worker process, a Ray task on any node): it reads its shards in order a
few at a time, merges them with the kept rows of the segments it rewrites, and writes segment
files a row group at a time (`segments.SegmentWriter`). So its memory is about one row group
plus the rewritten segments (at most one segment's worth of rows each), whatever is pending.

It commits nothing: it returns its files' add records; the driver (`pipeline.codes.compact`)
commits them in batches. Cutting is the rule of `compact.cut_segments`, applied as rows stream
by: at a group boundary once a segment has `target` rows, anywhere once it has twice that.
"""

from __future__ import annotations

import collections
import os
import posixpath
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.codes import segments, store
from pipeline.codes.segments import SegmentWriter
from pipeline.errors import BadInput
from pipeline.storage import Location

BLOCK_SHARDS = 1000  # shards converted to the segment schema together (per-shard work is slow)


@dataclass(frozen=True)
class Unit:
    """What one worker compacts: pending shards (relpath, mtime) and the segments whose
    rows it merges with them, all inside [lo, hi] of the canonical order."""

    index: int
    shards: tuple  # ((relpath, mtime or None), ...) in relpath order; URIs by `shard_at`
    rewrite: tuple  # segments.Segment to rewrite (minus the files `shards` replace)
    rows: int  # estimated rows (shards from their sizes, segments exactly)


@dataclass(frozen=True)
class Job:
    """The settings every unit of one run shares."""

    root: Location  # OUT/<model12>
    meta: store.ShardMeta
    target: int  # rows per segment
    depth: int  # group depth (folders of the relpath)
    version: int  # the table version the run planned on (segment names carry version + 1)
    read_threads: int = 4


def group_key(relpath: str, depth: int) -> str:
    """The night (or other group) a file belongs to: its first `depth` folders."""
    return "/".join(posixpath.dirname(relpath).split("/")[:depth])


def should_cut(rows: int, target: int, new_group: bool) -> bool:
    """The cutting rule: a segment (or unit) of `rows` ends before the next file when it has
    `target` rows and that file starts a new group, or whatever the file once it has twice
    that."""
    return rows >= target and (new_group or rows >= 2 * target)


def run_unit(job: Job, unit: Unit) -> dict:
    """Compact one unit into segment files; returns {index, adds, files, rows, node, pid}."""
    table = job.root.child(segments.SEGMENTS_DIR)
    tag = f"v{job.version + 1:06d}-{unit.index:05d}-{uuid.uuid4().hex[:8]}"
    out = _Cutter(table, tag, job.target, job.depth)
    try:
        stale = {rel for rel, _ in unit.shards}
        kept = _kept_rows(job.root, [s.uri for s in unit.rewrite], stale)
        for block in _blocks(_merged(kept, _shards_in_order(job, unit))):
            out.write_block(block)
        adds = out.close()
    except BaseException:
        out.abort()
        raise
    return {
        "index": unit.index,
        "adds": adds,
        "files": len(unit.shards),
        "rows": sum(a["rows"] for a in adds),
        "node": _node(),
        "pid": os.getpid(),
    }


def _node() -> str:
    """The Ray node this runs on (its hostname outside Ray): tests check where units ran.
    Ray is not imported for this (seconds): a Ray worker has it already."""
    import socket
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return ray.get_runtime_context().get_node_id()

    return socket.gethostname()


# ---------------------------------------------------------------------------------- reading


def shard_at(root: Location, relpath: str) -> str:
    """The URI of a pending shard from its relpath (`store.shard_uri`'s layout): a unit holds
    relpaths only, half the memory per shard of a backfill's plan."""
    return f"{root.uri}/{relpath}{store.SHARD_SUFFIX}"


def _read_shard(job: Job, uri: str) -> pa.Table:
    # its own columns: a missing optional one is filled in per block (`_shard_rows`), not here
    t, m = store.read_shard_meta(job.root.at(uri))
    store.check_columns(t, where=uri)
    if not job.meta.compatible(m):
        raise BadInput(f"{uri}: nbits/model/classes differ from the other codes of {job.root.uri}")
    return t.replace_schema_metadata(None)


def _shards_in_order(job: Job, unit: Unit):
    """(relpath, mtime, table) of the unit's shards in order, read by a few threads with a
    bounded window ahead (Executor.map would read them all at once)."""
    window = 4 * job.read_threads
    with ThreadPoolExecutor(max_workers=job.read_threads) as pool:
        ahead = collections.deque()
        for rel, mtime in unit.shards:
            ahead.append((rel, mtime, pool.submit(_read_shard, job, shard_at(job.root, rel))))
            if len(ahead) >= window:
                rel0, m0, fut = ahead.popleft()
                yield rel0, m0, fut.result()
        while ahead:
            rel0, m0, fut = ahead.popleft()
            yield rel0, m0, fut.result()


def _kept_rows(root: Location, uris, stale: set) -> pa.Table | None:
    """The rewritten segments' rows, minus the files the unit's shards replace, in order."""
    if not uris:
        return None
    cols = segments.file_schema().names
    drop = pa.array(sorted(stale), pa.string())
    tables = []
    for uri in uris:
        t = segments.read_parquet(root.at(uri), columns=cols)
        tables.append(t.filter(pc.invert(pc.is_in(t.column("file"), drop))))
    t = pa.concat_tables(tables).combine_chunks()
    if not is_canonical(t):
        t = t.take(pc.sort_indices(t, [("file", "ascending"), ("frame", "ascending")]))
    return t


def _runs(t: pa.Table | None) -> list[tuple[str, int, int]]:
    """(file, start, stop) of each file's rows in a table in canonical order."""
    if t is None or not t.num_rows:
        return []
    f = t.column("file")
    change = pc.not_equal(f.slice(1), f.slice(0, t.num_rows - 1)).to_numpy(zero_copy_only=False)
    starts = [0, *(np.flatnonzero(change) + 1).tolist()]
    stops = [*starts[1:], t.num_rows]
    names = f.take(pa.array(starts)).to_pylist()
    return list(zip(names, starts, stops, strict=True))


def _merged(kept: pa.Table | None, shards):
    """(relpath, rows, item) in canonical order: item is a shard (mtime, table) or a slice of
    the kept segment rows (one file's)."""
    runs, i = _runs(kept), 0
    for rel, mtime, t in shards:
        while i < len(runs) and runs[i][0] < rel:
            f, a, b = runs[i]
            yield f, b - a, kept.slice(a, b - a)
            i += 1
        yield rel, t.num_rows, (mtime, t)
    for f, a, b in runs[i:]:
        yield f, b - a, kept.slice(a, b - a)


def _blocks(items, size: int = BLOCK_SHARDS):
    """Lists of up to `size` consecutive merged items."""
    block = []
    for it in items:
        block.append(it)
        if len(block) >= size:
            yield block
            block = []
    if block:
        yield block


# ---------------------------------------------------------------------------------- converting


def to_segment_rows(items: list) -> pa.Table:
    """Merged items (relpath, rows, shard or kept slice) as one table of `file_schema()`:
    shard runs are converted together (file, shard_mtime, code as binary), in bulk."""
    schema = segments.file_schema()
    out, run = [], []
    for it in items:
        if isinstance(it[2], tuple):
            run.append(it)
            continue
        if run:
            out.append(_shard_rows(run, schema))
            run = []
        out.append(it[2])
    if run:
        out.append(_shard_rows(run, schema))
    t = pa.concat_tables(out) if len(out) > 1 else out[0]
    if not is_canonical(t):  # a shard written with its frames out of order
        t = t.take(pc.sort_indices(t, [("file", "ascending"), ("frame", "ascending")]))
    return t


def _shard_rows(run: list, schema: pa.Schema) -> pa.Table:
    tables = [tab for _, _, (_, tab) in run]
    t = pa.concat_tables(tables, promote_options="permissive").combine_chunks()
    for c, typ in store.OPTIONAL_COLUMNS.items():  # absent from every shard of the run
        if c not in t.column_names:
            t = t.append_column(pa.field(c, typ), pa.nulls(t.num_rows, typ))
    counts = np.array([n for _, n, _ in run])
    idx = pa.array(np.repeat(np.arange(len(run), dtype=np.int32), counts))
    rels = pa.array([rel for rel, _, _ in run], pa.string())
    mtimes = np.array([np.nan if m is None else m for _, _, (m, _) in run], np.float64)
    t = t.set_column(t.column_names.index("code"), "code", pc.cast(t["code"], pa.binary()))
    t = t.append_column("file", pa.DictionaryArray.from_arrays(idx, rels).cast(pa.string()))
    t = t.append_column("shard_mtime", pa.array(np.repeat(mtimes, counts)))
    return t.select(schema.names).cast(schema)


def is_canonical(t: pa.Table) -> bool:
    """Rows already in (file, frame) order: file non-decreasing, frame rising within a file."""
    if t.num_rows < 2:
        return True
    f, fr = t.column("file"), t.column("frame")
    f0, f1 = f.slice(0, t.num_rows - 1), f.slice(1)
    fr0, fr1 = fr.slice(0, t.num_rows - 1), fr.slice(1)
    same = pc.equal(f0, f1)
    ok = pc.or_(pc.less(f0, f1), pc.and_(same, pc.less(fr0, fr1)))
    return bool(pc.all(ok).as_py())


# ---------------------------------------------------------------------------------- cutting


class _Cutter:
    """Writes blocks into segments, cut by the rule of `compact.cut_segments` as rows arrive."""

    def __init__(self, table: Location, tag: str, target: int, depth: int):
        self.table, self.tag, self.target, self.depth = table, tag, target, depth
        self.writer: SegmentWriter | None = None
        self.adds: list[dict] = []
        self.acc, self.group = 0, None

    def write_block(self, items: list) -> None:
        rows = to_segment_rows(items)
        at = 0  # first row of `rows` not yet written
        for i, (rel, n, _) in enumerate(items):
            g = group_key(rel, self.depth)
            if self.writer is not None and should_cut(self.acc, self.target, g != self.group):
                start = sum(it[1] for it in items[:i])
                self.writer.write(rows.slice(at, start - at))
                at = start
                self.adds.append(self.writer.close())
                self.writer, self.acc = None, 0
            if self.writer is None:
                name = f"{self.tag}-{len(self.adds):03d}"
                self.writer = SegmentWriter(self.table, name)
            self.acc += n
            self.group = g
        self.writer.write(rows.slice(at))

    def close(self) -> list[dict]:
        if self.writer is not None:
            self.adds.append(self.writer.close())
            self.writer = None
        return self.adds

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
