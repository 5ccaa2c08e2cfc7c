"""The segment table: the one handle on the Delta Lake table of search segments.

Why one handle: compaction creates it, evolves its schema, writes and commits segments; vacuum
cleans it; the catalogue reads its state. They used to open `DeltaTable` each with its own
expression (URI form, delta-rs options, version); `SegmentTable` is now the only place that
does, from the model root's `storage.Location`.

Layout under `OUT/<model12>/_segments` (docs/CATALOGUE.md): partitioned by `segment`, one Parquet
file per segment written by us (rows in canonical (file, frame) order, row groups of
SEGMENT_ROW_GROUP), no deletion vectors or column mapping, so every file is plain Parquet.

Schema: the shard schema (`store.shard_schema`, optional columns included) with `code` as
`binary` (Delta has no fixed-size binary; the width is `aurorahash.nbits` in the table
description), every column nullable, plus the segment's own columns: `segment` (the partition),
`file` (the archive relative path) and `shard_mtime` (the listing time of the shard the rows came
from). `segment_schema()` derives it at call time, so the schema follows `store.OPTIONAL_COLUMNS`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.codes import store
from pipeline.codes.filerecords import FileRecords, last_of_runs
from pipeline.errors import BadInput
from pipeline.storage import Location

log = logging.getLogger(__name__)

SEGMENTS_DIR = "_segments"
SEGMENT_ROW_GROUP = 131_072  # rows per Parquet row group in segments
APP_ID = "aurorahash-compact"  # the application transaction id of compaction commits


def segment_schema() -> pa.Schema:
    """The Delta table's schema: `segment`, `file`, the shard columns, `shard_mtime`."""
    shard = store.shard_schema(64, store.OPTIONAL_COLUMNS)
    body = [pa.field(f.name, pa.binary() if f.name == "code" else f.type) for f in shard]
    return pa.schema(
        [
            pa.field("segment", pa.string()),
            pa.field("file", pa.string()),
            *body,
            pa.field("shard_mtime", pa.float64()),  # the shard's listing mtime when compacted
        ]
    )


def file_schema() -> pa.Schema:
    """The schema inside a segment's Parquet file: `segment` is the partition, not a column."""
    return segment_schema().remove(0)


@dataclass(frozen=True)
class Segment:
    """One live segment file, from the Delta log: its rows and (file) range."""

    name: str
    uri: str
    rows: int
    lo: str  # first archive relative path it holds
    hi: str  # last
    modified: float | None  # when it was written (POSIX s)


@dataclass
class SegmentState:
    """The table at one version: None (no table yet) and empty, or its segments."""

    version: int | None
    meta: store.ShardMeta | None
    segments: list[Segment]
    recorded: FileRecords  # file -> (shard mtime, segment name), as sorted columns

    @property
    def modified(self) -> dict:
        """segment name -> when its file was written (POSIX s)."""
        return {s.name: s.modified for s in self.segments}


