"""Average precision (ties by index or tie-aware), precision@k and precision/recall curves.

Conventions
-----------
* An item is relevant to a query when they share a class (1-D class ids: equal ids; 2-D multi-hot:
  at least one common label).
* ``topk=None``: AP over the whole ranking, ``sum over relevant items of precision at their rank /
  number of relevant items`` (0 for a query with no relevant item).
* ``topk=K``: AP@K over the first K ranked items, ``sum of precision at the relevant positions among
  the first K / number of relevant items among the first K`` (0 when there is none), the
  DPSH/HashNet convention. With K >= n this is the full AP.
* ``ties="index"``: items at equal distance are ranked by database index (a stable sort).
* ``ties="aware"``: the expectation of the above over all orderings inside each tie group (He et
  al., "Hashing as Tie-Aware Learning to Rank", CVPR 2018). For a tie group of ``n_d`` items,
  ``r_d`` relevant, preceded by ``N`` items of which ``R`` relevant, the expected sum of precisions
  at its relevant items is
  ``(r_d/n_d) * sum_{t=1..n_d} (R + 1 + (t-1)(r_d-1)/(n_d-1)) / (N + t)``
  (the (t-1) term is 0 when n_d = 1), evaluated in closed form with harmonic numbers. With topk,
  the group that straddles position K is handled exactly: given the number j of relevant items
  among its first m = K - N positions (hypergeometric), positions are uniform, so the expected
  numerator has the same form with (m, j) in place of (n_d, r_d); the expectation of the AP@K
  ratio is the hypergeometric mixture of (numerator / (R + j)).

The distributed helpers work on consecutive shards of the database: per-distance histograms sum
across shards, so the tie-aware AP is exact from summed histograms; the index-tie AP needs a second
pass (``ap_index_partial``) given, per query and distance, the number of items ranked before the
shard's items at that distance.
"""

import math

import numpy as np
from numba import njit, prange

from . import _checks
from ._index_w1 import ap_one_pass_w1, dense_ids, index_numerators_w1, relevant_counts
from ._layout import threads_for, word_major
from .hist import _QB, _fill_dist, _relevant, histograms
from .knn import hamming_knn

_R_MASK = (1 << 27) - 1  # packed ranks: (a << 36) | (r << 9) | distance
_ONE_PASS_BYTES = 64 << 20  # per-thread buffer cap for the one-pass index-tie AP
_DIRECT = 64  # tie groups up to this size sum 1/(N+t) directly instead of via harmonic numbers


@njit(cache=True, inline="always")
def _inv_sum(H, N, m):
    """sum_{t=1..m} 1 / (N + t)."""
    if m <= _DIRECT:
        s = 0.0
        for t in range(1, m + 1):
            s += 1.0 / (N + t)
        return s
    return H[N + m] - H[N]


@njit(cache=True, inline="always")
def _group_sum(H, N, R, n, r):
    """Expected sum of precisions at the r relevant items of a tie group of n items at ranks
    N+1..N+n (R relevant before it), over uniformly random orderings of the group."""
    if r == 0:
        return 0.0
    c = (r - 1) / (n - 1) if n > 1 else 0.0
    return (r / n) * ((R + 1 - c * (N + 1)) * _inv_sum(H, N, n) + c * n)


@njit(cache=True)
def _log_comb(a, b):
    return math.lgamma(a + 1.0) - math.lgamma(b + 1.0) - math.lgamma(a - b + 1.0)


