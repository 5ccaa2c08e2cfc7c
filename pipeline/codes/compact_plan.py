"""Planning a compaction a group (night) at a time, so that the driver never holds the whole
listing: a year is 5M shards, about 1 kB each as listed entries.

The model root is walked in canonical order down to the group depth (one `ls` per folder above
it); each group folder is listed on its own (one `find`), and files in shallower folders form
groups of their own. For each group, only the segments whose file range overlaps it are asked
which files they hold (their `(file, shard_mtime)` columns, kept while later groups may still
need them). A shard is pending when no segment holds its file with the same mtime.

A segment is rewritten (its kept rows merged into the unit of the shards that caused it) when it
holds a re-ingested file, when a pending file falls inside its range, or, the last segment, while
it is below the target and pending files come after it. Units are swept from these items in
canonical order (`Planner.units`, lazily): whole groups, about `target` estimated rows each,
never closing inside a rewritten segment's range.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow.parquet as pq

from pipeline import storage
from pipeline.codes import catalogue, pending, segments, store
from pipeline.codes.compact_unit import Unit, group_key, should_cut
from pipeline.codes.segments import Segment, SegmentState
from pipeline.storage import Location

UNSIZED_SHARD_ROWS = 20  # row estimate of a shard on a store that reports no sizes
SAMPLE_FOOTERS = 8  # footers read to estimate rows per shard byte


# ------------------------------------------------------------------------------ listing


def shard_groups(root: Location, depth: int) -> Iterator[dict]:
    """{shard uri: (mtime, size)} dicts in canonical order, each within one group: one per group
    folder at `depth`, and one per run of shards in a shallower folder. On a root whose pending
    marks are authoritative (`pending`), only marked folders are listed: O(pending shards), and
    a shard whose run was killed before its mark is left for that file's re-ingest."""
    if not root.isdir():
        yield catalogue.list_shard_entries(root)
        return
    marked = _Marked(root, depth) if pending.is_marked_root(root) else None
    yield from _walk(root, root.path, 0, depth, marked)


class _Marked:
    """The marked folders of a root, by the group (first `depth` components) they lie in."""

    def __init__(self, root: Location, depth: int):
        self.folders = set(pending.list_marks(root))
        self.ancestors = {posixpath.dirname(f) for f in self.folders}
        for f in list(self.ancestors):
            while f:
                f = posixpath.dirname(f)
                self.ancestors.add(f)
        self.groups: dict[str, list[str]] = {}
        depth = max(1, depth)  # `_walk` makes each top-level folder a group at depth 0 too
        for f in self.folders:
            parts = f.split("/")
            if f and len(parts) >= depth:
                self.groups.setdefault("/".join(parts[:depth]), []).append(f)

    def holds(self, rel: str) -> bool:
        """Whether a marked folder is `rel` or lies below it."""
        return rel in self.folders or rel in self.ancestors


def _walk(root: Location, path: str, level: int, depth: int, marked) -> Iterator[dict]:
    keyed = []
    here = path[len(root.path) :].strip("/")
    for e in root.fs.ls(path, detail=True):
        name = posixpath.basename(e["name"].rstrip("/"))
        if storage.is_hidden(name):
            continue
        if e.get("type") == "directory":
            if marked is None or marked.holds(posixpath.join(here, name)):
                keyed.append((name + "/", e))  # its files sort as `name/...` among the loose ones
        elif name.endswith(store.SHARD_SUFFIX) and (marked is None or here in marked.folders):
            keyed.append((name[: -len(store.SHARD_SUFFIX)], e))
    keyed.sort(key=lambda k: k[0])
    loose = {}
    for key, e in keyed:
        uri = storage.join_uri(root.protocol, e["name"].rstrip("/"))
        if not key.endswith("/"):
            loose[uri] = (storage.mtime_of(e), e.get("size"))
            continue
        if loose:
            yield loose
            loose = {}
        if level + 1 >= depth and marked is None:
            yield catalogue.list_shard_entries(root.at(uri))
        elif level + 1 >= depth:
            group = posixpath.join(here, key[:-1])
            yield pending.folder_entries(root, marked.groups.get(group, []))
        else:
            yield from _walk(root, e["name"].rstrip("/"), level + 1, depth, marked)
    if loose:
        yield loose


# ------------------------------------------------------------------------------ planning


