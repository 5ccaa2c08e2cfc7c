"""CNNH stage 1: approximate hash codes H that factorise the label similarity, S ~ (1/q) H H^T.

Xia, Pan, Lai, Liu & Yan, "Supervised hashing for image retrieval via image representation
learning", AAAI 2014, stage 1: S_ij = 1 when items i and j share their class, else -1, and

    min_H || S - (1/q) H H^T ||_F^2,   H in [-1, 1]^(n x q)   (relaxed from {-1, 1})

by randomised coordinate descent with Newton directions, as published: in each sweep every entry
H_ij is visited once in a random order; with R = H H^T - q S,

    g'  = 4 R_i. H_.j,      g'' = 4 (H_.j^T H_.j + H_ij^2 + R_ii)          (the paper's eq. 7)
    d   = clamp(-g' / g'', -1 - H_ij, 1 - H_ij),  H_ij += d                  (eq. 6)
    R_i. += d H_.j^T,  R_.i += d H_.j,  R_ii += d^2                          (eq. 8)

and a sweep that does not lower the objective is undone. The codes are sign(H) (bit = H > 0).
H starts uniform in [-1, 1]. (A step with g'' <= 0, which needs ||H_.j||^2 + H_ij^2 + ||H_i.||^2
<= q and so does not happen once n >> q, goes to the bound downhill.)

Why it is fast here: for single-label data S = 2 Y Y^T - 1 (Y one-hot), so R never has to exist.
R_i. H_.j = H_i. M_.j - q (2 C_{y_i, j} - s_j) with M = H^T H (q x q), C = Y^T H (classes x q) and
s = 1^T H, and R_ii = ||H_i.||^2 - q; each update costs O(q) and touches one row and column of M,
one entry of C and of s. A sweep is O(n q^2) time and O(n q) memory (the published dense form
needs the n x n matrix R: 10 GB at CIFAR-10's 50,000 training images). M, C and s are recomputed
from H after each sweep, so rounding does not accumulate. tests/test_methods.py checks the result
against the published dense update, entry by entry.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _sweep(H, y, perm, q, M, C, s):
    """One pass of the published coordinate update over the entries in `perm` (in place)."""
    n, Q = H.shape
    for t in range(perm.shape[0]):
        e = perm[t]
        i = e // Q
        j = e - i * Q
        rh = 0.0
        hi2 = 0.0
        for k in range(Q):
            rh += H[i, k] * M[k, j]
            hi2 += H[i, k] * H[i, k]
        rh -= q * (2.0 * C[y[i], j] - s[j])
        hij = H[i, j]
        g1 = 4.0 * rh
        g2 = 4.0 * (M[j, j] + hij * hij + hi2 - q)
        lo, hi = -1.0 - hij, 1.0 - hij
        d = -g1 / g2 if g2 > 0.0 else (hi if g1 < 0.0 else lo)
        d = min(max(d, lo), hi)
        if d == 0.0:
            continue
        for k in range(Q):
            M[j, k] += d * H[i, k]
        for k in range(Q):
            M[k, j] += d * H[i, k]
        M[j, j] += d * d
        C[y[i], j] += d
        s[j] += d
        H[i, j] = hij + d


def _stats(H: np.ndarray, y: np.ndarray, n_classes: int):
    M = H.T @ H
    C = np.zeros((n_classes, H.shape[1]))
    np.add.at(C, y, H)
    return M, C, H.sum(0)


def objective(H: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the n^2 entries of (S - (1/q) H H^T)^2 for class ids `labels` (O(n q^2))."""
    y, n_classes = _class_ids(labels)
    H = np.asarray(H, np.float64)
    n, q = H.shape
    M, C, s = _stats(H, y, n_classes)
    r2 = (M * M).sum() - 2.0 * q * (2.0 * (C * C).sum() - s @ s) + (q * n) ** 2
    return float(max(r2, 0.0) / (q * q * n * n))


def _class_ids(labels) -> tuple[np.ndarray, int]:
    lab = np.asarray(labels)
    if lab.ndim != 1:
        raise ValueError(
            "CNNH stage 1 factorises S = 2 Y Y^T - 1 of single-label data: labels must be 1-D "
            f"class ids, not an array of shape {lab.shape} (multi-hot labels are not supported)"
        )
    if len(lab) < 2:
        raise ValueError("CNNH stage 1 needs at least 2 labelled items")
    classes, y = np.unique(lab, return_inverse=True)
    return y.astype(np.int64), len(classes)


def approximate_codes(labels, bits: int, sweeps: int = 10, seed: int = 0):
    """(codes (n, bits) float32 in {-1, 1}, info) for class ids `labels` (n,).

    `info`: {"objective": [start, after each sweep], "kept": sweeps that lowered it,
    "objective_codes": the objective of the sign codes}. The random start and each sweep's
    order come from numpy.random.default_rng(seed): H0 = rng.uniform(-1, 1, (n, bits)), then
    one rng.permutation(n * bits) per sweep (entry e is H[e // bits, e % bits]).
    """
    y, n_classes = _class_ids(labels)
    if int(bits) < 1 or int(sweeps) < 0:
        raise ValueError(f"bits must be >= 1 and sweeps >= 0, not {bits}, {sweeps}")
    n, q = len(y), int(bits)
    rng = np.random.default_rng(seed)
    H = rng.uniform(-1.0, 1.0, (n, q))
    history = [objective(H, y)]
    kept = 0
    for _ in range(int(sweeps)):
        perm = rng.permutation(n * q).astype(np.int64)
        M, C, s = _stats(H, y, n_classes)
        trial = H.copy()
        _sweep(trial, y, perm, float(q), M, C, s)
        obj = objective(trial, y)
        if obj < history[-1]:
            H, kept = trial, kept + 1
            history.append(obj)
        else:
            history.append(history[-1])
    codes = np.where(H > 0, 1.0, -1.0).astype(np.float32)
    info = {"objective": history, "kept": kept, "objective_codes": objective(codes, y)}
    return codes, info