@njit(cache=True)
def _ap_aware_kernel(A, Rc, H, K):
    """Tie-aware AP (K = 0: whole ranking) from per-distance counts A (all) and Rc (relevant)."""
    nq, nd = A.shape
    out = np.zeros(nq)
    for qi in range(nq):
        total_rel = 0
        ntot = 0
        for d in range(nd):
            total_rel += Rc[qi, d]
            ntot += A[qi, d]
        if total_rel == 0:
            continue
        N = 0
        R = 0
        s = 0.0
        if K == 0 or ntot <= K:
            for d in range(nd):
                n = A[qi, d]
                r = Rc[qi, d]
                s += _group_sum(H, N, R, n, r)
                N += n
                R += r
            out[qi] = s / total_rel
            continue
        for d in range(nd):
            n = A[qi, d]
            r = Rc[qi, d]
            if N + n <= K:
                s += _group_sum(H, N, R, n, r)
                N += n
                R += r
                if N == K:
                    out[qi] = s / R if R > 0 else 0.0
                    break
                continue
            # straddling group: m of its n items fall inside the top K
            m = K - N
            inv = _inv_sum(H, N, m)
            e = 0.0
            lo = max(0, m - (n - r))
            hi = min(m, r)
            lden = _log_comb(n, m)
            for j in range(lo, hi + 1):
                if R + j == 0:
                    continue
                p = math.exp(_log_comb(r, j) + _log_comb(n - r, m - j) - lden)
                num = 0.0
                if j > 0:
                    c = (j - 1) / (m - 1) if m > 1 else 0.0
                    num = (j / m) * ((R + 1 - c * (N + 1)) * inv + c * m)
                e += p * (s + num) / (R + j)
            out[qi] = e
            break
    return out


def _harmonic(n):
    H = np.zeros(n + 2)
    H[1:] = np.cumsum(1.0 / np.arange(1, n + 2))
    return H


def _hist_arrays(all_counts, rel_counts):
    A = np.asarray(all_counts)
    R = np.asarray(rel_counts)
    if A.ndim != 2 or A.dtype.kind not in "iu":
        raise ValueError("all_counts must be a 2-D integer array (queries, distances)")
    if R.ndim != 2 or R.dtype.kind not in "iu":
        raise ValueError("rel_counts must be a 2-D integer array (queries, distances)")
    if A.shape != R.shape:
        raise ValueError(
            f"all_counts and rel_counts must have the same shape, got {A.shape} and {R.shape}"
        )
    A = np.ascontiguousarray(A, dtype=np.int64)
    R = np.ascontiguousarray(R, dtype=np.int64)
    if (R < 0).any() or (R > A).any():
        raise ValueError("rel_counts must lie between 0 and all_counts")
    return A, R


def ap_tie_aware_from_histograms(all_counts, rel_counts, topk=None):
    """Tie-aware AP (or AP@topk) per query from per-distance counts (q, distances): (q,) float64.

    The counts may be sums of :func:`distance_histograms` over database shards.
    """
    A, R = _hist_arrays(all_counts, rel_counts)
    K = _checks.topk(topk)
    n = int(A.sum(axis=1).max()) if A.size else 0
    return _ap_aware_kernel(A, R, _harmonic(n), 0 if K is None else K)


def distance_histograms(queries, database, query_labels, db_labels):
    """Per query, the number of database items (all, and relevant) at each Hamming distance.

    Returns (all_counts, rel_counts), each (q, 64*words + 1) int64; they sum across shards.
    """
    Q, X = _checks.code_pair(queries, database)
    mode, ql, dl = _checks.labels(query_labels, db_labels, Q.shape[0], X.shape[0])
    return histograms(Q, X, mode, ql, dl)


@njit(cache=True, inline="always")
def _dist_rel_chunk(qrow, XT, c0, nb, multi, qi, ql, dl, qm, dm, dist, d16, relb):
    """Distances (uint16) and relevance (uint8) of database items c0..c0+nb for query qi."""
    _fill_dist(qrow, XT, c0, nb, dist)
    for j in range(nb):
        d16[j] = dist[j]
    if multi:
        for j in range(nb):
            relb[j] = _relevant(qi, c0 + j, multi, ql, dl, qm, dm)
    else:
        lab = ql[qi]
        for j in range(nb):
            relb[j] = 1 if dl[np.uint64(c0 + j)] == lab else 0


