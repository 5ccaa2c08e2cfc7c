"""Frozen copy of the index-tie AP path of kernels/metrics.py at commit 0cc2f3f (before the
one-word kernel in kernels/_index_w1.py), for benchmarks/bench_map_index.py to time side by side
and to check the new results bit for bit. Not used by the package.

average_precision here keeps only the index-tie, whole-ranking path (what the benchmark times).
"""

import numpy as np
from numba import njit, prange

from kernels import _checks
from kernels._bits import ctz, eqmask64, popcount, rotl1
from kernels._layout import threads_for, word_major
from kernels.hist import _QB, _fill_dist, _relevant, histograms

_R_MASK = (1 << 27) - 1  # packed ranks: (a << 36) | (r << 9) | distance
_ONE_PASS_BYTES = 64 << 20  # per-thread buffer cap for the one-pass index-tie AP


@njit(cache=True, inline="always")
def _dist_rel_chunk(qrow, XT, c0, nb, multi, qi, ql, dl, qm, dm, dist, d16, relb, need_dist):
    """Distances (uint16, if need_dist) and relevance (uint8) of database items c0..c0+nb for
    query qi."""
    W = XT.shape[0]
    if not need_dist:
        pass
    elif W == 1:
        q = qrow[0]
        xs = XT[0]
        for j in range(nb):
            d16[j] = popcount(q ^ xs[np.uint64(c0 + j)])
    else:
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


@njit(cache=True, inline="always")
def _ranks_w1_scratch(chunk):
    """Per-thread buffers of `_ranks_w1` for chunks of `chunk` items (a multiple of 64):
    d8, relm, slot, masks, before."""
    nblk = chunk // 64
    return (
        np.empty(chunk, np.uint8),
        np.empty(nblk, np.uint64),
        np.empty(65, np.int64),
        np.empty((65, nblk), np.uint64),
        np.empty((65, nblk), np.int64),
    )


@njit(cache=True)
def _ranks_w1(q, xs, nb, lab, lab0, lab_v, d8, relm, run_a, run_r, out, base, slot, masks, before):
    """Ranks of the relevant items of one chunk, one-word codes, value-major and vectorised.

    xs[:nb] are the chunk's codes; item j is relevant where lab[lab0 + j] == lab_v (lab: uint8,
    readable and not equal to lab_v up to the next multiple of 64: a 0/1 relevance array with
    lab_v = 1, or the database's dense class ids with the query's). For every relevant item:
    a = number of items at its distance d up to and including it (run_a[d] holds the count
    before the chunk), r = the same among relevant items. Writes
    (a << 36) | (r << 9) | d to out[base:] in index order, returns the count and advances
    run_a/run_r. For each distance present, a 64-byte compare per block of 64 items gives the mask
    of the items at that distance (no per-item scalar work); each relevant item then needs one
    masked popcount.
    """
    nblk = (nb + 63) // 64
    present = np.uint64(0)
    far = np.uint64(0)
    for j in range(nb):
        d = popcount(q ^ xs[np.uint64(j)])
        d8[j] = d
        present |= rotl1(d)
        far |= np.uint64(d) >> np.uint64(6)
    for j in range(nb, nblk * 64):
        d8[j] = 255
    for b in range(nblk):
        relm[b] = eqmask64(lab, lab0 + b * 64, lab_v)
    # per distance present: masks of each block and counts before each block
    slot[:] = -1
    nv = 0
    vals = present
    while vals:
        slot[ctz(vals)] = nv
        nv += 1
        vals &= vals - np.uint64(1)
    if far:
        slot[64] = nv
        nv += 1
    for v in range(65):
        s = slot[v]
        if s < 0:
            continue
        v8 = np.uint8(v)
        tot = run_a[v]
        for b in range(nblk):
            m = eqmask64(d8, b * 64, v8)
            masks[s, b] = m
            before[s, b] = tot
            tot += popcount(m)
        run_a[v] = tot
    cnt = 0
    for b in range(nblk):
        rm = relm[b]
        while rm:
            off = ctz(rm)
            rm &= rm - np.uint64(1)
            v = np.int64(d8[b * 64 + off])
            s = slot[v]
            low = (np.uint64(2) << np.uint64(off)) - np.uint64(1)
            r = run_r[v] + 1
            run_r[v] = r
            a = before[s, b] + popcount(masks[s, b] & low)
            out[base + cnt] = (a << 36) | (r << 9) | v
            cnt += 1
    return cnt


