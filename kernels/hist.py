"""Per-query histograms of Hamming distances, over all database items and over the relevant ones.

Two kernels:

* ``_hist_generic``: any code length and either label kind. Distances of a chunk of the database
  are computed in a vectorised loop into a small buffer, then a scalar loop adds each item to the
  histogram at ``2 * distance + relevant``.
* ``_hist_csa``: codes of one word (<= 64 bits) with single-label class ids, the common case and
  several times faster. The database is grouped by class once (a counting sort), so relevance is a
  property of a class segment and costs nothing per pair: a query's own class segment feeds its
  "relevant" counters, the other segments its "other" counters. Each comparison becomes a one-hot
  word ``rotl(1, distance)`` (distance 64 lands on bit 0), and one-hot words are summed by a
  bit-sliced Harley-Seal carry-save adder tree (32 inputs per step) over 32 lanes of independent
  counters; the lane loop vectorises into AVX-512 ``vpopcntq``, ``vpsllvq`` and ``vpternlogq``.
  Counters overflowing weight 4096 leave a carry word; the (rare) non-zero ones are scanned after
  each chunk. Distances 0 and 64 share bit 0; they are told apart exactly by the sum of all
  distances, which follows from per-class bit counts of the database:
  ``sum_j popcount(q ^ x_j) = sum_b (q_b ? n - ones_b : ones_b)``. A segment's last partial group
  is padded with zero codes (whose count, at distance popcount(q), is taken off afterwards) unless
  it is tiny, in which case a scalar loop takes it.

Neither kernel allocates anything of size queries x database.
"""

import numpy as np
from numba import njit, prange

from ._bits import ctz, popcount, rotl1
from ._layout import threads_for, word_major

_CHUNK = 4096  # database codes per cache chunk
_QB = 8  # queries per block
_LANES = 32  # independent bit-sliced counters per plane (4 AVX-512 registers)
_GROUP = 32 * _LANES  # codes per carry-save tree step (32 inputs per lane)
_CSA_CHUNK = 2 * _GROUP  # database codes per chunk in the CSA kernel
_NPLANES = 12  # 5 Harley-Seal planes (weights 1..16) + 7 ripple planes (32..2048)
_CARRY = 1 << _NPLANES  # weight of a carry word
_STATE = _NPLANES * _LANES + _CSA_CHUNK // 32  # words of state per (query, stream)


@njit(cache=True, inline="always")
def _fill_dist(qrow, XT, s0, nb, dist):
    """dist[:nb] = distances from qrow to database codes s0..s0+nb (word-major XT)."""
    W = XT.shape[0]
    q = qrow[0]
    xs = XT[0]
    for j in range(nb):
        dist[j] = popcount(q ^ xs[np.uint64(s0 + j)])
    for w in range(1, W):
        q = qrow[w]
        xs = XT[w]
        for j in range(nb):
            dist[j] += popcount(q ^ xs[np.uint64(s0 + j)])


@njit(cache=True, inline="always")
def _relevant(qi, j, multi, ql, dl, qm, dm):
    """1 if database item j is relevant to query qi (shares a class), else 0."""
    if not multi:
        return 1 if dl[j] == ql[qi] else 0
    for w in range(qm.shape[1]):
        if qm[qi, w] & dm[j, w]:
            return 1
    return 0


@njit(cache=True, parallel=True)
def _hist_generic(Q, XT, multi, ql, dl, qm, dm):
    """(all, rel) histograms, each (q, 64*words + 1) int64; labels ql/dl (single) or qm/dm."""
    nq, W = Q.shape
    n = XT.shape[1]
    nd = 64 * W + 1
    A = np.zeros((nq, nd), np.int64)
    R = np.zeros((nq, nd), np.int64)
    nqb = (nq + _QB - 1) // _QB
    for b in prange(nqb):
        q0 = b * _QB
        q1 = min(nq, q0 + _QB)
        h = np.zeros((q1 - q0, 2 * nd), np.int64)
        dist = np.empty(_CHUNK, np.int64)
        for c0 in range(0, n, _CHUNK):
            nb = min(n, c0 + _CHUNK) - c0
            for qi in range(q0, q1):
                _fill_dist(Q[qi], XT, c0, nb, dist)
                hq = h[qi - q0]
                for j in range(nb):
                    hq[2 * dist[j] + _relevant(qi, c0 + j, multi, ql, dl, qm, dm)] += 1
        for qi in range(q0, q1):
            for d in range(nd):
                r = h[qi - q0, 2 * d + 1]
                R[qi, d] = r
                A[qi, d] = r + h[qi - q0, 2 * d]
    return A, R


@njit(cache=True, inline="always")
def _csa(a, b, c):
    """Carry-save adder: (sum, carry) bit planes of a + b + c."""
    return a ^ b ^ c, (a & b) | (b & c) | (a & c)