@dataclass
class Planner:
    """What to compact, a group at a time, against the table state `seg` (read without the
    segments' file lists: those are read per group)."""

    root: Location
    seg: SegmentState
    target: int
    depth: int
    meta: store.ShardMeta | None = None
    per_byte: float | None = None
    shards: int = 0  # pending shards planned so far
    _held: dict = field(default_factory=dict)  # segment name -> {file: shard mtime}
    _taken: set = field(default_factory=set)  # segments already given to a unit

    def units(self) -> Iterator[Unit]:
        """The units, in canonical order, as the groups are listed."""
        sweep = _Sweep(self.target, self.depth)
        for entries in shard_groups(self.root, self.depth):
            items = self._group_items(entries)
            for it in sorted(items, key=lambda it: (it[0], it[1])):
                yield from sweep.add(*it)
        yield from sweep.close()

    def _group_items(self, entries: dict) -> list[tuple]:
        """(lo, hi, rows, item) of the group's pending shards and the segments they rewrite."""
        if not entries:
            return []
        rel_of = {u: catalogue.shard_relpath(u, self.root.uri) for u in entries}
        lo, hi = min(rel_of.values()), max(rel_of.values())
        held = self._holding(lo, hi)
        pending, rewrite = [], set()
        for u, (mtime, size) in entries.items():
            rel = rel_of[u]
            rec = held.get(rel)
            if rec is not None and (mtime is None or rec[0] == mtime):
                continue  # compacted, and not rewritten since
            pending.append((u, rel, mtime, size))
            if rec is not None:
                rewrite.add(rec[1])  # it holds the re-ingested file's old rows
        if not pending:
            return []
        self._first_pending(pending)
        self.shards += len(pending)
        rewrite |= self._rewritten_by(p[1] for p in pending)
        items = [(r, r, self._estimate(sz), (r, m)) for _, r, m, sz in pending]
        by_name = {s.name: s for s in self.seg.segments}
        for name in sorted(rewrite - self._taken):
            s = by_name[name]
            self._taken.add(name)
            items.append((s.lo, s.hi, s.rows, s))
        return items

    def _holding(self, lo: str, hi: str) -> dict:
        """{file: (shard mtime, segment name)} of the segments overlapping [lo, hi]."""
        out = {}
        for s in self.seg.segments:
            if s.hi < lo or s.lo > hi:
                continue
            if s.name not in self._held:
                t = segments.read_parquet(self.root.at(s.uri), columns=["file", "shard_mtime"])
                t = t.group_by(["file", "shard_mtime"]).aggregate([])
                files, mt = t.column("file").to_pylist(), t.column("shard_mtime").to_pylist()
                self._held[s.name] = dict(zip(files, mt, strict=True))
            out.update({f: (m, s.name) for f, m in self._held[s.name].items()})
        for name in [n for n in self._held if self._segment(n).hi < lo]:
            del self._held[name]  # groups come in order: no later group overlaps it
        return out

    def _segment(self, name: str) -> Segment:
        return next(s for s in self.seg.segments if s.name == name)

    def _rewritten_by(self, rels) -> set:
        """Segments that pending files fall inside, and the small last one that they follow."""
        last = max(self.seg.segments, key=lambda s: s.hi, default=None)
        out = set()
        for rel in rels:
            for s in self.seg.segments:
                if s.lo <= rel <= s.hi:
                    out.add(s.name)
            if last is not None and last.rows < self.target and rel > last.hi:
                out.add(last.name)
        return out

    def _first_pending(self, pending: list) -> None:
        """From the first group with pending shards: the metadata (no table yet) and the rows per
        shard byte, from a few footers spread over it (minute shards are alike)."""
        if self.meta is not None:
            return
        self.meta = self.seg.meta or store.shard_meta(self.root.at(pending[0][0]))
        n = len(pending)
        picks = sorted({round(j * (n - 1) / (SAMPLE_FOOTERS - 1)) for j in range(SAMPLE_FOOTERS)})
        rows = size = 0
        for i in picks:
            uri, _, _, sz = pending[i]
            if not sz:
                return
            with self.root.at(uri).open("rb") as f:
                rows += pq.ParquetFile(f).metadata.num_rows
            size += sz
        self.per_byte = rows / size

    def _estimate(self, size) -> int:
        if self.per_byte is None or not size:  # a store that reports no sizes
            return UNSIZED_SHARD_ROWS
        return max(1, round(int(size) * self.per_byte))


class _Sweep:
    """Cuts items (in canonical order of `lo`) into units: at a group boundary once a unit has
    `target` rows, anywhere once twice that, never inside the range of an item already in it."""

    def __init__(self, target: int, depth: int):
        self.target, self.depth, self.index = target, depth, 0
        self.shards, self.rewrite, self.rows, self.hi = [], [], 0, None

    def add(self, lo: str, hi: str, rows: int, item) -> Iterator[Unit]:
        if self.hi is not None and lo > self.hi and self.rows:
            new_group = group_key(lo, self.depth) != group_key(self.hi, self.depth)
            if should_cut(self.rows, self.target, new_group):
                yield from self.close()
        if isinstance(item, Segment):
            self.rewrite.append(item)
        else:
            self.shards.append(item)
        self.rows += rows
        self.hi = hi if self.hi is None else max(self.hi, hi)

    def close(self) -> Iterator[Unit]:
        if self.shards or self.rewrite:
            yield Unit(self.index, tuple(self.shards), tuple(self.rewrite), self.rows)
            self.index += 1
        self.shards, self.rewrite, self.rows, self.hi = [], [], 0, None
