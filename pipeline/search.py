"""Hamming k-NN and MAP across a dataset of code shards, one task per shard, merged exactly.

Why per shard: an archive's codes are spread over thousands of Parquet shards (one per archive
file) on local disk or S3. Each task reads one shard and runs the Numba kernels on it; the driver
merges small per-shard results, so nothing ever holds a queries x database matrix, and the answers
equal a single search over the concatenated database (global index = shard order, then row order).

- k-NN: per-shard top-k, merged by (distance, global index) with `kernels.merge_knn`.
- MAP, ties="aware": per-shard per-distance histograms (all / relevant items), summed.
- MAP, ties="index": two passes. Pass 1 gives the histograms; pass 2 gives each shard, per query
  and distance, how many items rank before its own (global counts at smaller distances plus counts
  at the same distance in earlier shards), from which the shard sums its exact precisions.
- AP@K: the merged top-K list with the neighbours' labels.

Tasks run on Ray when an executor is given (`RayExecutor`), else in this process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

import kernels
from pipeline import store
from pipeline.errors import BadInput

log = logging.getLogger(__name__)

NO_LABEL = -1  # frames without a ground-truth label: never relevant, never queries


# ------------------------------------------------------------------------------- shard loading


@dataclass
class ShardCodes:
    uri: str
    codes: np.ndarray  # (n, words) uint64
    ids: np.ndarray  # (n,) object (str)
    labels: np.ndarray  # (n,) int64, NO_LABEL where missing
    meta: store.ShardMeta


def load_shard(uri: str, storage_options: dict | None = None) -> ShardCodes:
    table = store.read_shard(uri, storage_options, columns=["id", "code", "label"])
    meta = store.shard_meta(table)
    labels = table.column("label").to_numpy(zero_copy_only=False)
    if labels.dtype.kind == "f":
        labels = np.where(np.isnan(labels), NO_LABEL, labels)
    return ShardCodes(
        uri=uri,
        codes=store.codes_to_numpy(table.column("code"), meta.nbits),
        ids=np.asarray(table.column("id").to_pylist(), dtype=object),
        labels=np.asarray(labels, dtype=np.int64),
        meta=meta,
    )


def resolve_shards(uri: str, storage_options: dict | None = None, model: str | None = None):
    """The shard URIs of one model under `uri`, and that model's metadata.

    `uri` may be an ingest output (OUT, holding OUT/<model12>/...), one model's folder, or a file.
    With several models and no `model`, the choice is the caller's: BadInput lists them.
    """
    shards = store.list_shards(uri, storage_options)
    if not shards:
        raise BadInput(f"no code shards under {uri}")
    metas = {}
    keep = []
    for s in shards:
        m = store.shard_meta(s, storage_options)
        if model is not None and not m.model.startswith(model):
            continue
        metas.setdefault(m.model, m)
        keep.append(s)
    if not keep:
        raise BadInput(f"no code shards of model {model} under {uri}")
    if len(metas) > 1:
        names = ", ".join(sorted(m[:12] for m in metas))
        raise BadInput(f"{uri} holds shards of several models ({names}); choose one with --model")
    (meta,) = metas.values()
    return keep, meta


def models_under(uri: str, storage_options: dict | None = None) -> dict[str, list[str]]:
    """model sha256 -> its shard URIs, for benchmarking every model found under `uri`."""
    out: dict[str, list[str]] = {}
    for s in store.list_shards(uri, storage_options):
        out.setdefault(store.shard_meta(s, storage_options).model, []).append(s)
    return out


# ----------------------------------------------------------------------------------- executors


class LocalExecutor:
    """Runs shard tasks in this process (the kernels are multi-threaded themselves)."""

    def put(self, value):
        return value

    def submit(self, fn: Callable, *args):
        return fn(*args)

    def get(self, handle):
        return handle


class RayExecutor:
    """Runs shard tasks as Ray tasks (one CPU each, retried if a node dies).

    Results stay in Ray's object store (which spills to disk) until the driver reads them one at a
    time, so the driver's memory does not grow with the number of shards.
    """

    def __init__(self, num_cpus: float = 1):
        import ray

        self._ray = ray
        self.num_cpus = num_cpus
        self._remote = {}

    def put(self, value):
        return self._ray.put(value)

    def submit(self, fn: Callable, *args):
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = self._ray.remote(num_cpus=self.num_cpus, max_retries=3)(fn)
        return remote.remote(*args)

    def get(self, handle):
        return self._ray.get(handle)


def _in_order(executor, fn: Callable, items: Sequence, *args, window: int = 64) -> Iterator:
    """fn(item, *args) for each item, results in input order, at most `window` pending."""
    pending = []
    for item in items:
        pending.append(executor.submit(fn, item, *args))
        if len(pending) >= window:
            yield executor.get(pending.pop(0))
    while pending:
        yield executor.get(pending.pop(0))


# ------------------------------------------------------------------------------------ k-NN


def _shard_knn(uri, queries, k, storage_options):
    sc = load_shard(uri, storage_options)
    n = len(sc.codes)
    if n == 0:
        q = len(queries)
        return (np.zeros((q, 0), np.int32), np.zeros((q, 0), np.int64), [], [], 0, sc.meta)
    kk = min(k, n)
    D, idx = kernels.hamming_knn(queries, sc.codes, kk)
    return D, idx, sc.ids[idx], sc.labels[idx], n, sc.meta


@dataclass
class KnnResult:
    distances: np.ndarray  # (q, k) int32
    indices: np.ndarray  # (q, k) int64, global (shard order, then row order)
    ids: np.ndarray  # (q, k) object
    labels: np.ndarray  # (q, k) int64
    n_database: int
    seconds: float


def _check_width(queries, shards, storage_options, nbits=None):
    if queries.ndim != 2 or not len(shards):
        raise BadInput("queries must be (q, words) packed codes and there must be shards")
    meta = store.shard_meta(shards[0], storage_options)
    if meta.words != queries.shape[1] or (nbits is not None and meta.nbits != nbits):
        raise BadInput(
            f"query codes have {queries.shape[1]} words; the shards hold {meta.nbits}-bit codes"
        )


def search(
    queries: np.ndarray,
    shards: Sequence[str],
    k: int,
    storage_options: dict | None = None,
    executor=None,
    nbits: int | None = None,
) -> KnnResult:
    """Exact Hamming k-NN of packed `queries` over all `shards`; ties broken by global index."""
    if k < 1:
        raise BadInput(f"k must be >= 1, got {k}")
    queries = np.ascontiguousarray(queries, dtype=np.uint64)
    _check_width(queries, shards, storage_options, nbits)
    executor = executor or LocalExecutor()
    t0 = time.perf_counter()
    q = len(queries)
    Ds, Is, ids, labs = [], [], [], []
    offset = 0
    qref = executor.put(queries)
    for D, idx, sid, slab, n, meta in _in_order(
        executor, _shard_knn, shards, qref, k, storage_options
    ):
        if meta.words != queries.shape[1] or (nbits is not None and meta.nbits != nbits):
            raise BadInput(
                f"query codes have {queries.shape[1]} words; shards hold {meta.nbits} bits"
            )
        if n:
            Ds.append(D)
            Is.append(idx + offset)
            ids.append(np.asarray(sid, dtype=object).reshape(q, -1))
            labs.append(np.asarray(slab, dtype=np.int64).reshape(q, -1))
        offset += n
    if not Ds:
        raise BadInput("the database shards hold no codes")
    D, I = kernels.merge_knn(Ds, Is, k)
    # Look the merged neighbours' ids/labels up in the per-shard candidates.
    cand_I = np.concatenate(Is, axis=1)
    cand_ids = np.concatenate(ids, axis=1)
    cand_lab = np.concatenate(labs, axis=1)
    order = np.argsort(cand_I, axis=1, kind="stable")
    sorted_I = np.take_along_axis(cand_I, order, axis=1)
    pos = np.empty_like(I)
    for r in range(q):
        pos[r] = order[r, np.searchsorted(sorted_I[r], I[r])]
    return KnnResult(
        distances=D,
        indices=I,
        ids=np.take_along_axis(cand_ids, pos, axis=1),
        labels=np.take_along_axis(cand_lab, pos, axis=1),
        n_database=offset,
        seconds=time.perf_counter() - t0,
    )


# ------------------------------------------------------------------------------------- MAP


def _shard_hist(uri, queries, qlabels, storage_options):
    sc = load_shard(uri, storage_options)
    all_c, rel_c = kernels.distance_histograms(queries, sc.codes, qlabels, sc.labels)
    return all_c, rel_c, len(sc.codes)


def _shard_partial(uri, queries, qlabels, before_all, before_rel, storage_options):
    sc = load_shard(uri, storage_options)
    return kernels.ap_index_partial(queries, sc.codes, qlabels, sc.labels, before_all, before_rel)


@dataclass
class MapResult:
    map: float
    map_tie_aware: float
    map_at_k: float | None
    topk: int | None
    aps: np.ndarray  # (q,) ties="index"
    aps_tie_aware: np.ndarray
    pr_precision: np.ndarray  # per Hamming radius
    pr_recall: np.ndarray
    n_queries: int
    n_database: int
    seconds: float

    @property
    def comparisons_per_s(self) -> float:
        return self.n_queries * self.n_database / max(self.seconds, 1e-9)

    def summary(self) -> dict:
        out = {
            "map": round(float(self.map), 6),
            "map_tie_aware": round(float(self.map_tie_aware), 6),
            "n_queries": self.n_queries,
            "n_database": self.n_database,
            "seconds": round(self.seconds, 3),
            "comparisons_per_s": float(f"{self.comparisons_per_s:.4g}"),
        }
        if self.topk is not None:
            out[f"map@{self.topk}"] = round(float(self.map_at_k), 6)
        return out


def evaluate_map(
    queries: np.ndarray,
    query_labels: np.ndarray,
    shards: Sequence[str],
    storage_options: dict | None = None,
    executor=None,
    topk: int | None = None,
) -> MapResult:
    """Exact MAP of labelled packed `queries` against every shard (see the module docstring)."""
    queries = np.ascontiguousarray(queries, dtype=np.uint64)
    qlabels = np.asarray(query_labels, dtype=np.int64)
    keep = qlabels != NO_LABEL
    if not keep.any():
        raise BadInput("no labelled queries: MAP needs ground-truth labels")
    queries, qlabels = queries[keep], qlabels[keep]
    _check_width(queries, shards, storage_options)
    executor = executor or LocalExecutor()
    t0 = time.perf_counter()
    qref, lref = executor.put(queries), executor.put(qlabels)

    # Pass 1: per-shard histograms (left in the object store on Ray), summed.
    handles = [executor.submit(_shard_hist, u, qref, lref, storage_options) for u in shards]
    total_all = total_rel = None
    n_db = 0
    for h in handles:
        all_c, rel_c, n = executor.get(h)
        total_all = all_c.astype(np.int64) if total_all is None else total_all + all_c
        total_rel = rel_c.astype(np.int64) if total_rel is None else total_rel + rel_c
        n_db += n
    if total_all is None or n_db == 0:
        raise BadInput("the database shards hold no codes")
    aps_aware = kernels.ap_tie_aware_from_histograms(total_all, total_rel)

    # Pass 2: exact ties="index" partial sums, shard by shard with the running prefix.
    before_all = np.cumsum(total_all, axis=1) - total_all  # items at smaller distances
    before_rel = np.cumsum(total_rel, axis=1) - total_rel
    sums = np.zeros(len(queries))
    pending = []
    for u, h in zip(shards, handles, strict=True):
        all_c, rel_c, _ = executor.get(h)
        pending.append(
            executor.submit(
                _shard_partial,
                u,
                qref,
                lref,
                executor.put(before_all),
                executor.put(before_rel),
                storage_options,
            )
        )
        before_all = before_all + all_c  # earlier shards' items at the same distance rank first
        before_rel = before_rel + rel_c
        if len(pending) >= 16:
            sums += executor.get(pending.pop(0))
    del handles
    for p in pending:
        sums += executor.get(p)
    n_rel = total_rel.sum(axis=1)
    aps = np.divide(sums, n_rel, out=np.zeros_like(sums), where=n_rel > 0)

    map_at_k = None
    if topk is not None:
        knn = search(queries, shards, topk, storage_options, executor)
        rel = knn.labels == qlabels[:, None]
        map_at_k = float(kernels.ap_from_neighbors(rel).mean())
    precision, recall = kernels.pr_curve_from_histograms(total_all, total_rel)
    return MapResult(
        map=float(aps.mean()),
        map_tie_aware=float(aps_aware.mean()),
        map_at_k=map_at_k,
        topk=topk,
        aps=aps,
        aps_tie_aware=aps_aware,
        pr_precision=np.asarray(precision),
        pr_recall=np.asarray(recall),
        n_queries=len(queries),
        n_database=n_db,
        seconds=time.perf_counter() - t0,
    )