class SegmentTable:
    """The segment table of one model root (`OUT/<model12>`): open, create, state, commit."""

    def __init__(self, root: Location):
        self.root = root
        self.loc = root.child(SEGMENTS_DIR)

    def exists(self) -> bool:
        from deltalake import DeltaTable

        return DeltaTable.is_deltatable(self.loc.delta_uri, storage_options=self.loc.delta_options)

    def open(self, version: int | None = None):
        """The `deltalake.DeltaTable` (at `version`, else the latest)."""
        from deltalake import DeltaTable

        opts = self.loc.delta_options
        return DeltaTable(self.loc.delta_uri, storage_options=opts, version=version)

    def create(self, meta: store.ShardMeta) -> None:
        """Create the empty table once, so that every compaction is an overwrite of a version
        it read (two first runs racing on a missing table could both append)."""
        from deltalake import DeltaTable
        from deltalake.exceptions import DeltaError

        description = json.dumps({k.decode(): v.decode() for k, v in meta.to_kv().items()})
        try:
            DeltaTable.create(
                self.loc.delta_uri,
                schema=segment_schema(),
                mode="ignore",
                partition_by=["segment"],
                description=description,
                storage_options=self.loc.delta_options,
            )
        except DeltaError as exc:  # another run created it first
            log.info("segment table created concurrently (%s)", exc)

    def add_missing_columns(self) -> bool:
        """Give a table created before a column existed (`meta`) that column, as a commit of
        its own (schema evolution; its old files read as null). True when it committed."""
        from deltalake.exceptions import DeltaError
        from deltalake.schema import Field

        dt = self.open()
        have = {f.name for f in dt.schema().fields}
        missing = [f for f in segment_schema() if f.name not in have]
        if not missing:
            return False
        try:
            dt.alter.add_columns([Field.from_arrow(f) for f in missing])
        except DeltaError as exc:  # another run added it first
            log.info("segment table columns added concurrently (%s)", exc)
        return True

    def state(self, with_files: bool = True) -> SegmentState:
        """The current segments from the Delta log; with_files also reads each segment's
        (file, shard_mtime) column pair, which says which shards it holds."""
        if not self.exists():
            return SegmentState(None, None, [], FileRecords.empty())
        dt = self.open()
        meta = meta_from_description(dt.metadata().description, self.loc.uri)
        actions = pa.table(dt.get_add_actions(flatten=True)).to_pylist()
        segments = [_segment(self.loc, a) for a in actions]
        recorded = _recorded_files(self.loc, segments) if with_files else FileRecords.empty()
        return SegmentState(dt.version(), meta, segments, recorded)

    def commit(self, adds: list, replaced: list[Segment], read_version: int, files: int) -> int:
        """One atomic commit on top of `read_version`: add the written files (`SegmentWriter`
        records), remove the `replaced` segments. The application transaction version
        (= read_version + 1) makes a concurrent compaction's commit fail (CommitFailedError).
        Returns the new version."""
        from deltalake import CommitProperties, Transaction
        from deltalake.transaction import AddAction, RemoveAction

        now = int(time.time() * 1000)
        base = self.loc.uri + "/"
        removes = [
            RemoveAction(
                path=s.uri[len(base) :],
                data_change=True,
                deletion_timestamp=now,
                partition_values={"segment": s.name},
            )
            for s in replaced
        ]
        version = read_version + 1
        props = CommitProperties(
            app_transactions=[Transaction(app_id=APP_ID, version=version)],
            custom_metadata={"aurorahash.operation": "compact", "aurorahash.files": str(files)},
        )
        actions = [AddAction(**{k: a[k] for k in _ADD_FIELDS}) for a in adds]
        self.open(read_version).create_write_transaction(
            actions + removes,
            mode="append",
            schema=segment_schema(),
            partition_by=["segment"],
            commit_properties=props,
        )
        return version

    def vacuum(self, grace_hours: float) -> int:
        """Delete files that no live version needs (superseded segments, orphans of killed
        runs) older than the grace period; a checkpoint every 10 versions. Returns the count."""
        dt = self.open()
        removed = dt.vacuum(
            retention_hours=int(grace_hours),
            dry_run=False,
            enforce_retention_duration=False,
            full=True,
        )
        if dt.version() % 10 == 0:
            dt.create_checkpoint()
        return len(removed)


def _recorded_files(table: Location, segments: list[Segment]) -> FileRecords:
    """file -> (shard mtime, segment name), from each segment's (file, shard_mtime) columns,
    kept as columns. A segment's rows are in canonical order, so its last row of each file is
    its record; read in the order of their file ranges, segments that do not overlap give the
    files sorted as they are (no sort). Where they overlap, a later segment's record of a file
    wins, as it did in the dict this was."""
    files, mtimes = [], []
    for s in segments:
        f, m = _last_records(table.at(s.uri))
        files.append(f)
        mtimes.append(m)

    def columns(order):
        index = [np.full(len(files[i]), i, np.int32) for i in order]
        return (
            pa.chunked_array([files[i] for i in order], pa.string()),
            np.concatenate([mtimes[i] for i in order] or [np.zeros(0)]),
            np.concatenate(index or [np.zeros(0, np.int32)]),
            [s.name for s in segments],
        )

    by_range = sorted(
        range(len(segments)), key=lambda i: (segments[i].lo or "", segments[i].hi or "")
    )
    records = FileRecords.if_sorted(*columns(by_range))
    return records if records is not None else FileRecords.build(*columns(range(len(segments))))


def _last_records(loc: Location) -> tuple[pa.Array, np.ndarray]:
    """A segment's (file, shard_mtime) at its last row of each file, read a row group at a
    time: memory holds one row group and one record a file, whatever its rows a file."""
    files, mtimes = [], []
    with loc.open("rb") as fh:
        batches = pq.ParquetFile(fh).iter_batches(SEGMENT_ROW_GROUP, columns=_RECORD_COLUMNS)
        for b in batches:
            f, m = _last_of_each(pc.cast(b.column(0), pa.string()), b.column(1))
            files.append(f)
            mtimes.append(m)
    if not files:
        return pa.array([], pa.string()), np.zeros(0)
    return _last_of_each(pa.concat_arrays(files), pa.array(np.concatenate(mtimes)))


_RECORD_COLUMNS = ["file", "shard_mtime"]


