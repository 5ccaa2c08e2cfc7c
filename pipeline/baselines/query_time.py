"""Query time (the paper's Table 5): mean wall time per query to rank the whole database.

Each method ranks the database for one query at a time (the latency one user's search sees),
with its own comparison and the database side prepared once, as a search system would hold it:
- binary codes: Hamming distance to every database code and the full ranking, by the shipped
  search kernel (`kernels.hamming_knn` with k = database size; ties by database index);
- real-valued descriptors (MAC, R-MAC, MS-R-MAC, VLAD): dot products with the database's unit
  vectors, then a stable argsort of the scores (ties by database index);
- Hamming Embedding: its vote over shared visual words against an inverted file
  (`HammingEmbedding.index` / `score_block`), then a stable argsort.
The clock runs from the query's descriptor to the full ranking; making the descriptor (the CNN
pass over the query image, the same for every method here) is not part of it. The caller decides
the threads (the benchmarks run every method on one).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def rank_codes(q_codes: np.ndarray, db_codes: np.ndarray) -> Callable[[int], np.ndarray]:
    """rank(i) -> database indices ordered by Hamming distance to packed query code i."""
    from kernels import hamming_knn

    n = len(db_codes)

    def rank(i: int) -> np.ndarray:
        return hamming_knn(q_codes[i : i + 1], db_codes, n)[1][0]

    return rank


def rank_cosine(q: np.ndarray, db: np.ndarray) -> Callable[[int], np.ndarray]:
    """rank(i) -> database indices by decreasing dot product with unit-vector query i."""
    dbf = np.ascontiguousarray(db, np.float32)
    qf = np.ascontiguousarray(q, np.float32)

    def rank(i: int) -> np.ndarray:
        return np.argsort(-(dbf @ qf[i]), kind="stable")

    return rank


def rank_he(he, q, db) -> Callable[[int], np.ndarray]:
    """rank(i) -> database indices by decreasing Hamming Embedding score (q, db: he.encode)."""
    index = he.index(db)
    qw, qs = q

    def rank(i: int) -> np.ndarray:
        return np.argsort(-he.score_block((qw[i : i + 1], qs[i : i + 1]), index)[0], kind="stable")

    return rank


def time_queries(rank: Callable[[int], np.ndarray], n_queries: int, warmup: int = 2) -> dict:
    """{"ms_per_query", "queries", "seconds"}: `rank` run once per query, after `warmup` untimed
    calls (compilation, caches); the mean over the timed queries."""
    if n_queries < 1:
        raise ValueError("need at least one query to time")
    for i in range(min(warmup, n_queries)):
        rank(i)
    t0 = time.perf_counter()
    for i in range(n_queries):
        rank(i)
    dt = time.perf_counter() - t0
    return {"ms_per_query": 1000.0 * dt / n_queries, "queries": int(n_queries), "seconds": dt}
