"""Time measurement shared by the benchmarks: best of N runs, and rounds of several functions
interleaved (so a busy spell on a shared machine hits all of them alike). Wall time by default;
`clock=time.process_time` gives the process's CPU time instead, which leaves out the spells when
a busy machine runs other work (for one-thread runs, where it equals the compute time)."""

from __future__ import annotations

import statistics
import time


def interleaved(fns, repeat: int, clock=time.perf_counter) -> list[tuple[float, float, object]]:
    """Run the functions in turn, `repeat` rounds; per function (best, median, last result)."""
    times = [[] for _ in fns]
    outs = [None] * len(fns)
    for _ in range(max(1, repeat)):
        for i, fn in enumerate(fns):
            t0 = clock()
            outs[i] = fn()
            times[i].append(clock() - t0)
    return [(min(t), statistics.median(t), o) for t, o in zip(times, outs, strict=True)]


def best_of(fn, repeat: int = 1) -> tuple[float, object]:
    """(best wall seconds of `repeat` runs, the last run's result)."""
    best, _, out = interleaved([fn], repeat)[0]
    return best, out