def _last_of_each(files: pa.Array, mtimes: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The rows (in canonical order) that are the last of their file."""
    last = last_of_runs(files)
    if not last.all():
        keep = pa.array(last)
        files, mtimes = files.filter(keep), mtimes.filter(keep)
    return files, pc.cast(mtimes, pa.float64()).to_numpy(zero_copy_only=False)


_ADD_FIELDS = ("path", "size", "partition_values", "modification_time", "data_change", "stats")


class SegmentWriter:
    """One segment's Parquet file, written a row group at a time, so that a segment of any size
    passes through bounded memory (about SEGMENT_ROW_GROUP rows). Rows must come in canonical
    order. `close()` returns its add record, a plain dict (it crosses process boundaries) that
    `SegmentTable.commit` takes. Until that commit the file is an orphan no reader sees."""

    def __init__(self, table: Location, name: str):
        self.name, self.rows, self.lo, self.hi = name, 0, None, None
        self.rel = f"segment={name}/part-{uuid.uuid4().hex}.zstd.parquet"
        table.child(f"segment={name}").makedirs()
        self.dest = table.child(self.rel)
        self._file = self.dest.open("wb")
        self._writer = pq.ParquetWriter(self._file, file_schema(), compression="zstd")
        self._buf: list[pa.Table] = []
        self._buffered = 0

    def write(self, t: pa.Table) -> None:
        """Append rows (`file_schema()` columns), after the ones written so far."""
        if not t.num_rows:
            return
        files = t.column("file")
        self.lo = self.lo if self.lo is not None else files[0].as_py()
        self.hi = files[-1].as_py()
        self._buf.append(t)
        self._buffered += t.num_rows
        self.rows += t.num_rows
        if self._buffered >= SEGMENT_ROW_GROUP:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self._buffered:
            return
        t = pa.concat_tables(self._buf).combine_chunks()
        n = t.num_rows if final else SEGMENT_ROW_GROUP * (t.num_rows // SEGMENT_ROW_GROUP)
        self._writer.write_table(t.slice(0, n), row_group_size=SEGMENT_ROW_GROUP)
        rest = t.slice(n)
        self._buf, self._buffered = ([rest], rest.num_rows) if rest.num_rows else ([], 0)

    def close(self) -> dict:
        self._flush(final=True)
        self._writer.close()
        self._file.close()
        stats = {
            "numRecords": self.rows,
            "minValues": {"file": self.lo},
            "maxValues": {"file": self.hi},
            "nullCount": {"file": 0},
        }
        return {
            "path": self.rel,
            "size": self.dest.size(),
            "partition_values": {"segment": self.name},
            "modification_time": int(time.time() * 1000),
            "data_change": True,
            "stats": json.dumps(stats),
            "rows": self.rows,
        }

    def abort(self) -> None:
        """Close without a record: the partial file is an orphan (vacuum deletes it)."""
        with contextlib.suppress(Exception):
            self._writer.close()
        with contextlib.suppress(Exception):
            self._file.close()


def _segment(table: Location, action: dict) -> Segment:
    lo, hi = action.get("min.file") or "", action.get("max.file") or ""
    return Segment(
        name=action["partition.segment"],
        uri=f"{table.uri}/{action['path']}",
        rows=int(action["num_records"]),
        lo=lo,
        hi=hi,
        modified=_ms_to_s(action.get("modification_time")),
    )


def _ms_to_s(v) -> float | None:
    if v is None:
        return None
    if hasattr(v, "timestamp"):
        return v.timestamp()
    return float(v) / 1000.0


def meta_from_description(description: str | None, where: str) -> store.ShardMeta:
    try:
        kv = json.loads(description or "")
    except ValueError:
        kv = None
    if not isinstance(kv, dict):
        raise BadInput(f"{where}: not an aurorahash segment table (no metadata)")
    return store.ShardMeta.from_kv(kv, where=where)


# ------------------------------------------------------------------------------ reading files


def read_parquet(loc: Location, columns=None, filters=None) -> pa.Table:
    """One segment file (all of it, or the rows matching `filters`, which skips row groups by
    their statistics). An optional column asked for that the file lacks (segments written
    before it existed) comes back all null (`store.with_optional`)."""
    if filters is not None:
        pafs = None if loc.is_local else loc.fs
        have = columns
        if columns is not None and set(columns) & set(store.OPTIONAL_COLUMNS):
            have = _present(pq.read_schema(loc.path, filesystem=pafs), columns)
        t = pq.read_table(loc.path, columns=have, filters=filters, filesystem=pafs)
        return store.with_optional(t, columns, where=loc.uri)
    with loc.open("rb") as f:
        pf = pq.ParquetFile(f)
        t = pf.read(columns=_present(pf.schema_arrow, columns))
    return store.with_optional(t, columns, where=loc.uri)


def _present(schema: pa.Schema, columns) -> list | None:
    """The columns asked for that the file has (None: all); the rest are checked and filled in
    by `store.with_optional`."""
    return None if columns is None else [c for c in columns if c in schema.names]


def read_rows(loc: Location, columns, row_range: tuple[int, int] | None) -> pa.Table:
    """Rows [start, stop) of a Parquet file, reading only the row groups that hold them."""
    if row_range is None:
        return read_parquet(loc, columns)
    start, stop = row_range
    with loc.open("rb") as f:
        pf = pq.ParquetFile(f)
        groups, first, at = [], None, 0
        for g in range(pf.metadata.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            if at < stop and at + n > start:
                groups.append(g)
                first = at if first is None else first
            at += n
        have = _present(pf.schema_arrow, columns)
        if not groups:
            empty = pf.schema_arrow.empty_table().select(have)
            return store.with_optional(empty, columns, loc.uri)
        t = pf.read_row_groups(groups, columns=have)
    return store.with_optional(t.slice(start - first, stop - start), columns, where=loc.uri)
