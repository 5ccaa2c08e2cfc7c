"""Hamming k-NN and MAP over a catalogue of codes, in row-sized tasks, merged exactly.

Why tasks: an archive's codes are spread over segments and per-file shards
(`pipeline.codes.catalogue`). `catalogue.plan_tasks` cuts them into contiguous ranges of the
canonical (file, frame) order of about a million rows each; each task reads its range and runs the
Numba kernels on it; the driver merges small per-task results as they arrive (a bounded number in
flight), so it holds O(queries x k) for k-NN and O(queries x bits) per task for MAP, whatever the
number of shards. The answers equal one search over the concatenated database in canonical order
(global index = position in that order).

- k-NN: per-task top-k, merged in task order by (distance, global index).
- MAP, ties="aware": per-task per-distance histograms (all / relevant items), summed.
- MAP, ties="index": two passes. Pass 1 gives the histograms; pass 2 gives each task, per query
  and distance, how many items rank before its own (global counts at smaller distances plus counts
  at the same distance in earlier tasks), from which the task sums its exact precisions.
- AP@K: the merged top-K list with the neighbours' labels.

Tasks run on Ray when an executor is given (`RayExecutor`: one CPU and one Numba thread each, as
many at once as the cluster has CPUs), else in this process with every core in the kernels.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

import kernels
from pipeline import metrics
from pipeline.codes import catalogue
from pipeline.codes.catalogue import Catalogue, Task
from pipeline.errors import BadInput
from pipeline.progress import Progress

log = logging.getLogger(__name__)

NO_LABEL = -1  # frames without a ground-truth label: never relevant, never queries


# ----------------------------------------------------------------------------------- executors


class LocalExecutor:
    """Runs tasks in this process, one at a time (the kernels use every core themselves)."""

    parallelism = 1

    def put(self, value):
        return value

    def submit(self, fn: Callable, *args):
        return fn(*args)

    def get(self, handle):
        return handle


def _with_threads(fn: Callable, threads: int, *args):
    """Run `fn` with Numba limited to the task's CPUs (Ray workers would otherwise each start
    a thread per core of the node and oversubscribe it).

    Arrays from Ray's object store arrive read-only, and Numba compiles (and caches) a separate
    specialisation for read-only arrays: 18 s in each new worker. The small ones (queries,
    labels, prefix counts) are copied instead.
    """
    import numba

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    args = [a.copy() if isinstance(a, np.ndarray) and not a.flags.writeable else a for a in args]
    return fn(*args)


def _warm_up() -> None:
    q = np.zeros((1, 1), np.uint64)
    kernels.hamming_knn(q, q, 1)
    kernels.distance_histograms(q, q, np.zeros(1, np.int64), np.zeros(1, np.int64))


class RayExecutor:
    """Runs tasks as Ray tasks (one CPU each, retried if a node dies).

    Results stay in Ray's object store until the driver reads them, in order, a bounded number at
    a time (`parallelism` x 2 in flight).
    """

    def __init__(self, num_cpus: int = 1):
        import ray

        self._ray = ray
        self.num_cpus = num_cpus
        self._remote = ray.remote(num_cpus=num_cpus, max_retries=3)(_with_threads)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.parallelism = max(1, cpus // num_cpus)
        # Workers import the kernels and load them from Numba's cache (~1 s) now, while the
        # driver still reads: a fire-and-forget task per CPU.
        warm = ray.remote(num_cpus=num_cpus)(_warm_up)
        self._warming = [warm.remote() for _ in range(self.parallelism)]

    def put(self, value):
        return self._ray.put(value)

    def submit(self, fn: Callable, *args):
        return self._remote.remote(fn, self.num_cpus, *args)

    def get(self, handle):
        return self._ray.get(handle)


def _in_order(executor, calls: Iterable[tuple]) -> Iterator:
    """Results of (fn, *args) calls in input order, at most 2 x parallelism pending; `calls` is
    consumed lazily, so what it puts in the object store is bounded too."""
    window = 2 * getattr(executor, "parallelism", 1)
    pending = []
    for fn, *args in calls:
        pending.append(executor.submit(fn, *args))
        if len(pending) >= window:
            yield executor.get(pending.pop(0))
    while pending:
        yield executor.get(pending.pop(0))


def plan(cat: Catalogue, executor, task_rows: int | None = None) -> list[Task]:
    """Tasks of about `task_rows` rows; on a cluster small enough to give every CPU two."""
    if task_rows is None:
        task_rows = catalogue.DEFAULT_TASK_ROWS
        par = getattr(executor, "parallelism", 1)
        if par > 1:
            task_rows = max(100_000, min(task_rows, cat.n_rows // (2 * par)))
    return catalogue.plan_tasks(cat.parts, task_rows)


# ------------------------------------------------------------------------------------ k-NN


def _task_knn(task: Task, meta, loc, queries, k):
    t = catalogue.read_task(task, meta, loc, ("id", "code", "label"))
    codes, labels = catalogue.codes_labels(t, meta)
    n = len(codes)
    if n == 0:
        q = len(queries)
        empty = np.zeros((q, 0), np.int64)
        return empty.astype(np.int32), empty, np.zeros((q, 0), object), empty, 0
    D, idx = kernels.hamming_knn(queries, codes, min(k, n))
    ids = t.column("id").take(idx.ravel()).to_numpy(zero_copy_only=False).reshape(idx.shape)
    return D, idx, ids, labels[idx], n


def _take(order, a, b):
    return np.take_along_axis(np.concatenate([a, b], axis=1), order, axis=1)


@dataclass
class KnnResult:
    distances: np.ndarray  # (q, k) int32
    indices: np.ndarray  # (q, k) int64, global (canonical order)
    ids: np.ndarray  # (q, k) object
    labels: np.ndarray  # (q, k) int64
    n_database: int
    seconds: float
    tasks: int = 0


def _check_queries(queries, cat: Catalogue) -> np.ndarray:
    queries = np.ascontiguousarray(queries, dtype=np.uint64)
    if queries.ndim != 2 or queries.shape[1] != cat.meta.words:
        raise BadInput(
            f"query codes have shape {queries.shape}: {cat.meta.words} words expected for "
            f"the {cat.meta.nbits}-bit codes of {cat.root}"
        )
    return queries


def search(
    queries: np.ndarray,
    cat: Catalogue,
    k: int,
    executor=None,
    task_rows: int | None = None,
) -> KnnResult:
    """Exact Hamming k-NN of packed `queries` over the catalogue; ties by canonical order."""
    if k < 1:
        raise BadInput(f"k must be >= 1, got {k}")
    queries = _check_queries(queries, cat)
    executor = executor or LocalExecutor()
    t0 = time.perf_counter()
    tasks = plan(cat, executor, task_rows)
    progress = Progress("search", len(tasks))
    q = len(queries)
    best = (np.zeros((q, 0), np.int32), np.zeros((q, 0), np.int64))
    best_ids, best_lab = np.zeros((q, 0), object), np.zeros((q, 0), np.int64)
    offset = 0
    qref = executor.put(queries)
    calls = ((_task_knn, t, cat.meta, cat.loc, qref, k) for t in tasks)
    for D, idx, ids, lab, n in _in_order(executor, calls):
        # Current candidates all precede this task's rows, so a stable sort by distance of
        # [current, new] orders by (distance, global index).
        Dc = np.concatenate([best[0], D], axis=1)
        order = np.argsort(Dc, axis=1, kind="stable")[:, :k]
        best = (np.take_along_axis(Dc, order, axis=1), _take(order, best[1], idx + offset))
        best_ids, best_lab = _take(order, best_ids, ids), _take(order, best_lab, lab)
        offset += n
        progress.advance(1, n)
    progress.done()
    if offset == 0:
        raise BadInput(f"no codes under {cat.root}")
    return KnnResult(
        distances=best[0].astype(np.int32),
        indices=best[1],
        ids=best_ids,
        labels=best_lab,
        n_database=offset,
        seconds=time.perf_counter() - t0,
        tasks=len(tasks),
    )


# ------------------------------------------------------------------------------------- MAP


def _task_codes(task, meta, loc):
    t = catalogue.read_task(task, meta, loc, ("code", "label"))
    return catalogue.codes_labels(t, meta)


def _task_hist(task, meta, loc, queries, qlabels):
    codes, labels = _task_codes(task, meta, loc)
    all_c, rel_c = kernels.distance_histograms(queries, codes, qlabels, labels)
    return all_c.astype(np.int32), rel_c.astype(np.int32), len(codes)


def _task_partial(task, meta, loc, queries, qlabels, before_all, before_rel):
    codes, labels = _task_codes(task, meta, loc)
    return kernels.ap_index_partial(queries, codes, qlabels, labels, before_all, before_rel)


@dataclass(kw_only=True)
class MapResult(metrics.RetrievalMetrics):
    """The benchmark's `RetrievalMetrics`, with the per-query arrays the exact merge made."""

    aps: np.ndarray  # (q,) ties="index"
    aps_tie_aware: np.ndarray
    query_labels: np.ndarray  # (q,) of the labelled queries scored, in the order of `aps`
    hist_all: np.ndarray  # (q, nbits + 1) database items at each distance, summed over tasks
    hist_rel: np.ndarray  # (q, nbits + 1) the relevant ones


