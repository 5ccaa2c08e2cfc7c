"""The compiled k-NN scan behind `kernels.knn.hamming_knn`: exact, ordered by (distance, index).

Per query the kernel keeps a histogram of the distances it has admitted and a threshold ``t``: the
smallest distance with at least ``k`` admitted candidates at distance ``<= t``. Once ``k``
candidates are held, an item is admitted only if its distance is ``< t`` (an item at ``t`` comes
later in index order than the held ones, so it loses the tie). Candidates live in a bounded buffer
that is compacted (items beyond ``t`` dropped) when full; it always holds fewer than ``2k`` live
items, so a capacity of ``4k`` bounds the work of compaction. The buffer is kept in index order, so
a final counting sort by distance yields the (distance, index) order.

Distances are computed for sub-blocks of 128 database codes at a time in a vectorised loop that also
takes their minimum; the (scalar) admission scan runs only for sub-blocks whose minimum beats ``t``,
which after the first few thousand items is rare. Queries are processed in blocks so that a chunk of
the database stays in cache while every query of the block scans it; the database is stored
word-major (``(words, n)``) so that multi-word distances vectorise too. Work is split over query
blocks, and also over database shards when there are too few query blocks to occupy every thread.
Memory is O(q*k + n); no queries x database matrix is ever formed.
"""

import numba
import numpy as np
from numba import njit, prange

from ._bits import ctz, popcount
from ._layout import threads_for, word_major

_CHUNK = 4096  # database codes per cache chunk (32 KiB per word)
_SUB = 128  # codes per min-check sub-block
_QB = 16  # queries per block


@njit(cache=True, inline="always")
def _dist(qrow, XT, j):
    """Distance from qrow to database code j (word-major XT)."""
    W = XT.shape[0]
    d = popcount(qrow[0] ^ XT[0, j])
    for w in range(1, W):
        d += popcount(qrow[w] ^ XT[w, j])
    return d


@njit(cache=True, inline="always")
def _admit(d, j, t, below, cnt, k, hist, bd, bi):
    """Admit item j at distance d < t; returns the updated (t, below, cnt)."""
    if cnt == bd.shape[0]:  # buffer full: drop the items beyond the threshold
        c = 0
        for i in range(cnt):
            if bd[i] <= t:
                bd[c] = bd[i]
                bi[c] = bi[i]
                c += 1
        cnt = c
    bd[cnt] = d
    bi[cnt] = j
    cnt += 1
    hist[d] += 1
    below += 1
    while below >= k:
        t -= 1
        below -= hist[t]
    return t, below, cnt


@njit(cache=True, inline="always")
def _mask64(q0, x0, s0, t):
    """Bit j set where item s0 + j (one-word codes) is closer than t, for 64 items (vectorised)."""
    m = np.uint64(0)
    for j in range(64):
        d = popcount(q0 ^ x0[np.uint64(s0 + j)])
        m |= np.uint64(d < t) << np.uint64(j)
    return m


@njit(cache=True, inline="always")
def _admit_block(qrow, XT, s0, s1, dist, t, below, cnt, k, hist, bd, bi):
    """Scan codes s0..s1 for one query; admit those closer than t. Returns (t, below, cnt)."""
    W = XT.shape[0]
    if W == 1 and s1 - s0 == _SUB:
        # one-word codes: bit masks of the candidates, then only those are looked at
        q0 = qrow[0]
        x0 = XT[0]
        for h in range(0, _SUB, 64):
            m = _mask64(q0, x0, s0 + h, t)
            while m:
                j = s0 + h + ctz(m)
                m &= m - np.uint64(1)
                d = popcount(q0 ^ x0[j])
                if d < t:  # t may have dropped since the mask was made
                    t, below, cnt = _admit(d, j, t, below, cnt, k, hist, bd, bi)
        return t, below, cnt
    for j in range(s0, s1):
        d = _dist(qrow, XT, j) if W <= 4 else dist[j - s0]
        if d < t:
            t, below, cnt = _admit(d, j, t, below, cnt, k, hist, bd, bi)
    return t, below, cnt


@njit(cache=True, inline="always")
def _min1(q0, x0, s0, nb):
    m = np.int64(1 << 30)
    for j in range(nb):
        i = np.uint64(s0 + j)
        m = min(m, popcount(q0 ^ x0[i]))
    return m


@njit(cache=True, inline="always")
def _min2(q0, q1, x0, x1, s0, nb):
    m = np.int64(1 << 30)
    for j in range(nb):
        i = np.uint64(s0 + j)
        m = min(m, popcount(q0 ^ x0[i]) + popcount(q1 ^ x1[i]))
    return m


@njit(cache=True, inline="always")
def _min3(q0, q1, q2, x0, x1, x2, s0, nb):
    m = np.int64(1 << 30)
    for j in range(nb):
        i = np.uint64(s0 + j)
        m = min(m, popcount(q0 ^ x0[i]) + popcount(q1 ^ x1[i]) + popcount(q2 ^ x2[i]))
    return m


@njit(cache=True, inline="always")
def _min4(q0, q1, q2, q3, x0, x1, x2, x3, s0, nb):
    m = np.int64(1 << 30)
    for j in range(nb):
        i = np.uint64(s0 + j)
        d = popcount(q0 ^ x0[i]) + popcount(q1 ^ x1[i])
        m = min(m, d + popcount(q2 ^ x2[i]) + popcount(q3 ^ x3[i]))
    return m


