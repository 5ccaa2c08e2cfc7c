"""Slow, obviously correct NumPy references shared by the kernel tests (full distance matrices).

No tests here; the helpers are imported by the other test_kernels_* modules.
"""

import itertools
import math

import numpy as np

LENGTHS = [12, 24, 32, 48, 64, 100, 128, 256]


def dist_matrix(Q, X):
    return np.bitwise_count(Q[:, None, :] ^ X[None, :, :]).sum(axis=2).astype(np.int64)


def relevance(ql, dl):
    ql = np.asarray(ql)
    dl = np.asarray(dl)
    if ql.ndim == 1:
        return ql[:, None] == dl[None, :]
    return (ql[:, None, :].astype(bool) & dl[None, :, :].astype(bool)).any(axis=2)


def knn(Q, X, k):
    d = dist_matrix(Q, X)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, axis=1), order


def ap_ranked(rel_sorted, topk=None):
    r = np.asarray(rel_sorted, dtype=float)
    if topk is not None:
        r = r[:topk]
    if r.sum() == 0:
        return 0.0
    hits = np.cumsum(r)
    return float((hits / np.arange(1, len(r) + 1) * r).sum() / r.sum())


def ap_index(d_row, rel_row, topk=None):
    order = np.argsort(d_row, kind="stable")
    return ap_ranked(rel_row[order], topk)


def ap_aware_enum(d_row, rel_row, topk=None):
    """Tie-aware AP by enumerating every ordering inside every tie group (tiny inputs only)."""
    groups = [np.flatnonzero(d_row == v) for v in np.unique(d_row)]
    perms = [list(itertools.permutations(g)) for g in groups]
    total = 0.0
    count = 0
    for combo in itertools.product(*perms):
        order = np.concatenate([np.array(c, dtype=np.int64) for c in combo])
        total += ap_ranked(rel_row[order], topk)
        count += 1
    return total / count


def ap_aware_formula(d_row, rel_row, topk=None):
    """He et al. tie-aware AP summed term by term (no closed forms); exact straddling group."""
    rel_row = np.asarray(rel_row, dtype=bool)
    n_total = len(d_row)
    R_total = int(rel_row.sum())
    if R_total == 0:
        return 0.0
    N = R = 0
    s = 0.0
    K = n_total if topk is None else min(topk, n_total)
    for v in np.unique(d_row):
        g = d_row == v
        n = int(g.sum())
        r = int((g & rel_row).sum())

        def expected_sum(m, j, N=N, R=R):
            if j == 0:
                return 0.0
            c = (j - 1) / (m - 1) if m > 1 else 0.0
            return (j / m) * sum((R + 1 + (t - 1) * c) / (N + t) for t in range(1, m + 1))

        if N + n <= K:
            s += expected_sum(n, r)
            N += n
            R += r
            if N == K:
                return s / R if R else 0.0
            continue
        m = K - N
        e = 0.0
        for j in range(max(0, m - (n - r)), min(m, r) + 1):
            p = math.comb(r, j) * math.comb(n - r, m - j) / math.comb(n, m)
            if R + j:
                e += p * (s + expected_sum(m, j)) / (R + j)
        return e
    return s / R if R else 0.0


def histograms(Q, X, ql, dl):
    d = dist_matrix(Q, X)
    rel = relevance(ql, dl)
    nd = 64 * Q.shape[1] + 1
    A = np.stack([np.bincount(r, minlength=nd) for r in d])
    R = np.stack([np.bincount(r[m], minlength=nd) for r, m in zip(d, rel, strict=True)])
    return A, R


def random_codes(rng, n, nbits, dup_frac=0.3):
    """Random packed codes with duplicated rows (many exact ties)."""
    from kernels import pack_codes

    bits = rng.integers(0, 2, (n, nbits), dtype=np.uint8)
    ndup = int(n * dup_frac)
    if ndup and n > 1:
        src = rng.integers(0, n, ndup)
        dst = rng.integers(0, n, ndup)
        bits[dst] = bits[src]
    return pack_codes(bits)