@njit(cache=True, inline="always")
def _running_counts(d16, relb, nb, ra, buf, base):
    """Running count per distance over items 0..nb; each relevant item's (count << 9 | distance)
    is appended to buf at base (branch free: every item writes, the cursor moves for relevant
    ones). Returns the number appended."""
    cnt = 0
    for j in range(nb):
        d = np.int64(d16[j])
        a = ra[d] + 1
        ra[d] = a
        buf[base + cnt] = (np.int64(a) << 9) | d
        cnt += relb[j]
    return cnt


@njit(cache=True, parallel=True)
def _ap_index_kernel(Q, XT, multi, ql, dl, qm, dm, off_all, off_rel):
    """Multi-word codes (one word: ``_index_w1``). Per query: sum over relevant items j (in
    index order) of (off_rel[d] + #relevant at d up to j) / (off_all[d] + #items at d up to j),
    with d the distance of j, summed per chunk of 4,096 items.

    The running count of all items per distance is the only per-pair scalar work; the relevant
    items are finished in a second, short loop.
    """
    nq, W = Q.shape
    n = XT.shape[1]
    nd = 64 * W + 1
    chunk = 4096
    out = np.zeros(nq)
    nqb = (nq + _QB - 1) // _QB
    for b in prange(nqb):
        q0 = b * _QB
        q1 = min(nq, q0 + _QB)
        run_a = np.zeros((q1 - q0, nd), np.int32)
        run_r = np.zeros((q1 - q0, nd), np.int64)
        dist = np.empty(chunk, np.int64)
        d16 = np.empty(chunk, np.uint16)
        relb = np.empty(chunk, np.uint8)
        buf = np.empty(chunk + 1, np.int64)
        for c0 in range(0, n, chunk):
            nb = min(n, c0 + chunk) - c0
            for qi in range(q0, q1):
                _dist_rel_chunk(Q[qi], XT, c0, nb, multi, qi, ql, dl, qm, dm, dist, d16, relb)
                oa = off_all[qi]
                orl = off_rel[qi]
                s = 0.0
                cnt = _running_counts(d16, relb, nb, run_a[qi - q0], buf, 0)
                rr = run_r[qi - q0]
                for i in range(cnt):
                    d = buf[i] & 511
                    r = rr[d] + 1
                    rr[d] = r
                    s += (orl[d] + r) / (oa[d] + (buf[i] >> 9))
                out[qi] += s
    return out