@njit(cache=True, inline="always")
def _block_min(qrow, XT, s0, s1, dist):
    """Minimum distance from qrow to codes s0..s1 (vectorised); fills dist when words > 4."""
    W = XT.shape[0]
    nb = s1 - s0
    if W == 1:
        if nb == _SUB:
            return _min1(qrow[0], XT[0], s0, _SUB)
        return _min1(qrow[0], XT[0], s0, nb)
    if W == 2:
        if nb == _SUB:
            return _min2(qrow[0], qrow[1], XT[0], XT[1], s0, _SUB)
        return _min2(qrow[0], qrow[1], XT[0], XT[1], s0, nb)
    if W == 3:
        return _min3(qrow[0], qrow[1], qrow[2], XT[0], XT[1], XT[2], s0, nb)
    if W == 4:
        if nb == _SUB:
            return _min4(qrow[0], qrow[1], qrow[2], qrow[3], XT[0], XT[1], XT[2], XT[3], s0, _SUB)
        return _min4(qrow[0], qrow[1], qrow[2], qrow[3], XT[0], XT[1], XT[2], XT[3], s0, nb)
    m = np.int64(1 << 30)
    q = qrow[0]
    xs = XT[0]
    for j in range(nb):
        dist[j] = popcount(q ^ xs[np.uint64(s0 + j)])
    for w in range(1, W - 1):
        q = qrow[w]
        xs = XT[w]
        for j in range(nb):
            dist[j] += popcount(q ^ xs[np.uint64(s0 + j)])
    q = qrow[W - 1]
    xs = XT[W - 1]
    for j in range(nb):
        d = dist[j] + popcount(q ^ xs[np.uint64(s0 + j)])
        dist[j] = d
        m = min(m, d)
    return m


@njit(cache=True, parallel=True)
def _knn_kernel(Q, XT, k, bounds):
    """Top-k per (query, shard). Q (q, W), XT (W, n) word-major; bounds (nsh+1,) shard starts.

    Returns D (nsh, q, kk) int32 and I (nsh, q, kk) int64 with kk = min(k, n); entries a shard
    cannot fill hold distance 64*W+1 and index n.
    """
    nq, W = Q.shape
    n = XT.shape[1]
    maxd = 64 * W
    kk = min(k, n)
    nsh = bounds.shape[0] - 1
    D = np.full((nsh, nq, kk), maxd + 1, np.int32)
    I = np.full((nsh, nq, kk), n, np.int64)
    cap = 4 * k + 64
    nqb = (nq + _QB - 1) // _QB
    for task in prange(nqb * nsh):
        qb = task // nsh
        sh = task - qb * nsh
        q0 = qb * _QB
        q1 = min(nq, q0 + _QB)
        nb = q1 - q0
        lo = bounds[sh]
        hi = bounds[sh + 1]
        hist = np.zeros((nb, maxd + 2), np.int64)
        thr = np.full(nb, maxd + 1, np.int64)
        below = np.zeros(nb, np.int64)
        cnt = np.zeros(nb, np.int64)
        bd = np.empty((nb, cap), np.int32)
        bi = np.empty((nb, cap), np.int64)
        dist = np.empty(_SUB, np.int64)
        for c0 in range(lo, hi, _CHUNK):
            c1 = min(hi, c0 + _CHUNK)
            for qi in range(nb):
                qrow = Q[q0 + qi]
                t = thr[qi]
                b = below[qi]
                c = cnt[qi]
                h = hist[qi]
                bdq = bd[qi]
                biq = bi[qi]
                for s0 in range(c0, c1, _SUB):
                    s1 = min(c1, s0 + _SUB)
                    if _block_min(qrow, XT, s0, s1, dist) < t:
                        t, b, c = _admit_block(qrow, XT, s0, s1, dist, t, b, c, k, h, bdq, biq)
                thr[qi] = t
                below[qi] = b
                cnt[qi] = c
        # final: counting sort of the survivors (index order within a distance is kept)
        pos = np.zeros(maxd + 2, np.int64)
        for qi in range(nb):
            t = thr[qi]
            c = cnt[qi]
            pos[:] = 0
            for i in range(c):
                if bd[qi, i] <= t:
                    pos[bd[qi, i] + 1] += 1
            for d in range(1, maxd + 2):
                pos[d] += pos[d - 1]
            m = min(kk, pos[maxd + 1])
            for i in range(c):
                d = bd[qi, i]
                if d <= t:
                    p = pos[d]
                    pos[d] = p + 1
                    if p < m:
                        D[sh, q0 + qi, p] = d
                        I[sh, q0 + qi, p] = bi[qi, i]
    return D, I


def scan(Q, X, k):
    """D (nsh, q, kk) int32 and I (nsh, q, kk) int64 per database shard, for checked Q (q, W) and
    X (n, W) with q, n > 0; one shard unless there are too few query blocks for the threads."""
    nq, n = Q.shape[0], X.shape[0]
    nqb = -(-nq // _QB)
    threads = numba.get_num_threads()
    nsh = 1
    if nqb < threads:
        nsh = int(min(-(-2 * threads // nqb), max(1, n // (4 * _CHUNK))))
    bounds = np.linspace(0, n, nsh + 1).astype(np.int64)
    with threads_for(nq * n * Q.shape[1] / 7e9):
        return _knn_kernel(Q, word_major(X), k, bounds)
