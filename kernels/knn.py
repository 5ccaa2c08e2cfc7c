"""Exact Hamming k-NN over packed codes, ordered by (distance, database index).

Two implementations of one contract. The compiled scan (`kernels._knn_scan`, imported on first
use) is 10-50x faster per call, but its first call in a process loads numba and its cached code:
~1 s here, more than a NumPy scan of one query against a million 64-bit codes (0.03 s), and a
search by id is that one call. So the choice is rent or buy: a process scans in NumPy until
its NumPy work would pass `SMALL_WORK` query x code x word comparisons (about what the load
costs; benchmarks/bench_knn_first_call.py measures both), then loads the compiled scan and keeps
it. Many small calls therefore never cost more than about twice the better choice. Both return
the same arrays (tests/test_kernels_knn.py runs every case through each).
"""

import sys

import numpy as np

from . import _checks

# NumPy comparisons a process does before it loads the compiled scan: at ~3-9e7 a second here,
# about the ~1 s that the load costs (benchmarks/RESULTS.md, "Jobs that start fast")
SMALL_WORK = 1 << 25
# "numpy" or "compiled" pins one path (tests, benchmarks); None: the rule above
FORCE: str | None = None
_numpy_done = 0  # comparisons this process has scanned in NumPy


def _numpy_path(work: int) -> bool:
    """Whether this call scans in NumPy (the rent-or-buy rule of the module docstring)."""
    global _numpy_done
    if FORCE is not None:
        return FORCE == "numpy"
    if "kernels._knn_scan" in sys.modules or _numpy_done + work > SMALL_WORK:
        return False
    _numpy_done += work
    return True


def hamming_knn(queries, database, k):
    """Exact k nearest database codes of each query in Hamming distance.

    queries (q, words) and database (n, words) are packed uint64 codes. Returns D (q, k) int32 and
    I (q, k) int64, each row ordered by (distance, database index); with k > n, n columns.
    """
    Q, X = _checks.code_pair(queries, database)
    k = _checks.positive_int(k, "k")
    nq, n = Q.shape[0], X.shape[0]
    kk = min(k, n)
    if nq == 0 or n == 0:
        return np.zeros((nq, kk), np.int32), np.zeros((nq, kk), np.int64)
    if _numpy_path(nq * n * Q.shape[1]):
        return _knn_numpy(Q, X, kk)
    from ._knn_scan import scan

    D, I = scan(Q, X, k)
    if len(D) == 1:
        return D[0], I[0]
    return merge_knn(list(D), list(I), kk)


def _knn_numpy(Q, X, kk):
    """The same contract in NumPy, one query at a time: distances, then the kk smallest of the
    unique key distance * n + index (so ties fall in index order)."""
    n = X.shape[0]
    D = np.empty((Q.shape[0], kk), np.int32)
    I = np.empty((Q.shape[0], kk), np.int64)
    index = np.arange(n, dtype=np.int64)
    for i, q in enumerate(Q):
        d = np.bitwise_count(X ^ q).sum(axis=1, dtype=np.int64)
        key = d * n + index
        top = np.argpartition(key, kk - 1)[:kk] if kk < n else index
        top = top[np.argsort(key[top])]
        D[i] = d[top]
        I[i] = top
    return D, I


def merge_knn(D_parts, I_parts, k):
    """Merge per-shard k-NN results whose I already hold global database indices.

    D_parts, I_parts: sequences of (q, k_i) arrays. Returns the global top-k, D (q, k') int32 and
    I (q, k') int64 with k' = min(k, sum k_i), ordered by (distance, index).
    """
    k = _checks.positive_int(k, "k")
    if not isinstance(D_parts, (list, tuple)) or not isinstance(I_parts, (list, tuple)):
        raise ValueError("D_parts and I_parts must be lists of arrays")
    if len(D_parts) == 0 or len(D_parts) != len(I_parts):
        raise ValueError("D_parts and I_parts must be non-empty lists of the same length")
    Ds = [np.asarray(d) for d in D_parts]
    Is = [np.asarray(i) for i in I_parts]
    nq = Ds[0].shape[0] if Ds[0].ndim == 2 else -1
    for d, i in zip(Ds, Is, strict=False):
        if d.ndim != 2 or i.ndim != 2 or d.shape != i.shape or d.shape[0] != nq:
            raise ValueError("D_parts and I_parts must be matching 2-D arrays with the same rows")
        if d.dtype.kind not in "iu" or i.dtype.kind not in "iu":
            raise ValueError("D_parts and I_parts must hold integers")
    Dc = np.concatenate(Ds, axis=1).astype(np.int64, copy=False)
    Ic = np.concatenate(Is, axis=1).astype(np.int64, copy=False)
    kk = min(k, Dc.shape[1])
    order = np.lexsort((Ic, Dc), axis=1)[:, :kk]
    return (
        np.take_along_axis(Dc, order, axis=1).astype(np.int32),
        np.take_along_axis(Ic, order, axis=1),
    )