@njit(cache=True, parallel=True)
def _ap_index_one_pass(Q, XT, ql, dl, nrel):
    """AP (ties by index, whole ranking) for single-label queries and multi-word codes in one
    pass over the database (one word: ``_index_w1``).

    nrel[qi] is the number of relevant items of query qi; each query keeps (running count,
    distance) of its relevant items, and the histograms that give the offsets are the final
    running counts. Returns (ap (q,), all (q, nd), rel (q, nd)).
    """
    nq, W = Q.shape
    n = XT.shape[1]
    nd = 64 * W + 1
    chunk = 4096
    out = np.zeros(nq)
    A = np.zeros((nq, nd), np.int64)
    R = np.zeros((nq, nd), np.int64)
    nqb = (nq + _QB - 1) // _QB
    for b in prange(nqb):
        q0 = b * _QB
        q1 = min(nq, q0 + _QB)
        start = np.zeros(q1 - q0 + 1, np.int64)
        for qi in range(q0, q1):
            start[qi - q0 + 1] = start[qi - q0] + nrel[qi] + 1
        buf = np.empty(start[q1 - q0], np.int64)
        fill = np.zeros(q1 - q0, np.int64)
        run_a = np.zeros((q1 - q0, nd), np.int32)
        dist = np.empty(chunk, np.int64)
        d16 = np.empty(chunk, np.uint16)
        relb = np.empty(chunk, np.uint8)
        dummy = np.zeros((1, 1), np.uint64)
        for c0 in range(0, n, chunk):
            nb = min(n, c0 + chunk) - c0
            for qi in range(q0, q1):
                k = qi - q0
                _dist_rel_chunk(Q[qi], XT, c0, nb, False, qi, ql, dl, dummy, dummy, dist, d16, relb)
                fill[k] += _running_counts(d16, relb, nb, run_a[k], buf, start[k] + fill[k])
        for qi in range(q0, q1):
            k = qi - q0
            for d in range(nd):
                A[qi, d] = run_a[k, d]
            # the scalar path left (a << 9 | d): add the relevant rank r in index order
            rr = np.zeros(nd, np.int64)
            for i in range(start[k], start[k] + fill[k]):
                d = buf[i] & 511
                rr[d] += 1
                buf[i] = ((buf[i] >> 9) << 36) | (rr[d] << 9) | d
            for i in range(start[k], start[k] + fill[k]):
                R[qi, buf[i] & 511] += 1
            oa = np.zeros(nd, np.int64)
            orl = np.zeros(nd, np.int64)
            for d in range(1, nd):
                oa[d] = oa[d - 1] + A[qi, d - 1]
                orl[d] = orl[d - 1] + R[qi, d - 1]
            s = 0.0
            for i in range(start[k], start[k] + fill[k]):
                d = buf[i] & 511
                r = (buf[i] >> 9) & _R_MASK
                s += (orl[d] + r) / (oa[d] + (buf[i] >> 36))
            out[qi] = s / fill[k] if fill[k] > 0 else 0.0
    return out, A, R


def _label_args(mode, ql, dl):
    if mode == "multi":
        return True, np.zeros(1, np.int64), np.zeros(1, np.int64), ql, dl
    return False, ql, dl, np.zeros((1, 1), np.uint64), np.zeros((1, 1), np.uint64)


def ap_index_partial(queries, database, query_labels, db_labels, all_offset, rel_offset):
    """One shard's part of the index-tie AP numerator.

    all_offset / rel_offset (q, 64*words + 1): per query and distance d, the number of items (all /
    relevant) ranked before this shard's items at distance d, i.e. the global counts at distances
    < d plus the counts at distance d in earlier shards. Returns (q,) float64: the sum of the
    precisions at this shard's relevant items. Summing over shards and dividing by each query's
    total relevant count gives AP with ties="index", topk=None.
    """
    Q, X = _checks.code_pair(queries, database)
    mode, ql, dl = _checks.labels(query_labels, db_labels, Q.shape[0], X.shape[0])
    nd = 64 * Q.shape[1] + 1
    offs = []
    for v, name in ((all_offset, "all_offset"), (rel_offset, "rel_offset")):
        a = np.asarray(v)
        if a.shape != (Q.shape[0], nd) or a.dtype.kind not in "iu":
            raise ValueError(f"{name} must be an integer array of shape {(Q.shape[0], nd)}")
        offs.append(np.ascontiguousarray(a, dtype=np.int64))
    with threads_for(Q.shape[0] * X.shape[0] * Q.shape[1] / 8e8):
        if Q.shape[1] == 1:
            return index_numerators_w1(Q, X, mode, ql, dl, offs[0], offs[1])
        multi, ql1, dl1, qm, dm = _label_args(mode, ql, dl)
        return _ap_index_kernel(Q, word_major(X), multi, ql1, dl1, qm, dm, offs[0], offs[1])


