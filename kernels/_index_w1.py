"""Index-tie AP numerators for one-word codes (<= 64 bits): the hot path of MAP with ties="index".

Per query and database chunk of 4,096 items (the chunk stays in L1 while a block of queries
passes over it):

1. distances of the chunk as bytes (``vpopcntq``) and the set of distances present (a one-hot
   shift per item);
2. for each distance v present, the count of items at v before each 64-item block (one AVX-512
   byte compare and a popcount per block: no per-item scalar work);
3. each relevant item j (64 relevance flags per byte compare) at distance v in block b gets
   ``a`` = items ranked before it + 1 = offset[v] + running count[v] + count before b + masked
   popcount of its own block, and ``r`` from a running count of relevant items at v; its precision
   ``(rel_offset[v] + r) / a`` is added to the sum right away.

Compared with the kernel before it (per-distance mask and count tables, packed ranks written to a
buffer and read back by a second loop), this keeps only a small count table in L1 and finishes
each relevant item in one step. The sum runs in index order, restarted per chunk (the shard
partial, and whole-ranking AP where the earlier kernels summed per chunk).

Whole-ranking AP with single labels (<= 254 classes, rank buffer within its cap) runs in one pass
(``_ap_one_pass_w1``): the same per-chunk steps with no offsets, each relevant item's (count at
its distance up to it, distance) kept per query, 8 bytes each, and the final counts, which are
the histogram, give the offsets afterwards. That drops the histogram pass (about 30% of the time
on AVX2, benchmarks/RESULTS.md); its one running sum in index order matches the earlier kernels
bit for bit. On AVX2 (no ``vpopcntq``, 64-byte compares split in two) the steps above are the
same, only slower against a bare popcount.
"""

import numba
import numpy as np
from numba import njit, prange

from ._bits import ctz, eqmask64, popcount, rotl1
from .hist import _class_ids, _relevant

CHUNK = 4096  # database items per chunk; the shard partial sums per chunk, so it fixes results
_NBLK = CHUNK // 64
_QB_MAX = 32  # queries per block sharing a database chunk