@njit(cache=True, parallel=True)
def _ap_index_kernel(Q, XT, multi, ql, dl, qm, dm, off_all, off_rel):
    """Per query: sum over relevant items j (in index order) of (off_rel[d] + #relevant at d
    up to j) / (off_all[d] + #items at d up to j), with d the distance of j.

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
        run_a64 = np.zeros((q1 - q0, nd), np.int64)
        d8, relm, slot, masks, before = _ranks_w1_scratch(chunk)
        for c0 in range(0, n, chunk):
            nb = min(n, c0 + chunk) - c0
            for qi in range(q0, q1):
                _dist_rel_chunk(
                    Q[qi], XT, c0, nb, multi, qi, ql, dl, qm, dm, dist, d16, relb, W > 1
                )
                oa = off_all[qi]
                orl = off_rel[qi]
                s = 0.0
                if W == 1:
                    for j in range(nb, (nb + 63) // 64 * 64):
                        relb[j] = 0
                    xs = XT[0, c0 : c0 + nb]
                    k = qi - q0
                    cnt = _ranks_w1(
                        Q[qi, 0],
                        xs,
                        nb,
                        relb,
                        0,
                        np.uint8(1),
                        d8,
                        relm,
                        run_a64[k],
                        run_r[k],
                        buf,
                        0,
                        slot,
                        masks,
                        before,
                    )
                    for i in range(cnt):
                        d = buf[i] & 511
                        s += (orl[d] + ((buf[i] >> 9) & _R_MASK)) / (oa[d] + (buf[i] >> 36))
                    out[qi] += s
                    continue
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
def _ap_index_one_pass(Q, XT, ql, dl, nrel, ql8, dl8):
    """AP (ties by index, whole ranking) for single-label queries in one pass over the database.

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
        run_a64 = np.zeros((q1 - q0, nd), np.int64)
        run_r = np.zeros((q1 - q0, nd), np.int64)
        d8, relm, slot, masks, before = _ranks_w1_scratch(chunk)
        for c0 in range(0, n, chunk):
            nb = min(n, c0 + chunk) - c0
            for qi in range(q0, q1):
                k = qi - q0
                if W == 1:  # relevance straight from the uint8 class ids, 64 items a compare
                    xs = XT[0, c0 : c0 + nb]
                    cnt = _ranks_w1(
                        Q[qi, 0],
                        xs,
                        nb,
                        dl8,
                        c0,
                        ql8[qi],
                        d8,
                        relm,
                        run_a64[k],
                        run_r[k],
                        buf,
                        start[k] + fill[k],
                        slot,
                        masks,
                        before,
                    )
                    fill[k] += cnt
                else:
                    _dist_rel_chunk(
                        Q[qi], XT, c0, nb, False, qi, ql, dl, dummy, dummy, dist, d16, relb, True
                    )
                    fill[k] += _running_counts(d16, relb, nb, run_a[k], buf, start[k] + fill[k])
        for qi in range(q0, q1):
            k = qi - q0
            for d in range(nd):
                A[qi, d] = run_a64[k, d] if W == 1 else run_a[k, d]
            if W > 1:  # the scalar path left (a << 9 | d): add the relevant rank r in index order
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
    multi, ql1, dl1, qm, dm = _label_args(mode, ql, dl)
    with threads_for(Q.shape[0] * X.shape[0] * Q.shape[1] / 8e8):
        return _ap_index_kernel(Q, word_major(X), multi, ql1, dl1, qm, dm, offs[0], offs[1])


def _offsets(A, R):
    """Exclusive prefix sums over distance: counts ranked before each distance."""
    oa = np.zeros_like(A)
    orl = np.zeros_like(R)
    np.cumsum(A[:, :-1], axis=1, out=oa[:, 1:])
    np.cumsum(R[:, :-1], axis=1, out=orl[:, 1:])
    return oa, orl


def _uint8_class_ids(classes, q_ids, dl):
    """Class ids 0..253 as uint8: the queries' (q_ids: index into `classes`, 254 for a class
    absent from the database) and the database's, padded with 255 to a multiple of 64 plus 64,
    so that 64 relevance flags are one byte compare. With more than 254 classes, dummies (only
    multi-word codes take the one-pass kernel then)."""
    if len(classes) > 254:
        return np.zeros(0, np.uint8), np.zeros(0, np.uint8)
    n = len(dl)
    dl8 = np.full((n + 63) // 64 * 64 + 64, 255, np.uint8)
    dl8[:n] = np.searchsorted(classes, dl)
    return q_ids.astype(np.uint8), dl8


def average_precision(queries, database, query_labels, db_labels):
    """AP (ties by index, whole ranking) of each query: (q,) float64, as the package computed it."""
    Q, X = _checks.code_pair(queries, database)
    mode, ql, dl = _checks.labels(query_labels, db_labels, Q.shape[0], X.shape[0])
    nq, n = Q.shape[0], X.shape[0]
    if nq == 0:
        return np.zeros(0)
    if n == 0:
        return np.zeros(nq)
    if mode == "single":
        classes, counts = np.unique(dl, return_counts=True)
        pos = np.minimum(np.searchsorted(classes, ql), len(classes) - 1)
        present = classes[pos] == ql
        nrel = np.where(present, counts[pos], 0).astype(np.int64)
        fits = n < (1 << 27) and _QB * 8 * (int(nrel.max()) + 1) <= _ONE_PASS_BYTES
        if fits and (Q.shape[1] > 1 or len(classes) <= 254):
            ql8, dl8 = _uint8_class_ids(classes, np.where(present, pos, 254), dl)
            with threads_for(nq * n * Q.shape[1] / 8e8):
                return _ap_index_one_pass(Q, word_major(X), ql, dl, nrel, ql8, dl8)[0]
    A, R = histograms(Q, X, mode, ql, dl)
    oa, orl = _offsets(A, R)
    multi, ql1, dl1, qm, dm = _label_args(mode, ql, dl)
    with threads_for(nq * n * Q.shape[1] / 8e8):
        num = _ap_index_kernel(Q, word_major(X), multi, ql1, dl1, qm, dm, oa, orl)
    total = R.sum(axis=1)
    return np.divide(num, total, out=np.zeros(nq), where=total > 0)