# The carry-save kernel below is a Harley-Seal tree over 32 inputs per lane, unrolled by hand.
# Its lane loop must be the innermost loop with a compile-time trip count and all state in one
# array (so that LLVM needs a single alias check and vectorises it); indices are unsigned so that
# no negative-index wrap-around (which forces gathers) is generated.
@njit(cache=True, inline="always")
def _csa_accumulate(q, xs, st):
    """Add one-hot(distance from q) of every code of xs to the bit-sliced counters in st.

    Processes the largest multiple of _GROUP codes of xs and returns that count. st holds, per
    lane, the Harley-Seal planes of weight 1, 2, 4, 8, 16, then ripple-carry planes of weight
    32 ... 2048, then one carry word (weight _CARRY) per group of _GROUP codes.
    """
    L = _LANES
    ng = xs.shape[0] // _GROUP
    for g in range(ng):
        b = g * _GROUP
        for lane in range(L):
            ones = st[np.uint64(0 * L + lane)]
            twos = st[np.uint64(1 * L + lane)]
            fours = st[np.uint64(2 * L + lane)]
            eights = st[np.uint64(3 * L + lane)]
            sixteens = st[np.uint64(4 * L + lane)]
            m0 = rotl1(popcount(q ^ xs[np.uint64(b + 0 * L + lane)]))
            m1 = rotl1(popcount(q ^ xs[np.uint64(b + 1 * L + lane)]))
            m2 = rotl1(popcount(q ^ xs[np.uint64(b + 2 * L + lane)]))
            m3 = rotl1(popcount(q ^ xs[np.uint64(b + 3 * L + lane)]))
            m4 = rotl1(popcount(q ^ xs[np.uint64(b + 4 * L + lane)]))
            m5 = rotl1(popcount(q ^ xs[np.uint64(b + 5 * L + lane)]))
            m6 = rotl1(popcount(q ^ xs[np.uint64(b + 6 * L + lane)]))
            m7 = rotl1(popcount(q ^ xs[np.uint64(b + 7 * L + lane)]))
            m8 = rotl1(popcount(q ^ xs[np.uint64(b + 8 * L + lane)]))
            m9 = rotl1(popcount(q ^ xs[np.uint64(b + 9 * L + lane)]))
            m10 = rotl1(popcount(q ^ xs[np.uint64(b + 10 * L + lane)]))
            m11 = rotl1(popcount(q ^ xs[np.uint64(b + 11 * L + lane)]))
            m12 = rotl1(popcount(q ^ xs[np.uint64(b + 12 * L + lane)]))
            m13 = rotl1(popcount(q ^ xs[np.uint64(b + 13 * L + lane)]))
            m14 = rotl1(popcount(q ^ xs[np.uint64(b + 14 * L + lane)]))
            m15 = rotl1(popcount(q ^ xs[np.uint64(b + 15 * L + lane)]))
            m16 = rotl1(popcount(q ^ xs[np.uint64(b + 16 * L + lane)]))
            m17 = rotl1(popcount(q ^ xs[np.uint64(b + 17 * L + lane)]))
            m18 = rotl1(popcount(q ^ xs[np.uint64(b + 18 * L + lane)]))
            m19 = rotl1(popcount(q ^ xs[np.uint64(b + 19 * L + lane)]))
            m20 = rotl1(popcount(q ^ xs[np.uint64(b + 20 * L + lane)]))
            m21 = rotl1(popcount(q ^ xs[np.uint64(b + 21 * L + lane)]))
            m22 = rotl1(popcount(q ^ xs[np.uint64(b + 22 * L + lane)]))
            m23 = rotl1(popcount(q ^ xs[np.uint64(b + 23 * L + lane)]))
            m24 = rotl1(popcount(q ^ xs[np.uint64(b + 24 * L + lane)]))
            m25 = rotl1(popcount(q ^ xs[np.uint64(b + 25 * L + lane)]))
            m26 = rotl1(popcount(q ^ xs[np.uint64(b + 26 * L + lane)]))
            m27 = rotl1(popcount(q ^ xs[np.uint64(b + 27 * L + lane)]))
            m28 = rotl1(popcount(q ^ xs[np.uint64(b + 28 * L + lane)]))
            m29 = rotl1(popcount(q ^ xs[np.uint64(b + 29 * L + lane)]))
            m30 = rotl1(popcount(q ^ xs[np.uint64(b + 30 * L + lane)]))
            m31 = rotl1(popcount(q ^ xs[np.uint64(b + 31 * L + lane)]))
            ones, tA = _csa(ones, m0, m1)
            ones, tB = _csa(ones, m2, m3)
            twos, fA = _csa(twos, tA, tB)
            ones, tA = _csa(ones, m4, m5)
            ones, tB = _csa(ones, m6, m7)
            twos, fB = _csa(twos, tA, tB)
            fours, eA = _csa(fours, fA, fB)
            ones, tA = _csa(ones, m8, m9)
            ones, tB = _csa(ones, m10, m11)
            twos, fA = _csa(twos, tA, tB)
            ones, tA = _csa(ones, m12, m13)
            ones, tB = _csa(ones, m14, m15)
            twos, fB = _csa(twos, tA, tB)
            fours, eB = _csa(fours, fA, fB)
            eights, sA = _csa(eights, eA, eB)
            ones, tA = _csa(ones, m16, m17)
            ones, tB = _csa(ones, m18, m19)
            twos, fA = _csa(twos, tA, tB)
            ones, tA = _csa(ones, m20, m21)
            ones, tB = _csa(ones, m22, m23)
            twos, fB = _csa(twos, tA, tB)
            fours, eA = _csa(fours, fA, fB)
            ones, tA = _csa(ones, m24, m25)
            ones, tB = _csa(ones, m26, m27)
            twos, fA = _csa(twos, tA, tB)
            ones, tA = _csa(ones, m28, m29)
            ones, tB = _csa(ones, m30, m31)
            twos, fB = _csa(twos, tA, tB)
            fours, eB = _csa(fours, fA, fB)
            eights, sB = _csa(eights, eA, eB)
            sixteens, c = _csa(sixteens, sA, sB)
            for p in range(5, _NPLANES):  # ripple-carry planes
                i = np.uint64(p * L + lane)
                v = st[i]
                st[i] = v ^ c
                c = v & c
            st[np.uint64(_NPLANES * L + g * L + lane)] = c
            st[np.uint64(0 * L + lane)] = ones
            st[np.uint64(1 * L + lane)] = twos
            st[np.uint64(2 * L + lane)] = fours
            st[np.uint64(3 * L + lane)] = eights
            st[np.uint64(4 * L + lane)] = sixteens
    return ng * _GROUP


