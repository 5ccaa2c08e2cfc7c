"""Archive files that have codes, as sorted columns: the segments' records and ingest's done-set.

Why columns: at archive size these maps hold a million files. As Python dicts of strings, floats
and tuples they cost ~600 bytes a file, and a re-plan over 1M compacted files peaked at 1.13 GB
(benchmarks/RESULTS.md, "Planning at archive size"). Here the relative paths are one sorted
Arrow string array with NumPy columns beside it (~80 bytes a file), and a listing is matched
against them a chunk at a time (`find`: Arrow's hash lookup against the chunk's range of the
sorted paths) instead of a lookup per file.
The Mapping interface (a binary search over the sorted paths) serves the few single lookups.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class FileRecords(Mapping):
    """{archive relpath: (shard mtime or None, segment name or None)}, sorted by relpath:
    which files the segments hold, from the shard written when (`segments.SegmentTable.state`).
    """

    def __init__(self, files: pa.Array, mtimes: np.ndarray, segment: np.ndarray, names=()):
        self.files = files  # pa.string(), sorted, unique (`build` makes them so)
        self.mtimes = mtimes  # float64 POSIX s, NaN where none was recorded
        self.segment = segment  # int32 index into `names`, -1 for none
        self.names = tuple(names)

    @classmethod
    def empty(cls) -> FileRecords:
        return cls(pa.array([], pa.string()), np.zeros(0), np.zeros(0, np.int32))

    @classmethod
    def build(cls, files, mtimes, segment=None, names: Sequence[str] = ()) -> FileRecords:
        """From unsorted columns in which a file may repeat: its last row wins, as in a dict
        filled in row order. `files`: strings (list or Arrow); `mtimes`: floats (None: NaN)."""
        files = _one_array(_string_array(files))
        mtimes = np.asarray(mtimes, np.float64)
        n = len(files)
        segment = np.full(n, -1, np.int32) if segment is None else np.asarray(segment, np.int32)
        if not n:
            return cls.empty()
        done = cls.if_sorted(files, mtimes, segment, names)
        if done is not None:  # already sorted and unique: no sort, no copy
            return done
        order = pc.sort_indices(
            pa.table({"f": files, "o": np.arange(n)}), [("f", "ascending"), ("o", "ascending")]
        )
        ordered = files.take(order)
        last = last_of_runs(ordered)
        rows = order.to_numpy()[last]
        return cls(ordered.filter(pa.array(last)), mtimes[rows], segment[rows], names)

    @classmethod
    def if_sorted(cls, files, mtimes, segment, names: Sequence[str] = ()) -> FileRecords | None:
        """The records as given when `files` are strictly increasing (sorted, unique), else
        None: the segments' files read in order of their ranges usually are."""
        files = _one_array(_string_array(files))
        if len(files) > 1 and not pc.all(pc.less(files[:-1], files[1:])).as_py():
            return None
        return cls(files, np.asarray(mtimes, np.float64), np.asarray(segment, np.int32), names)

    def updated(self, files: list[str], mtimes: list) -> FileRecords:
        """These records with `files` set to these mtimes (no segment): ingest's done-set, where
        a pending shard stands for its file whether or not a segment holds it too."""
        if not files:
            return self
        return FileRecords.build(
            pa.chunked_array([self.files, _string_array(files)], pa.string()),
            np.concatenate([self.mtimes, np.array(mtimes, np.float64)]),
            np.concatenate([self.segment, np.full(len(files), -1, np.int32)]),
            self.names,
        )

    def find(self, rels: list[str]) -> np.ndarray:
        """Row of each of `rels`, -1 where absent: one hash lookup against only the rows in
        the range of `rels` (a binary search at each end), so a chunk of a sorted listing costs
        its own size, not a hash of every file recorded."""
        if not rels or not len(self.files):
            return np.full(len(rels), -1, np.int64)
        keys = _Keys(self.files)
        lo, hi = bisect.bisect_left(keys, min(rels)), bisect.bisect_right(keys, max(rels))
        at = pc.index_in(pa.array(rels, pa.string()), value_set=self.files[lo:hi])
        at = np.asarray(pc.fill_null(at, -1).to_numpy(zero_copy_only=False), np.int64)
        return np.where(at >= 0, at + lo, -1)

    def lookup(self, rels: list[str]) -> list[tuple | None]:
        """(mtime, segment name) of each of `rels`, None where absent (vectorised `get`)."""
        return [self.record(i) if i >= 0 else None for i in self.find(rels).tolist()]

    def record(self, i: int) -> tuple:
        m, s = self.mtimes[i], int(self.segment[i])
        return (None if np.isnan(m) else float(m), self.names[s] if s >= 0 else None)

    def index(self, rel: str) -> int:
        """Row of `rel`, -1 where absent (a binary search: O(log n) Arrow scalars)."""
        i = bisect.bisect_left(_Keys(self.files), rel)
        return i if i < len(self.files) and self.files[i].as_py() == rel else -1

    def __getitem__(self, rel: str) -> tuple:
        i = self.index(rel) if isinstance(rel, str) else -1
        if i < 0:
            raise KeyError(rel)
        return self.record(i)

    def __iter__(self) -> Iterator[str]:
        return iter(self.files.to_pylist())

    def __len__(self) -> int:
        return len(self.files)


class FileTimes(Mapping):
    """The same records as {archive relpath: shard mtime}: ingest's done-set
    (`catalogue.committed_files`); `records` is what the planner matches a listing against."""

    def __init__(self, records: FileRecords):
        self.records = records

    def __getitem__(self, rel: str):
        return self.records[rel][0]

    def __iter__(self) -> Iterator[str]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)


class _Keys(Sequence):
    """The sorted paths as a sequence of str, for `bisect` (only the probes are converted)."""

    def __init__(self, files: pa.Array):
        self.files = files

    def __getitem__(self, i):
        return self.files[i].as_py()

    def __len__(self) -> int:
        return len(self.files)


def last_of_runs(files: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Mask of the rows whose next row holds another file (and the last row): in rows sorted
    by file, the last row of each file."""
    last = np.ones(len(files), bool)
    if len(files) > 1:
        last[:-1] = pc.not_equal(files[:-1], files[1:]).to_numpy(zero_copy_only=False)
    return last


def _one_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if not isinstance(values, pa.ChunkedArray):
        return values
    return values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()


def _string_array(values) -> pa.Array | pa.ChunkedArray:
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return pc.cast(values, pa.string())
    return pa.array(list(values), pa.string())
