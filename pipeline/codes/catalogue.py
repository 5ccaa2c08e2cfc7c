"""The catalogue: what a reader of one model's codes sees, without opening every shard.

A model's codes live under `OUT/<model12>/` in two forms:

    <archive relative path>.parquet     per-file code shards, written by ingest
    _segments/                          a Delta Lake table of search segments, written by
                                        `compact` (partitioned by `segment`, one Parquet file
                                        each, rows sorted by (file, frame))

The catalogue is the segments (from the Delta log: file names, row counts, file ranges) plus the
shards not yet compacted (name, mtime, size from listing only the folders with a pending mark,
`pipeline.codes.pending`: O(pending), whatever compaction left behind for the grace period).
A shard is "compacted" when the segments hold its file with the same shard modification time;
a shard rewritten since (its archive file was re-ingested) is pending again, and the segment
rows of that file are masked until the next compaction replaces them. So every frame is read
exactly once.

Canonical order: rows are ordered by (archive relative path, frame index) everywhere. Readers get
parts in that order and `plan_tasks` cuts them into contiguous row ranges, so index-tie MAP and
k-NN tie-breaking do not depend on the layout (shards, segments, grouping, Ray or not).

Where: every function takes a `pipeline.storage.Location` (a plain path or URI stands for one
made by `storage.location`); the catalogue keeps its root's (`cat.loc`), and readers of parts
take that one, which carries the options for every file below it. The segment table is read
through `segments.SegmentTable`, the one handle that compaction and vacuum use too.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import storage
from pipeline.codes import segments, store
from pipeline.codes.filerecords import FileRecords, FileTimes
from pipeline.codes.pending import candidate_entries, pending_shards, shard_relpath
from pipeline.codes.segments import SegmentTable
from pipeline.errors import BadInput
from pipeline.storage import Location

log = logging.getLogger(__name__)

DEFAULT_TASK_ROWS = 1_000_000
# Row estimate of a pending shard from its size, without opening it: a footer of ~4 kB plus
# ~20 bytes a row (zstd; measured on 20- to 50,000-row shards). Only task sizes depend on it.
SHARD_OVERHEAD_BYTES, SHARD_BYTES_PER_ROW = 4_000, 20
_MODEL12 = re.compile(r"^[0-9a-f]{12}$")


@dataclass(frozen=True)
class Part:
    """One readable unit in canonical order: a segment file (or a row-group range of it) or a
    pending shard. `lo`/`hi` are the first and last archive relative paths it holds."""

    uri: str
    kind: str  # "segment" | "shard"
    rows: int  # exact for segments, estimated from the size for shards (`_rows_estimate`)
    lo: str
    hi: str
    name: str  # segment name, or the shard's relative path
    row_range: tuple[int, int] | None = None  # segment rows [start, stop) to read (None: all)
    drop: frozenset = frozenset()  # files whose segment rows are stale (pending shards)


@dataclass
class Catalogue:
    loc: Location  # OUT/<model12> (or the dataset folder / shard file given)
    meta: store.ShardMeta
    parts: list[Part]  # canonical order of `lo`
    table_version: int | None = None  # Delta version of the segments read (None: no table)
    recorded: FileRecords = field(default_factory=FileRecords.empty)  # file -> (mtime, segment)
    pending: dict = field(default_factory=dict)  # shard uri -> (relpath, mtime, size)

    @property
    def root(self) -> str:
        return self.loc.uri

    @property
    def n_rows(self) -> int:
        return sum(p.rows for p in self.parts)

    @property
    def segments(self) -> list[Part]:
        return [p for p in self.parts if p.kind == "segment"]

    @property
    def shards(self) -> list[Part]:
        return [p for p in self.parts if p.kind == "shard"]


# ------------------------------------------------------------------------------ locating roots


def model_roots(where: Location | str) -> list[Location]:
    """The `<model12>` folders under an ingest output, or [where] when it is one model's data."""
    loc = storage.location(where)
    models = [m for m in store.list_models(loc) if _MODEL12.match(m)]
    return [loc.child(m) for m in models] if models else [loc]