@njit(cache=True)
def _extract(st, out):
    """Add the counts held in the bit planes of st (one stream) to out[0..63]: for each plane, only
    the bit positions set in some lane are counted (a vectorised sum over lanes)."""
    L = _LANES
    for p in range(_NPLANES):
        plane = st[p * L : (p + 1) * L]
        used = np.uint64(0)
        for lane in range(L):
            used |= plane[lane]
        while used:
            bit = ctz(used)
            used &= used - np.uint64(1)
            s = np.uint64(0)
            for lane in range(L):
                s += (plane[lane] >> np.uint64(bit)) & np.uint64(1)
            out[bit] += np.int64(s) << p


@njit(cache=True, parallel=True)
def _hist_csa(Q1, Xs, seg, qseg, colcnt, ncsa, npad):
    """(all, rel) histograms (q, 65) for one-word codes, database grouped by class.

    Q1 (q,) query words; Xs (n,) database words ordered by class; seg (S+1,) segment starts;
    qseg (q,) the segment of each query's class or -1; colcnt (S, 64) per-segment counts of set bits
    over the codes the carry-save loop processes (the first ncsa[s] codes of segment s); npad (S,)
    zero codes padding the end of each segment.
    """
    nq = Q1.shape[0]
    S = seg.shape[0] - 1
    A = np.zeros((nq, 65), np.int64)
    R = np.zeros((nq, 65), np.int64)
    colall = np.zeros(64, np.int64)
    nall = 0
    padall = 0
    for s in range(S):
        nall += ncsa[s]
        padall += npad[s]
        for bit in range(64):
            colall[bit] += colcnt[s, bit]
    nqb = (nq + _QB - 1) // _QB
    for b in prange(nqb):
        q0 = b * _QB
        q1 = min(nq, q0 + _QB)
        nb = q1 - q0
        st = np.zeros((nb, 2, _STATE), np.uint64)
        hc = np.zeros((nb, 2, 65), np.int64)  # from the carry-save counters
        ht = np.zeros((nb, 2, 65), np.int64)  # from the scalar tails
        for s in range(S):
            for c0 in range(seg[s], seg[s + 1], _CSA_CHUNK):
                c1 = min(seg[s + 1], c0 + _CSA_CHUNK)
                xs = Xs[c0:c1]
                for qi in range(nb):
                    q = Q1[q0 + qi]
                    stream = 1 if qseg[q0 + qi] == s else 0
                    sq = st[qi, stream]
                    done = _csa_accumulate(q, xs, sq)
                    h = hc[qi, stream]
                    carries = sq[_NPLANES * _LANES : _NPLANES * _LANES + done // 32]
                    anyc = np.uint64(0)
                    for w in range(carries.shape[0]):
                        anyc |= carries[w]
                    if anyc:  # rare: a lane's count at some distance passed _CARRY
                        for w in range(carries.shape[0]):
                            c = carries[w]
                            while c:
                                h[ctz(c)] += _CARRY
                                c &= c - np.uint64(1)
                    h = ht[qi, stream]
                    for j in range(done, c1 - c0):
                        h[popcount(q ^ xs[j])] += 1
        for qi in range(nb):
            q = Q1[q0 + qi]
            sr = qseg[q0 + qi]
            for stream in range(2):
                h = hc[qi, stream]
                _extract(st[qi, stream], h)
                # sum of distances over the codes the carry-save loop saw, from bit counts
                sd = 0
                for bit in range(64):
                    qb = (q >> np.uint64(bit)) & np.uint64(1)
                    if stream == 1:
                        ones = colcnt[sr, bit] if sr >= 0 else 0
                        cnt = ncsa[sr] if sr >= 0 else 0
                    else:
                        ones = colall[bit] - (colcnt[sr, bit] if sr >= 0 else 0)
                        cnt = nall - (ncsa[sr] if sr >= 0 else 0)
                    sd += cnt - ones if qb else ones
                for d in range(1, 64):
                    sd -= d * h[d]
                c64 = sd // 64  # bit 0 held distances 0 and 64 together
                h[0] -= c64
                h[64] = c64
                # the zero padding sits at distance popcount(q)
                pad = (
                    (npad[sr] if sr >= 0 else 0)
                    if stream == 1
                    else padall - (npad[sr] if sr >= 0 else 0)
                )
                h[popcount(q)] -= pad
            for d in range(65):
                r = hc[qi, 1, d] + ht[qi, 1, d]
                R[q0 + qi, d] = r
                A[q0 + qi, d] = r + hc[qi, 0, d] + ht[qi, 0, d]
    return A, R


@njit(cache=True)
def _column_counts(Xs, seg, ncsa):
    """Per segment, the count of set bits in each bit position over its first ncsa codes."""
    S = seg.shape[0] - 1
    out = np.zeros((S, 64), np.int64)
    for s in range(S):
        for j in range(seg[s], seg[s] + ncsa[s]):
            x = Xs[j]
            for bit in range(64):
                out[s, bit] += (x >> np.uint64(bit)) & np.uint64(1)
    return out


def _class_ids(labels):
    """(sorted distinct classes, index of each label's class), without a sort for small ids."""
    if labels.size and labels.min() >= 0 and labels.max() < (1 << 22):
        present = np.bincount(labels) > 0
        classes = np.flatnonzero(present)
        remap = np.cumsum(present) - 1
        return classes, remap[labels]
    return np.unique(labels, return_inverse=True)


@njit(cache=True)
def _group_codes(x, inv, seg):
    """Codes x grouped by class (segment s holds class s in database order, then zero padding)."""
    out = np.zeros(seg[-1], x.dtype)
    fill = seg[:-1].copy()
    for j in range(x.shape[0]):
        c = inv[j]
        out[fill[c]] = x[j]
        fill[c] += 1
    return out


def histograms(Q, X, mode, ql, dl):
    """(all, rel) per-query distance histograms, (q, 64*words + 1) int64 each (checked inputs)."""
    nq, W = Q.shape
    n = X.shape[0]
    if W == 1 and mode == "single" and n >= _GROUP:
        classes, inv = _class_ids(dl)
        lens = np.bincount(inv, minlength=len(classes)).astype(np.int64)
        # a segment whose last partial group is not tiny is padded with zero codes to a whole
        # group (their counts are taken off afterwards); tiny remainders go to the scalar loop
        tail = lens % _GROUP
        npad = np.where(tail >= _GROUP // 8, (_GROUP - tail) % _GROUP, 0).astype(np.int64)
        seg = np.zeros(len(classes) + 1, np.int64)
        np.cumsum(lens + npad, out=seg[1:])
        Xs = _group_codes(X[:, 0], inv, seg)
        ncsa = ((lens + npad) // _GROUP) * _GROUP
        pos = np.searchsorted(classes, ql)
        pos_c = np.minimum(pos, len(classes) - 1)
        qseg = np.where(classes[pos_c] == ql, pos_c, -1).astype(np.int64)
        colcnt = _column_counts(Xs, seg, ncsa)
        with threads_for(nq * n / 5e9):
            return _hist_csa(np.ascontiguousarray(Q[:, 0]), Xs, seg, qseg, colcnt, ncsa, npad)
    multi = mode == "multi"
    if multi:
        qm, dm = ql, dl
        ql = dl = np.zeros(1, np.int64)
    else:
        qm = dm = np.zeros((1, 1), np.uint64)
    with threads_for(nq * n * W / 1e9):
        return _hist_generic(Q, word_major(X), multi, ql, dl, qm, dm)
