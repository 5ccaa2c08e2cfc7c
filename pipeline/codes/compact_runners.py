"""Where compaction units run: this process, local worker processes, or Ray tasks.

Why three: a nightly compaction of one night is one unit and needs nothing else; a backfill on
one machine wants every core without paying Ray's start-up; a backfill of a year wants every node
of a cluster. Each runner yields the units' results as they finish (any order), with at most
2 x parallelism units started and not yet collected, so the driver's memory stays bounded too.
"""

from __future__ import annotations

import collections
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator


class InProcess:
    """One unit after another in this process."""

    parallelism = 1
    name = "in-process"

    def run(self, fn: Callable, calls: Iterable[tuple]) -> Iterator:
        for args in calls:
            yield fn(*args)


def _watch_parent(parent: int) -> None:
    """In a worker process: exit when the driver that started it is gone (killed), so that no
    worker outlives its job."""

    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="watch-parent").start()


def _full(args: tuple) -> bool:
    """A compaction unit cut at its job's target rows: the planner had more pending, so the
    workers start now, while it lists the next unit (a backfill paid that listing serially)."""
    job, unit = args
    return unit.rows >= job.target


class LocalProcesses:
    """Units in `workers` local processes (spawned: the driver holds delta-rs threads, which a
    fork would copy mid-state)."""

    name = "local-processes"

    def __init__(self, workers: int):
        self.parallelism = max(1, int(workers))

    def run(self, fn: Callable, calls: Iterable[tuple]) -> Iterator:
        calls = iter(calls)  # consumed lazily: the planner lists a group at a time
        head = list(itertools.islice(calls, 1))
        several = bool(head) and _full(head[0])
        if head and not several:  # planning the next unit decides
            head += itertools.islice(calls, 1)
            several = len(head) == 2
        rest = itertools.chain(head, calls)
        if self.parallelism == 1 or not several:  # a night: no process start-up to pay
            yield from InProcess().run(fn, rest)
            return
        yield from self._in_pool(fn, rest)

    def _in_pool(self, fn: Callable, calls: Iterable[tuple]) -> Iterator:
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        ctx = mp.get_context("spawn")
        pool = ProcessPoolExecutor(
            self.parallelism,
            mp_context=ctx,
            initializer=_watch_parent,
            initargs=(os.getpid(),),
        )
        try:
            pending = set()
            for args in calls:
                pending.add(pool.submit(fn, *args))
                while len(pending) >= 2 * self.parallelism:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    yield from (f.result() for f in done)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (f.result() for f in done)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


class RayTasks:
    """Units as Ray tasks spread over the cluster's nodes (one CPU each; retried if a node
    dies: a unit commits nothing, so running it twice only leaves an orphan file)."""

    name = "ray"

    def __init__(self):
        import ray

        self._ray = ray
        self.parallelism = max(1, int(ray.cluster_resources().get("CPU", 1)))

    def run(self, fn: Callable, calls: Iterable[tuple]) -> Iterator:
        ray = self._ray
        remote = ray.remote(num_cpus=1, max_retries=3, scheduling_strategy="SPREAD")(fn)
        pending = collections.deque()
        try:
            for args in calls:
                pending.append(remote.remote(*args))
                while len(pending) >= 2 * self.parallelism:
                    yield from self._collect(pending)
            while pending:
                yield from self._collect(pending)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def _collect(self, pending: collections.deque) -> Iterator:
        done, rest = self._ray.wait(list(pending), num_returns=1)
        pending.clear()
        pending.extend(rest)
        yield from self._ray.get(done)