def _histograms(executor, tasks, cat, qref, lref):
    """Pass 1: per-task histograms (kept, int32, for pass 2's running prefix) and their sums."""
    progress = Progress("benchmark pass 1/2", len(tasks))
    per_task, total_all, total_rel, n_db = [], 0, 0, 0
    calls = ((_task_hist, t, cat.meta, cat.loc, qref, lref) for t in tasks)
    for all_c, rel_c, n in _in_order(executor, calls):
        per_task.append((all_c, rel_c))
        total_all = total_all + all_c.astype(np.int64)
        total_rel = total_rel + rel_c.astype(np.int64)
        n_db += n
        progress.advance(1, n)
    progress.done()
    return per_task, total_all, total_rel, n_db


def _index_tie_sums(executor, tasks, cat, qref, lref, per_task, total_all, total_rel):
    """Pass 2: exact ties="index" precision sums, task by task with the running prefix."""
    progress = Progress("benchmark pass 2/2", len(tasks))
    before_all = np.cumsum(total_all, axis=1) - total_all  # items at smaller distances
    before_rel = np.cumsum(total_rel, axis=1) - total_rel

    def calls():
        nonlocal before_all, before_rel
        for task, (all_c, rel_c) in zip(tasks, per_task, strict=True):
            ba, br = executor.put(before_all), executor.put(before_rel)
            yield _task_partial, task, cat.meta, cat.loc, qref, lref, ba, br
            before_all = before_all + all_c  # earlier tasks' items at one distance rank first
            before_rel = before_rel + rel_c

    sums = np.zeros(total_all.shape[0])
    for part in _in_order(executor, calls()):
        sums += part
        progress.advance(1)
    progress.done()
    return sums