def ap_from_neighbors(relevance):
    """AP@K from the 0/1 relevance (q, K) of each query's ranked top-K list: (q,) float64.

    Sum of precision at the relevant positions / number of relevant items in the list (0 if none).
    """
    rel = np.asarray(relevance)
    if rel.ndim != 2:
        raise ValueError(f"relevance must be 2-D (queries, K), got {rel.ndim}-D")
    if rel.dtype.kind not in "biu" or (rel.size and (rel.min() < 0 or rel.max() > 1)):
        raise ValueError("relevance must hold 0/1 or bool values")
    rel = rel.astype(np.float64)
    if rel.shape[1] == 0:
        return np.zeros(rel.shape[0])
    hits = np.cumsum(rel, axis=1)
    prec = hits / np.arange(1, rel.shape[1] + 1)
    nrel = hits[:, -1]
    num = (prec * rel).sum(axis=1)
    return np.divide(num, nrel, out=np.zeros_like(num), where=nrel > 0)


def _relevance_of(I, mode, ql, dl):
    if mode == "single":
        return ql[:, None] == dl[I]
    return (ql[:, None, :] & dl[I]).any(axis=2)


def _offsets(A, R):
    """Exclusive prefix sums over distance: counts ranked before each distance."""
    oa = np.zeros_like(A)
    orl = np.zeros_like(R)
    np.cumsum(A[:, :-1], axis=1, out=oa[:, 1:])
    np.cumsum(R[:, :-1], axis=1, out=orl[:, 1:])
    return oa, orl


def average_precision(queries, database, query_labels, db_labels, topk=None, ties="index"):
    """AP of each query's Hamming ranking of the database: (q,) float64. See the module notes."""
    Q, X = _checks.code_pair(queries, database)
    mode, ql, dl = _checks.labels(query_labels, db_labels, Q.shape[0], X.shape[0])
    K = _checks.topk(topk)
    ties = _checks.ties(ties)
    nq, n = Q.shape[0], X.shape[0]
    if nq == 0:
        return np.zeros(0)
    if n == 0:
        return np.zeros(nq)
    if ties == "aware":
        A, R = histograms(Q, X, mode, ql, dl)
        return _ap_aware_kernel(A, R, _harmonic(n), 0 if K is None else K)
    if K is not None and n > K:
        _, I = hamming_knn(Q, X, K)
        return ap_from_neighbors(_relevance_of(I, mode, ql, dl))
    if Q.shape[1] == 1:
        return _ap_index_w1(Q, X, mode, ql, dl)
    if mode == "single":
        classes, counts = np.unique(dl, return_counts=True)
        pos = np.minimum(np.searchsorted(classes, ql), len(classes) - 1)
        nrel = np.where(classes[pos] == ql, counts[pos], 0).astype(np.int64)
        if _one_pass_fits(n, nrel):
            with threads_for(nq * n * Q.shape[1] / 8e8):
                return _ap_index_one_pass(Q, word_major(X), ql, dl, nrel)[0]
    A, R = histograms(Q, X, mode, ql, dl)
    oa, orl = _offsets(A, R)
    multi, ql1, dl1, qm, dm = _label_args(mode, ql, dl)
    with threads_for(nq * n * Q.shape[1] / 8e8):
        num = _ap_index_kernel(Q, word_major(X), multi, ql1, dl1, qm, dm, oa, orl)
    total = R.sum(axis=1)
    return np.divide(num, total, out=np.zeros(nq), where=total > 0)


def _one_pass_fits(n, nrel):
    """Whether the multi-word one-pass kernel's per-thread rank buffer fits (and its packing)."""
    return n < (1 << 27) and _QB * 8 * (int(nrel.max()) + 1) <= _ONE_PASS_BYTES


def _ap_index_w1(Q, X, mode, ql, dl):
    """Index-tie AP over the whole ranking, one-word codes. Where the earlier one-pass kernel
    summed over the whole ranking (single labels, <= 254 classes, buffer fits), one pass with
    that order; elsewhere histograms (for the offsets), then per-chunk sums. Results stay
    bit-identical to earlier releases."""
    nq, n = Q.shape[0], X.shape[0]
    if mode == "single":
        qids, ids = dense_ids(ql, dl)
        nrel = relevant_counts(qids, ids, n) if ids.size else None
        if nrel is not None and _one_pass_fits(n, nrel):
            with threads_for(nq * n / 8e8):
                return ap_one_pass_w1(Q, X, qids, ids, nrel, _ONE_PASS_BYTES)
    A, R = histograms(Q, X, mode, ql, dl)
    oa, orl = _offsets(A, R)
    total = R.sum(axis=1)
    with threads_for(nq * n / 8e8):
        num = index_numerators_w1(Q, X, mode, ql, dl, oa, orl)
    return np.divide(num, total, out=np.zeros(nq), where=total > 0)


