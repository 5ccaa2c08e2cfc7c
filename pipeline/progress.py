"""Progress lines on stderr for long jobs (search, benchmark, export, compact).

Why a helper: every long job reports the same way: done / total, rows, rate and elapsed time,
at most every `interval` seconds, through logging (stdout is reserved for the JSON summary).
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("aurorahash.progress")


class Progress:
    def __init__(self, what: str, total: int, unit: str = "tasks", interval: float = 5.0):
        self.what, self.total, self.unit, self.interval = what, int(total), unit, interval
        self.done_n = 0
        self.rows = 0
        self.t0 = time.perf_counter()
        self._next = self.t0 + interval

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
        log.info(
            "%s: %d/%d %s, %d rows, %.1f %s/s, %.1f s",
            self.what,
            self.done_n,
            self.total,
            self.unit,
            self.rows,
            self.done_n / dt,
            self.unit,
            dt,
        )