def evaluate_map(
    queries: np.ndarray,
    query_labels: np.ndarray,
    cat: Catalogue,
    executor=None,
    topk: int | None = None,
    task_rows: int | None = None,
) -> MapResult:
    """Exact MAP of labelled packed `queries` against the whole catalogue (module docstring)."""
    queries = _check_queries(queries, cat)
    qlabels = np.asarray(query_labels, dtype=np.int64)
    keep = qlabels != NO_LABEL
    if not keep.any():
        raise BadInput("no labelled queries: MAP needs ground-truth labels")
    queries, qlabels = np.ascontiguousarray(queries[keep]), qlabels[keep]
    executor = executor or LocalExecutor()
    t0 = time.perf_counter()
    tasks = plan(cat, executor, task_rows)
    qref, lref = executor.put(queries), executor.put(qlabels)
    per_task, total_all, total_rel, n_db = _histograms(executor, tasks, cat, qref, lref)
    if n_db == 0:
        raise BadInput(f"no codes under {cat.root}")
    aps_aware = kernels.ap_tie_aware_from_histograms(total_all, total_rel)
    sums = _index_tie_sums(executor, tasks, cat, qref, lref, per_task, total_all, total_rel)
    n_rel = total_rel.sum(axis=1)
    aps = np.divide(sums, n_rel, out=np.zeros_like(sums), where=n_rel > 0)
    map_at_k = None
    if topk is not None:
        knn = search(queries, cat, topk, executor, task_rows)
        map_at_k = float(kernels.ap_from_neighbors(knn.labels == qlabels[:, None]).mean())
    radii = cat.meta.nbits + 1  # distances above nbits never occur: no padding to 64 * words
    hist_all, hist_rel = total_all[:, :radii], total_rel[:, :radii]
    precision, recall = kernels.pr_curve_from_histograms(hist_all, hist_rel)
    ks = metrics.k_grid(n_db, topk)
    return MapResult(
        nbits=cat.meta.nbits,
        n_queries=len(queries),
        n_database=n_db,
        map=float(aps.mean()),
        map_tie_aware=float(aps_aware.mean()),
        topk=topk,
        map_at_k=map_at_k,
        precision_at_k_tie_aware=metrics.precision_at_k_from_histograms(hist_all, hist_rel, ks),
        pr_precision=[float(v) for v in precision],
        pr_recall=[float(v) for v in recall],
        per_class=metrics.per_class(aps, aps_aware, qlabels, cat.meta.classes),
        seconds=time.perf_counter() - t0,
        tasks=len(tasks),
        aps=aps,
        aps_tie_aware=aps_aware,
        query_labels=qlabels,
        hist_all=hist_all,
        hist_rel=hist_rel,
    )


# ------------------------------------------------------------------------------------ queries


def load_all(cat: Catalogue) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes, labels, ids) of a whole (small) catalogue in canonical order: query sets."""
    codes, labels, ids = [], [], []
    for task in catalogue.plan_tasks(cat.parts):
        t = catalogue.read_task(task, cat.meta, cat.loc, ("id", "code", "label"))
        c, lab = catalogue.codes_labels(t, cat.meta)
        codes.append(c)
        labels.append(lab)
        ids.append(t.column("id").to_numpy(zero_copy_only=False))
    if not codes:
        raise BadInput(f"no codes under {cat.root}")
    return np.concatenate(codes), np.concatenate(labels), np.concatenate(ids).astype(object)