def mean_average_precision(queries, database, query_labels, db_labels, topk=None, ties="index"):
    """The mean over queries of :func:`average_precision` (a float)."""
    aps = average_precision(queries, database, query_labels, db_labels, topk=topk, ties=ties)
    return float(aps.mean()) if aps.size else 0.0


def precision_at_k(queries, database, query_labels, db_labels, k, ties="index"):
    """Fraction of relevant items among each query's first k ranked items: (q,) float64.

    k > n uses all n items. ties="aware" gives the expectation over orderings inside tie groups.
    """
    Q, X = _checks.code_pair(queries, database)
    mode, ql, dl = _checks.labels(query_labels, db_labels, Q.shape[0], X.shape[0])
    k = _checks.positive_int(k, "k")
    ties = _checks.ties(ties)
    nq, n = Q.shape[0], X.shape[0]
    kk = min(k, n)
    if nq == 0 or n == 0:
        return np.zeros(nq)
    if ties == "index":
        _, I = hamming_knn(Q, X, kk)
        return _relevance_of(I, mode, ql, dl).sum(axis=1) / kk
    A, R = histograms(Q, X, mode, ql, dl)
    return precision_at_k_from_histograms(A, R, [kk])[:, 0]


def precision_at_k_from_histograms(all_counts, rel_counts, ks):
    """Tie-aware precision at each k of `ks` from per-distance counts: (q, len(ks)) float64.

    The counts may be sums of :func:`distance_histograms` over database shards, so P@k of a whole
    archive needs no ranking. k larger than a query's database uses all of it; a query with an
    empty database scores 0.
    """
    A, R = _hist_arrays(all_counts, rel_counts)
    ks = [_checks.positive_int(k, "k") for k in np.atleast_1d(ks).tolist()]
    out = np.zeros((A.shape[0], len(ks)))
    if A.size == 0:
        return out
    ca, cr = np.cumsum(A, axis=1), np.cumsum(R, axis=1)
    n, rows = ca[:, -1], np.arange(A.shape[0])
    for j, k in enumerate(ks):
        kk = np.minimum(k, n)
        d = np.argmax(ca >= np.maximum(kk, 1)[:, None], axis=1)  # the group holding position kk
        before_a = ca[rows, d] - A[rows, d]
        before_r = cr[rows, d] - R[rows, d]
        exp_rel = before_r + (kk - before_a) * R[rows, d] / np.maximum(A[rows, d], 1)
        np.divide(exp_rel, kk, out=out[:, j], where=kk > 0)
    return out


def pr_curve_from_histograms(all_counts, rel_counts):
    """Precision and recall at each Hamming radius r (items at distance <= r retrieved), averaged
    over queries as in hashing papers: returns (precision, recall), each (distances,) float64.

    A query that retrieves nothing within r counts precision 0 there; a query with no relevant
    item counts recall 0.
    """
    A, R = _hist_arrays(all_counts, rel_counts)
    ca = np.cumsum(A, axis=1).astype(np.float64)
    cr = np.cumsum(R, axis=1).astype(np.float64)
    prec = np.divide(cr, ca, out=np.zeros_like(cr), where=ca > 0)
    tot = cr[:, -1:]
    rec = np.divide(cr, tot, out=np.zeros_like(cr), where=tot > 0)
    return prec.mean(axis=0), rec.mean(axis=0)
