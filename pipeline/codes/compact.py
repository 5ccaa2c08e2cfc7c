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
"""

from __future__ import annotations

import json
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
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.codes import catalogue, store
from pipeline.errors import BadInput
from pipeline.progress import Progress

log = logging.getLogger("aurorahash.compact")

DEFAULT_TARGET_ROWS = 2_000_000
DEFAULT_GROUP_DEPTH = 4  # stream0/YYYY/MM/DD: one night of every camera
APP_ID = "aurorahash-compact"
SHARD_COLUMNS = (*store.COLUMNS, *store.OPTIONAL_COLUMNS)  # `meta`: null from older shards
SEGMENT_COLUMNS = ("segment", "file", *SHARD_COLUMNS, "shard_mtime")


@dataclass
class Plan:
    root: str
    meta: store.ShardMeta
    pending: dict  # shard uri -> (relpath, mtime, size)
    rewrite: list  # segment Parts to rewrite (minus their dropped files)
    drop: set  # files whose segment rows are replaced by a pending shard
    version: int | None


def plan(root: str, so: dict, target_rows: int = DEFAULT_TARGET_ROWS) -> Plan | None:
    """What to compact now: None when every shard is already in the segments."""
    seg = catalogue.read_segments(root, so)
    entries = catalogue.list_shard_entries(root, so)
    pending, drop = catalogue.pending_shards(root, entries, seg.recorded)
    if not pending:
        return None
    meta = seg.meta or store.shard_meta(next(iter(pending)), so)
    rels = sorted(rel for rel, _, _ in pending.values())
    rewrite = []
    last = max(seg.parts, key=lambda p: p.hi, default=None)
    for p in seg.parts:
        holds_dropped = any(seg.recorded[f][1] == p.name for f in drop)
        inside = _any_between(rels, p.lo, p.hi)
        small_last = p is last and p.rows < target_rows and rels[-1] > p.hi
        if holds_dropped or inside or small_last:
            rewrite.append(p)
    return Plan(root, meta, pending, rewrite, drop, seg.version)


def _any_between(sorted_rels: list[str], lo: str, hi: str) -> bool:
    import bisect

    i = bisect.bisect_left(sorted_rels, lo)
    return i < len(sorted_rels) and sorted_rels[i] <= hi


# ---------------------------------------------------------------------------------- reading


def _read_pending(p: Plan, so: dict, progress: Progress, threads: int) -> pa.Table | None:
    """Every pending shard as one table with its `file` and `shard_mtime` columns."""

    def load(uri):
        t = store.read_shard(uri, so, columns=list(SHARD_COLUMNS))
        m = store.ShardMeta.from_kv(t.schema.metadata, where=uri)
        if not p.meta.compatible(m):
            raise BadInput(f"{uri}: nbits/model/classes differ from the other codes of {p.root}")
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


def _read_rewritten(p: Plan, so: dict) -> list[pa.Table]:
    out = []
    cols = [c for c in SEGMENT_COLUMNS if c != "segment"]
    for part in p.rewrite:
        t = catalogue.read_parquet(part.uri, so, columns=cols)
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
    return t.append_column("segment", row_seg).select(list(SEGMENT_COLUMNS))


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


SEGMENT_SCHEMA = pa.schema(
    [
        ("segment", pa.string()),
        ("file", pa.string()),
        ("id", pa.string()),
        ("source", pa.string()),
        ("frame", pa.int32()),
        ("site", pa.string()),
        ("time", pa.timestamp("us", tz="UTC")),
        ("code", pa.binary()),  # Delta has no fixed-size binary; width = aurorahash.nbits
        ("label", pa.int16()),
        ("pred", pa.int16()),
        ("score", pa.float32()),
        ("meta", pa.string()),  # optional shard column (pipeline.ingest.frame_meta), null if absent
        ("shard_mtime", pa.float64()),  # the shard's listing mtime when it was compacted
    ]
)
FILE_SCHEMA = SEGMENT_SCHEMA.remove(0)  # in the Parquet files: `segment` is the partition


def _create_table(root: str, so: dict, meta: store.ShardMeta) -> None:
    """Create the empty segment table once, so that every compaction is an overwrite of a
    version it read (two first runs racing on a missing table could both append)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError

    uri = catalogue.delta_uri(catalogue.table_uri(root))
    description = json.dumps({k.decode(): v.decode() for k, v in meta.to_kv().items()})
    try:
        DeltaTable.create(
            uri,
            schema=SEGMENT_SCHEMA,
            mode="ignore",
            partition_by=["segment"],
            description=description,
            storage_options=storage.delta_options(so),
        )
    except DeltaError as exc:  # another run created it first
        log.info("segment table created concurrently (%s)", exc)


def _add_missing_columns(root: str, so: dict) -> bool:
    """Give a segment table created before a column existed (`meta`) that column, as a commit
    of its own (schema evolution; its old files read as null). True when it committed."""
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError
    from deltalake.schema import Field

    dt = DeltaTable(
        catalogue.delta_uri(catalogue.table_uri(root)), storage_options=storage.delta_options(so)
    )
    have = {f.name for f in dt.schema().fields}
    missing = [f for f in SEGMENT_SCHEMA if f.name not in have]
    if not missing:
        return False
    try:
        dt.alter.add_columns([Field.from_arrow(f) for f in missing])
    except DeltaError as exc:  # another run added it first
        log.info("segment table columns added concurrently (%s)", exc)
    return True