@njit(cache=True, inline="always")
def _distances(q, xs, nb, d8):
    """d8[:nb] = popcount(q ^ xs), padded with 255 to a whole block; returns the distances
    present as a one-hot word (distance 64 shares bit 0 with distance 0)."""
    present = np.uint64(0)
    for j in range(nb):
        d = popcount(q ^ xs[np.uint64(j)])
        d8[j] = d
        present |= rotl1(d)
    for j in range(nb, (nb + 63) // 64 * 64):
        d8[j] = 255
    return present


@njit(cache=True, inline="always")
def _block_counts(d8, nblk, present, oa, run_a, before, base):
    """For each distance v present: base[v] = items ranked before the chunk at v, before[v, b] =
    items at v in the chunk's blocks before b (flat, uint16 count, unsigned indexing); advances
    run_a[v] by the chunk's count."""
    vals = present
    zero = (present & np.uint64(1)) != 0  # bit 0 may also stand for distance 64
    while True:
        if vals:
            v = ctz(vals)
            vals &= vals - np.uint64(1)
        elif zero:
            v = 64
            zero = False
        else:
            break
        v8 = np.uint8(v)
        base[v] = oa[v] + run_a[v]
        row = np.uint64(v * _NBLK)
        t = 0
        for b in range(nblk):
            before[row + np.uint64(b)] = t
            t += popcount(eqmask64(d8, b * 64, v8))
        run_a[v] += t


@njit(cache=True, inline="always")
def _rank_in(d8, b, off, before, base):
    """(distance v, base[v] + items at v in the chunk up to item b * 64 + off)."""
    v = np.uint64(d8[b * 64 + off])
    low = (np.uint64(2) << np.uint64(off)) - np.uint64(1)
    m = eqmask64(d8, b * 64, np.uint8(v))
    return v, base[v] + before[v * np.uint64(_NBLK) + np.uint64(b)] + popcount(m & low)


@njit(cache=True, inline="always")
def _relevant_sum(d8, relm, nblk, orl, run_r, before, base, s):
    """Adds to s the precision at each relevant item of the chunk, in index order."""
    for b in range(nblk):
        rm = relm[b]
        while rm:
            off = ctz(rm)
            rm &= rm - np.uint64(1)
            v, a = _rank_in(d8, b, off, before, base)
            r = run_r[v] + 1
            run_r[v] = r
            s += (orl[v] + r) / a
    return s


@njit(cache=True, inline="always")
def _relevant_ranks(d8, relm, nblk, before, base, buf, pos):
    """Appends (items at its distance ranked up to it << 7 | distance) of each relevant item of
    the chunk to buf from pos, in index order (base without offsets); returns the next position."""
    for b in range(nblk):
        rm = relm[b]
        while rm:
            off = ctz(rm)
            rm &= rm - np.uint64(1)
            v, a = _rank_in(d8, b, off, before, base)
            buf[pos] = (a << 7) | np.int64(v)
            pos += 1
    return pos


@njit(cache=True, inline="always")
def _prepare(q, xs, nb, lab, lab0, lab_v, oa, run_a, d8, relm, before, base):
    """A chunk's distances, relevance masks (items whose lab[lab0 + j] equals lab_v; lab readable,
    and different from lab_v, up to the next multiple of 64) and block counts; returns the number
    of blocks."""
    nblk = (nb + 63) // 64
    present = _distances(q, xs, nb, d8)
    for b in range(nblk):
        relm[b] = eqmask64(lab, lab0 + b * 64, lab_v)
    _block_counts(d8, nblk, present, oa, run_a, before, base)
    return nblk


@njit(cache=True)
def _chunk(q, xs, nb, lab, lab0, lab_v, oa, orl, run_a, run_r, d8, relm, before, base, s):
    """s plus the precisions at the chunk's relevant items (see _prepare)."""
    nblk = _prepare(q, xs, nb, lab, lab0, lab_v, oa, run_a, d8, relm, before, base)
    return _relevant_sum(d8, relm, nblk, orl, run_r, before, base, s)


@njit(cache=True)
def _chunk_ranks(q, xs, nb, ids, c0, qid, zero, run_a, d8, relm, before, base, buf, pos):
    """The chunk's relevant items' ranks without offsets appended to buf (see _relevant_ranks);
    returns the next position."""
    nblk = _prepare(q, xs, nb, ids, c0, qid, zero, run_a, d8, relm, before, base)
    return _relevant_ranks(d8, relm, nblk, before, base, buf, pos)


@njit(cache=True)
def _finish(buf, b0, b1, counts):
    """AP from one query's buffered ranks buf[b0:b1] (index order) and its final counts per
    distance: the precisions (relevant ranked up to the item / its rank) summed in index order,
    over the number of relevant items (0 if none)."""
    rel = np.zeros(65, np.int64)
    for i in range(b0, b1):
        rel[buf[i] & 127] += 1
    oa = np.zeros(65, np.int64)
    orl = np.zeros(65, np.int64)
    for d in range(1, 65):
        oa[d] = oa[d - 1] + counts[d - 1]
        orl[d] = orl[d - 1] + rel[d - 1]
    rr = np.zeros(65, np.int64)
    s = 0.0
    for i in range(b0, b1):
        d = buf[i] & 127
        r = rr[d] + 1
        rr[d] = r
        s += (orl[d] + r) / (oa[d] + (buf[i] >> 7))
    return s / (b1 - b0) if b1 > b0 else 0.0


@njit(cache=True, parallel=True)
def _ap_one_pass_w1(Q1, X1, ids, qids, nrel, qb):
    """Whole-ranking AP (index ties) of one-word codes with dense class ids, in one pass over the
    database: nrel[qi] is the number of items of query qi's class. Returns (q,) float64."""
    nq = Q1.shape[0]
    n = X1.shape[0]
    out = np.zeros(nq)
    zero = np.zeros(65, np.int64)
    for bq in prange((nq + qb - 1) // qb):
        q0 = bq * qb
        q1 = min(nq, q0 + qb)
        start = np.zeros(q1 - q0 + 1, np.int64)
        for qi in range(q0, q1):
            start[qi - q0 + 1] = start[qi - q0] + nrel[qi]
        buf = np.empty(max(1, start[q1 - q0]), np.int64)
        fill = start[: q1 - q0].copy()
        run_a = np.zeros((q1 - q0, 65), np.int64)
        d8 = np.empty(CHUNK, np.uint8)
        relm = np.empty(_NBLK, np.uint64)
        before = np.empty(65 * _NBLK, np.uint16)
        base = np.empty(65, np.int64)
        for c0 in range(0, n, CHUNK):
            nb = min(n, c0 + CHUNK) - c0
            xs = X1[c0 : c0 + nb]
            for qi in range(q0, q1):
                k = qi - q0
                fill[k] = _chunk_ranks(
                    Q1[qi], xs, nb, ids, c0, qids[qi], zero, run_a[k], d8, relm, before, base,
                    buf, fill[k],
                )  # fmt: skip
        for qi in range(q0, q1):
            k = qi - q0
            out[qi] = _finish(buf, start[k], fill[k], run_a[k])
    return out


@njit(cache=True, inline="always")
def _fill_relevance(qi, c0, nb, multi, ql, dl, qm, dm, relb):
    """relb[:nb] = relevance of items c0..c0+nb to query qi, zero up to a whole block."""
    for j in range(nb):
        relb[j] = _relevant(qi, c0 + j, multi, ql, dl, qm, dm)
    for j in range(nb, (nb + 63) // 64 * 64):
        relb[j] = 0


@njit(cache=True, parallel=True)
def _ap_index_w1(Q1, X1, ids, qids, multi, ql, dl, qm, dm, oa, orl, qb):
    """Per query, the sum of precisions at its relevant items (index ties), one-word codes, as
    per-chunk sums added up (the shard partial's historical order).

    Relevance from dense uint8 class ids (ids padded with 255; qids 254 = absent) when ids is not
    empty, else per item from ql/dl or the multi-hot masks qm/dm.
    """
    nq = Q1.shape[0]
    n = X1.shape[0]
    out = np.zeros(nq)
    fast = ids.shape[0] > 0
    for bq in prange((nq + qb - 1) // qb):
        q0 = bq * qb
        q1 = min(nq, q0 + qb)
        run_a = np.zeros((q1 - q0, 65), np.int64)
        run_r = np.zeros((q1 - q0, 65), np.int64)
        d8 = np.empty(CHUNK, np.uint8)
        relm = np.empty(_NBLK, np.uint64)
        relb = np.zeros(CHUNK, np.uint8)
        before = np.empty(65 * _NBLK, np.uint16)
        base = np.empty(65, np.int64)
        acc = np.zeros(q1 - q0)
        for c0 in range(0, n, CHUNK):
            nb = min(n, c0 + CHUNK) - c0
            xs = X1[c0 : c0 + nb]
            for qi in range(q0, q1):
                k = qi - q0
                if fast:
                    lab, lab0, lab_v = ids, c0, qids[qi]
                else:
                    _fill_relevance(qi, c0, nb, multi, ql, dl, qm, dm, relb)
                    lab, lab0, lab_v = relb, 0, np.uint8(1)
                ra, rr = run_a[k], run_r[k]
                s = _chunk(
                    Q1[qi],
                    xs,
                    nb,
                    lab,
                    lab0,
                    lab_v,
                    oa[qi],
                    orl[qi],
                    ra,
                    rr,
                    d8,
                    relm,
                    before,
                    base,
                    0.0,
                )
                acc[k] += s
        out[q0:q1] = acc
    return out


def dense_ids(ql, dl):
    """uint8 class ids for one-compare relevance: (query ids, 254 for a class absent from the
    database; database ids padded with 255 to a whole block plus one), or two empty arrays when
    there are more than 254 classes."""
    n = dl.shape[0]
    classes, inv = _class_ids(dl)
    if len(classes) > 254:
        return np.zeros(0, np.uint8), np.zeros(0, np.uint8)
    ids = np.full((n + 63) // 64 * 64 + 64, 255, np.uint8)
    ids[:n] = inv
    pos = np.minimum(np.searchsorted(classes, ql), len(classes) - 1)
    return np.where(classes[pos] == ql, pos, 254).astype(np.uint8), ids


def index_numerators_w1(Q, X, mode, ql, dl, oa, orl):
    """Checked one-word inputs -> (q,) sums of precisions at the relevant items (index ties),
    summed per chunk, on the current numba threads."""
    nq, n = Q.shape[0], X.shape[0]
    if nq == 0 or n == 0:
        return np.zeros(nq)
    multi = mode == "multi"
    if multi:
        qids, ids = np.zeros(0, np.uint8), np.zeros(0, np.uint8)
        qm, dm, ql, dl = ql, dl, np.zeros(1, np.int64), np.zeros(1, np.int64)
    else:
        qids, ids = dense_ids(ql, dl)
        qm = dm = np.zeros((1, 1), np.uint64)
    Q1 = np.ascontiguousarray(Q[:, 0])
    X1 = X.reshape(-1)
    return _ap_index_w1(Q1, X1, ids, qids, multi, ql, dl, qm, dm, oa, orl, _query_block(nq))


def _query_block(nq, cap=_QB_MAX):
    """Queries per block: up to cap, fewer when that leaves a thread idle."""
    return max(1, min(cap, -(-nq // numba.get_num_threads())))


def relevant_counts(qids, ids, n):
    """Per query, the number of database items of its class, from dense_ids' arrays."""
    return np.bincount(ids[:n], minlength=256)[qids].astype(np.int64)


def ap_one_pass_w1(Q, X, qids, ids, nrel, buffer_bytes):
    """Whole-ranking AP (index ties) of checked one-word codes from dense class ids (see
    dense_ids; nrel from relevant_counts), on the current numba threads: (q,) float64. Query
    blocks shrink so that each thread's rank buffer (8 bytes per relevant item) stays within
    buffer_bytes."""
    nq, n = Q.shape[0], X.shape[0]
    if nq == 0 or n == 0:
        return np.zeros(nq)
    cap = max(1, buffer_bytes // (8 * (int(nrel.max()) + 1)))
    Q1 = np.ascontiguousarray(Q[:, 0])
    return _ap_one_pass_w1(Q1, X.reshape(-1), ids, qids, nrel, _query_block(nq, min(cap, _QB_MAX)))
