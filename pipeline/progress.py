"""Progress lines on stderr for long jobs (search, benchmark, export, compact).

Why a helper: every long job reports the same way: done / total, rows, rate and elapsed time,
at most every `interval` seconds, through logging (stdout is reserved for the JSON summary).

A job that plans while it works (compaction lists pending shards a group at a time) starts with
`total=None`, adds work with `plan(n)` as it is planned and calls `planned()` once the plan is
complete: until then the lines read "done/total+ ... planned so far", so a partial total is never
taken for the whole.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("aurorahash.progress")


class Progress:
    def __init__(self, what: str, total: int | None, unit: str = "tasks", interval: float = 5.0):
        self.what, self.unit, self.interval = what, unit, interval
        self.total = 0 if total is None else int(total)
        self.complete = total is not None  # the total is final
        self.done_n = 0
        self.rows = 0
        self.t0 = time.perf_counter()
        self._next = self.t0 + interval

    def plan(self, n: int) -> None:
        """Add `n` to a total that is still being planned."""
        self.total += n

    def planned(self) -> None:
        """The plan is complete: the total is final."""
        self.complete = True

    def advance(self, n: int = 1, rows: int = 0) -> None:
        self.done_n += n
        self.rows += rows
        now = time.perf_counter()
        if now >= self._next:
            self._next = now + self.interval
            self._line(now)

    def done(self) -> None:
        self._line(time.perf_counter())

    def _line(self, now: float) -> None:
        dt = max(now - self.t0, 1e-9)
        total = f"{self.total}" if self.complete else f"{self.total}+"
        tail = "" if self.complete else " planned so far"
        log.info(
            "%s: %d/%s %s%s, %d rows, %.1f %s/s, %.1f s",
            self.what,
            self.done_n,
            total,
            self.unit,
            tail,
            self.rows,
            self.done_n / dt,
            self.unit,
            dt,
        )