def _commit(p: Plan, data: pa.Table, so: dict) -> int:
    """Write the new segment files, then one atomic commit that adds them and removes the
    segments they replace. The application transaction version (= table version + 1) makes a
    concurrent compaction's commit fail. Killed before the commit, the written files are orphans
    that no reader sees (vacuum deletes them)."""
    from deltalake import CommitProperties, DeltaTable, Transaction
    from deltalake.transaction import RemoveAction

    adds = _write_segment_files(p.root, data, so)
    now = int(time.time() * 1000)
    base = catalogue.table_uri(p.root) + "/"
    removes = [
        RemoveAction(
            path=s.uri[len(base) :],
            data_change=True,
            deletion_timestamp=now,
            partition_values={"segment": s.name},
        )
        for s in p.rewrite
    ]
    version = p.version + 1
    props = CommitProperties(
        app_transactions=[Transaction(app_id=APP_ID, version=version)],
        custom_metadata={
            "aurorahash.operation": "compact",
            "aurorahash.files": str(len(p.pending)),
        },
    )
    fault_point("compact:before-commit")
    dt = DeltaTable(
        catalogue.delta_uri(catalogue.table_uri(p.root)),
        storage_options=storage.delta_options(so),
        version=p.version,
    )
    dt.create_write_transaction(
        adds + removes,
        mode="append",
        schema=SEGMENT_SCHEMA,
        partition_by=["segment"],
        commit_properties=props,
    )
    fault_point("compact:after-commit")
    return version


def _write_segment_files(root: str, data: pa.Table, so: dict) -> list:
    """One Parquet file per segment, rows in canonical order, row groups of SEGMENT_ROW_GROUP,
    written by us (delta-rs's writer may reorder batches); returns their Delta add actions."""
    from deltalake.transaction import AddAction

    names = data.column("segment")
    body = data.drop_columns(["segment"]).cast(FILE_SCHEMA)
    bounds = np.flatnonzero(pc.not_equal(names.slice(1), names.slice(0, len(names) - 1)))
    starts = [0, *(bounds + 1).tolist()]
    stops = [*starts[1:], data.num_rows]
    fs, base, _ = storage.split_uri(catalogue.table_uri(root), so)
    adds = []
    for a, b in zip(starts, stops, strict=True):
        name = names[a].as_py()
        rel = f"segment={name}/part-{uuid.uuid4().hex}.zstd.parquet"
        seg = body.slice(a, b - a)
        fs.makedirs(f"{base}/segment={name}", exist_ok=True)
        with fs.open(f"{base}/{rel}", "wb") as f:
            pq.write_table(seg, f, row_group_size=catalogue.SEGMENT_ROW_GROUP, compression="zstd")
        stats = {
            "numRecords": b - a,
            "minValues": {"file": seg.column("file")[0].as_py()},
            "maxValues": {"file": seg.column("file")[-1].as_py()},
            "nullCount": {"file": 0},
        }
        adds.append(
            AddAction(
                path=rel,
                size=fs.size(f"{base}/{rel}"),
                partition_values={"segment": name},
                modification_time=int(time.time() * 1000),
                data_change=True,
                stats=json.dumps(stats),
            )
        )
    return adds


def fault_point(name: str) -> None:
    """Crash here when $AURORAHASH_FAULT names this point (tests of killed runs)."""
    if os.environ.get("AURORAHASH_FAULT") == name:
        log.error("fault injected at %s", name)
        os._exit(137)


# ---------------------------------------------------------------------------------- job


def _plan_on_table(root: str, so: dict, target_rows: int):
    """The plan, after creating the table (first run) or adding columns newer shards have."""
    p = plan(root, so, target_rows)
    if p is not None and p.version is None:
        _create_table(root, so, p.meta)
        p = plan(root, so, target_rows)
    elif p is not None and _add_missing_columns(root, so):
        p = plan(root, so, target_rows)
    return p


def compact(
    uri: str,
    storage_options: dict | None = None,
    model: str | None = None,
    target_rows: int = DEFAULT_TARGET_ROWS,
    group_depth: int = DEFAULT_GROUP_DEPTH,
    read_threads: int | None = None,
    retries: int = 3,
) -> dict:
    """Compact one model's pending shards under `uri` into segments; returns a summary."""
    if target_rows < 1:
        raise BadInput(f"target rows must be >= 1, got {target_rows}")
    from deltalake.exceptions import CommitFailedError

    so = storage_options or {}
    root = catalogue.resolve_root(uri, so, model)
    if not storage.exists(root, so):
        raise BadInput(f"{uri}: not found")
    read_threads = read_threads or (4 if storage.split_uri(root, so)[2] == "file" else 16)
    t0 = time.perf_counter()
    for attempt in range(retries + 1):
        p = _plan_on_table(root, so, target_rows)
        if p is None:
            log.info("compact %s: nothing new", root)
            return {
                "root": root,
                "files": 0,
                "rows": 0,
                "segments_written": 0,
                "segments_replaced": 0,
                "seconds": round(time.perf_counter() - t0, 3),
            }
        log.info(
            "compact %s: %d shards to add, %d segments to rewrite",
            root,
            len(p.pending),
            len(p.rewrite),
        )
        progress = Progress("compact", total=len(p.pending), unit="shards")
        pending = _read_pending(p, so, progress, read_threads)
        tables = [t for t in [pending, *_read_rewritten(p, so)] if t is not None]
        data = _segment_table(tables, target_rows, group_depth, p.version + 1)
        try:
            version = _commit(p, data, so)
            break
        except CommitFailedError as exc:
            if attempt == retries:
                raise
            log.warning("compact: another writer committed first (%s); planning again", exc)
    progress.done()
    return {
        "root": root,
        "version": version,
        "files": len(p.pending),
        "rows": data.num_rows,
        "segments_written": len(pc.unique(data.column("segment"))),
        "segments_replaced": len(p.rewrite),
        "seconds": round(time.perf_counter() - t0, 3),
        "shards_per_s": round(len(p.pending) / max(time.perf_counter() - t0, 1e-9), 1),
    }