def select_roots(where: Location | str, model: str | None = None) -> list[Location]:
    """The model roots under `where` (all, or those of `model`); BadInput when there is none."""
    loc = storage.location(where)
    roots = model_roots(loc)
    if model:
        roots = [r for r in roots if root_matches(r, model)]
    if not roots:
        raise BadInput(f"no codes under {loc.uri}" + (f" for model {model}" if model else ""))
    return roots


def root_matches(root: Location, model: str) -> bool:
    """Whether `root` (a model folder, or any dataset) holds codes of `model` (a sha prefix)."""
    name = root.name
    if not _MODEL12.match(name):
        return open_catalogue(root).meta.model.startswith(model)
    return model[:12].startswith(name) if len(model) >= 12 else name.startswith(model)


def resolve_root(where: Location | str, model: str | None = None) -> Location:
    """The one model's root under `where`; BadInput lists the models when a choice is needed."""
    loc = storage.location(where)
    roots = model_roots(loc)
    if roots == [loc]:
        return loc  # one model's folder, a plain dataset folder or a shard file
    if model:
        roots = [r for r in roots if root_matches(r, model)]
        if not roots:
            raise BadInput(f"no code shards of model {model} under {loc.uri}")
    if len(roots) > 1:
        names = ", ".join(r.name for r in roots)
        raise BadInput(
            f"{loc.uri} holds shards of several models ({names}); choose one with --model"
        )
    return roots[0]


# ------------------------------------------------------------------------------ opening


def open_catalogue(
    where: Location | str, model: str | None = None, shard_entries: dict | None = None
) -> Catalogue:
    """Read the catalogue of one model under `where` (ingest output, model folder, shard dataset
    folder or one shard file). Opens the Delta log and at most one shard footer.

    The shards are listed before the segments are read: a compaction (and the retiring of its
    pending marks) that lands in between is then in the segments read (`pending`)."""
    loc = storage.location(where)
    root = resolve_root(loc, model)
    if shard_entries is None:
        shard_entries = list_shard_entries(root)
    seg = SegmentTable(root).state()
    pending, drops = pending_shards(root.uri, shard_entries, seg.recorded)
    if seg.meta is not None:
        meta = seg.meta
    elif pending:
        meta = store.shard_meta(root.at(next(iter(pending))))
    else:
        raise BadInput(f"no code shards under {loc.uri}" + (f" for model {model}" if model else ""))
    if model and not meta.model.startswith(model):
        raise BadInput(f"no code shards of model {model} under {loc.uri}")
    parts = [
        Part(uri=s, kind="shard", rows=_rows_estimate(size), lo=rel, hi=rel, name=rel)
        for s, (rel, _, size) in pending.items()
    ]
    held = dict(zip(sorted(drops), seg.recorded.lookup(sorted(drops)), strict=True))
    for s in seg.segments:
        dropped = frozenset(f for f, rec in held.items() if rec[1] == s.name)
        parts.append(segment_part(s, dropped))
    parts.sort(key=lambda p: (p.lo, p.hi, p.kind))
    return Catalogue(root, meta, parts, seg.version, seg.recorded, pending)


def segment_part(s: segments.Segment, drop: frozenset = frozenset()) -> Part:
    return Part(uri=s.uri, kind="segment", rows=s.rows, lo=s.lo, hi=s.hi, name=s.name, drop=drop)


def list_shard_entries(root: Location) -> dict:
    """{shard uri: (mtime, size)} of the shards under `root` that may be pending: those in the
    folders with a pending mark, or all of them where marks are not kept (`pending`)."""
    return candidate_entries(root)


