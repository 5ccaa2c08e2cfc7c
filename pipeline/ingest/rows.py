"""The read-row protocol: what a read row stands for, and what one file's rows come to.

Why a module of its own: read tasks (`pipeline.ingest.read`) write rows of these kinds, and the
committer, `check` and the in-process reads of training and queries all decide what a file
yields from them. `FileOutcome` is that decision, made in one place, so that an ingest, a check
and a training read cannot disagree about the same file.

    outcome = reduce_file(rows)  # rows: mappings with kind, frame, reason, in `seq` order
    outcome.frames, outcome.problems, outcome.verdict, outcome.reason
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple


class RowKind(str, Enum):
    """The `kind` column of a read row (`pipeline.ingest.read.ROW_SCHEMA`). A str enum, so the
    Arrow column stays the plain string and `RowKind.FRAME == "frame"`."""

    FRAME = "frame"  # a readable frame: pixels, shape, dtype (pipeline.ingest.frame_rows)
    ERROR = "error"  # a frame the reader or preprocessing rejected, with its reason: quarantined
    CORRUPT = "corrupt"  # nothing (more) in the file could be read (CorruptFile)
    SKIP = "skip"  # the file is deliberately not ingested (SkipFile, e.g. THEMIS thumbnails)
    FAIL = "fail"  # reading failed, not through the file's fault (I/O): retried on a re-run
    END = "end"  # a file's last row: `expected` rows precede it, `timings` its read seconds

    def __str__(self) -> str:
        return self.value


class Verdict(str, Enum):
    """What becomes of one file: `check`'s per-file status and the committer's branch."""

    OK = "ok"  # every frame ingested
    QUARANTINE = "quarantine"  # some frames quarantined, the rest ingested
    CORRUPT = "corrupt"  # a corrupt row: a shard of what was read + a quarantine record
    IGNORED = "ignored"  # not ingested, recorded as such (a skip row)
    FAILED = "failed"  # not committed; the job fails it and a re-run retries it (a fail row)

    def __str__(self) -> str:
        return self.value


class Problem(NamedTuple):
    """One line of a file's quarantine record."""

    frame: int | None  # None: the file as a whole (a corrupt row), or no frame index
    reason: str


@dataclass
class FileOutcome:
    """One archive file's rows, reduced: fed in `seq` order, one row at a time (`add`), so a
    consumer may keep counts of a file it is still reading."""

    dropped: int = 0  # problems a consumer counted without keeping them (the committer's cap)
    frames: list = field(default_factory=list)  # frame rows, the first of each frame index
    problems: list[Problem] = field(default_factory=list)  # in row order
    corrupt: bool = False
    stops: dict = field(default_factory=dict)  # RowKind.SKIP / FAIL -> its first row's reason
    _indices: set = field(default_factory=set, repr=False)

    def add(self, row: Mapping) -> RowKind:
        """Take one row (any kind; an end row changes nothing) and return its kind."""
        kind = RowKind(row["kind"])
        reason = row.get("reason")
        if kind is RowKind.FRAME:
            if row["frame"] in self._indices:
                self.problems.append(Problem(row["frame"], "duplicate frame index in file"))
            else:
                self._indices.add(row["frame"])
                self.frames.append(row)
        elif kind is RowKind.ERROR:
            frame = row.get("frame")
            frame = None if frame is None or frame < 0 else frame
            self.problems.append(Problem(frame, reason or kind.value))
        elif kind is RowKind.CORRUPT:
            self.corrupt = True
            self.problems.append(Problem(None, reason or kind.value))
        elif kind in (RowKind.SKIP, RowKind.FAIL):
            self.stops.setdefault(kind, reason)
        return kind

    @property
    def n_problems(self) -> int:
        return len(self.problems) + self.dropped

    @property
    def verdict(self) -> Verdict:
        if RowKind.SKIP in self.stops:
            return Verdict.IGNORED
        if RowKind.FAIL in self.stops:
            return Verdict.FAILED
        if self.corrupt:
            return Verdict.CORRUPT
        return Verdict.QUARANTINE if self.n_problems else Verdict.OK

    @property
    def stop(self) -> tuple[RowKind, str | None] | None:
        """(kind, reason as the row gave it) of the row that stops the file: skip before fail."""
        for kind in (RowKind.SKIP, RowKind.FAIL):
            if kind in self.stops:
                return kind, self.stops[kind]
        return None

    @property
    def reason(self) -> str | None:
        """Why the file is ignored or failed (the row's reason, None if it gave none)."""
        stop = self.stop
        return None if stop is None else stop[1]


def reduce_file(rows: Iterable[Mapping], dropped: int = 0) -> FileOutcome:
    """The outcome of one file's rows, given in `seq` order."""
    outcome = FileOutcome(dropped=dropped)
    for row in rows:
        outcome.add(row)
    return outcome