def committed_files(root: Location | str) -> FileTimes:
    """{archive relpath: modification time of its shard} for every file with codes that a
    reader sees: in a segment (whether or not its shard is still there), or in a shard that is
    pending. A shard written by a run killed before its mark is not one of them (redone).
    Columns, not a dict (`filerecords`): ingest matches a listing of millions against it."""
    root = storage.location(root)
    if not root.exists():
        return FileTimes(FileRecords.empty())
    entries = list_shard_entries(root)  # before the segments, as in `open_catalogue`
    recorded = SegmentTable(root).state().recorded
    rels = [shard_relpath(s, root.uri) for s in entries]
    return FileTimes(recorded.updated(rels, [m for m, _ in entries.values()]))


def _rows_estimate(size) -> int:
    return max(1, (int(size or 0) - SHARD_OVERHEAD_BYTES) // SHARD_BYTES_PER_ROW)


# ------------------------------------------------------------------------------ task planning


@dataclass(frozen=True)
class Task:
    """A contiguous range of the canonical order: parts read together by one worker."""

    parts: tuple[Part, ...]
    rows: int
    overlapping: bool  # parts interleave: rows must be merged into canonical order


def plan_tasks(parts: list[Part], target_rows: int = DEFAULT_TASK_ROWS) -> list[Task]:
    """Cut the catalogue into tasks of about `target_rows` rows, in canonical order.

    Parts whose file ranges overlap (a pending shard inside a segment's range) form one cluster,
    read and merged together; a segment that alone exceeds the target is split into row ranges,
    so that work spreads over the cluster's cores.
    """
    clusters: list[list[Part]] = []
    hi = None
    for p in sorted(parts, key=lambda p: (p.lo, p.hi, p.kind)):
        if clusters and hi is not None and p.lo <= hi:
            clusters[-1].append(p)
            hi = max(hi, p.hi)
        else:
            clusters.append([p])
            hi = p.hi
    tasks, cur, cur_rows = [], [], 0
    for cl in clusters:
        if len(cl) == 1 and cl[0].kind == "segment" and cl[0].rows > target_rows:
            if cur:
                tasks.append(Task(tuple(cur), cur_rows, False))
                cur, cur_rows = [], 0
            tasks.extend(Task((p,), p.rows, False) for p in _split_segment(cl[0], target_rows))
            continue
        rows = sum(p.rows for p in cl)
        if cur and cur_rows + rows > target_rows:
            tasks.append(Task(tuple(cur), cur_rows, False))
            cur, cur_rows = [], 0
        if len(cl) > 1:
            if cur:
                tasks.append(Task(tuple(cur), cur_rows, False))
                cur, cur_rows = [], 0
            tasks.append(Task(tuple(cl), rows, True))
            continue
        cur.extend(cl)
        cur_rows += rows
    if cur:
        tasks.append(Task(tuple(cur), cur_rows, False))
    return tasks


def _split_segment(p: Part, target_rows: int) -> list[Part]:
    starts = range(0, p.rows, max(1, target_rows))
    return [
        replace(
            p, row_range=(a, min(p.rows, a + target_rows)), rows=min(p.rows, a + target_rows) - a
        )
        for a in starts
    ]


# ------------------------------------------------------------------------------ reading tasks

READ_COLUMNS = ("file", "frame", "id", "code", "label")


def read_part(part: Part, meta: store.ShardMeta, loc: Location, columns=READ_COLUMNS) -> pa.Table:
    """Rows of one part with the columns asked, in canonical order (a shard's rows are sorted by
    frame if they are not already). `loc`: any location of the store (the catalogue's root)."""
    if part.kind == "shard":
        want = list(dict.fromkeys([c for c in columns if c != "file"] + ["frame"]))
        t = store.read_shard(loc.at(part.uri), columns=want)  # frame: to check the row order
        m = store.ShardMeta.from_kv(t.schema.metadata, where=part.uri)
        if not meta.compatible(m):
            raise BadInput(
                f"{part.uri}: nbits={m.nbits} model={m.model12} differ from the dataset's "
                f"nbits={meta.nbits} model={meta.model12}"
            )
        t = t.replace_schema_metadata(None)
        if "file" in columns:
            t = t.append_column("file", pa.repeat(pa.scalar(part.name, pa.string()), t.num_rows))
        if "frame" in t.column_names and not _is_sorted(t.column("frame")):
            t = t.take(pc.sort_indices(t, [("frame", "ascending")]))
        return t.select(list(columns))
    need = list(dict.fromkeys([*columns, "file"])) if part.drop else list(columns)
    t = segments.read_rows(loc.at(part.uri), need, part.row_range)
    if part.drop:
        t = t.filter(pc.invert(pc.is_in(t.column("file"), pa.array(sorted(part.drop)))))
    return t.select(list(columns))


def read_task(task: Task, meta: store.ShardMeta, loc: Location, columns=READ_COLUMNS) -> pa.Table:
    """The rows of one task, in canonical order; `loc`: the catalogue's (`cat.loc`)."""
    merge = ("file", "frame") if task.overlapping else ()  # only a merge needs the sort keys
    cols = tuple(dict.fromkeys((*merge, *columns)))
    tables = [read_part(p, meta, loc, cols) for p in task.parts]
    tables = [_unify_code(t, meta) for t in tables]
    t = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    if task.overlapping:
        t = t.take(pc.sort_indices(t, [("file", "ascending"), ("frame", "ascending")]))
    return t.select(list(columns))


def _unify_code(t: pa.Table, meta: store.ShardMeta) -> pa.Table:
    """Segments store `code` as binary (Delta has no fixed-size binary); shards as fixed."""
    if "code" not in t.column_names:
        return t
    i = t.column_names.index("code")
    col = t.column("code")
    if col.type != pa.binary(8 * meta.words):
        col = pc.cast(col, pa.binary(8 * meta.words))
    return t.set_column(i, "code", col)


def _is_sorted(col) -> bool:
    a = col.to_numpy()
    return bool(np.all(a[1:] >= a[:-1])) if len(a) > 1 else True


def codes_labels(t: pa.Table, meta: store.ShardMeta) -> tuple[np.ndarray, np.ndarray]:
    """(codes (n, words) uint64, labels (n,) int64 with -1 where unlabelled) of a task table."""
    codes = store.codes_to_numpy(t.column("code"), meta.nbits)
    lab = t.column("label")
    labels = pc.fill_null(lab, -1).to_numpy().astype(np.int64) if len(lab) else np.zeros(0, int)
    return codes, labels


# ------------------------------------------------------------------------------ lookups


LOOKUP_COLUMNS = ("file", "frame", "id", "code", "label")


def lookup_ids(cat: Catalogue, ids: list[str], columns=LOOKUP_COLUMNS) -> pa.Table:
    """Rows of the given frame ids, reading only the part that holds each file (no scan).

    `columns`: any of `file` and the shard columns (reports also want source, site, time, pred,
    score); `id` is always there."""
    by_part: dict[Part, list[str]] = {}
    for fid in ids:
        rel = fid.rsplit("#", 1)[0]
        part = _part_for(cat, rel)
        if part is not None:
            by_part.setdefault(part, []).append(fid)
    tables = []
    cols = list(dict.fromkeys(["id", *columns]))
    for part, want in by_part.items():
        if part.kind == "shard":
            t = read_part(part, cat.meta, cat.loc, tuple(cols))
        else:  # only the row groups whose file range holds these files
            files = sorted({w.rsplit("#", 1)[0] for w in want})
            where = cat.loc.at(part.uri)
            t = segments.read_parquet(where, cols, filters=[("file", "in", files)])
        tables.append(_unify_code(t.filter(pc.is_in(t.column("id"), pa.array(want))), cat.meta))
    if not tables:
        return pa.table({"id": pa.array([], pa.string())})
    return pa.concat_tables(tables, promote_options="permissive")


def _part_for(cat: Catalogue, rel: str) -> Part | None:
    for p in cat.parts:
        if p.kind == "shard" and p.name == rel:
            return p
    for p in cat.parts:
        held = cat.recorded.get(rel, (None, None))[1] == p.name and rel not in p.drop
        if p.kind == "segment" and held and p.lo <= rel <= p.hi:
            return replace(p, row_range=None)
    return None
