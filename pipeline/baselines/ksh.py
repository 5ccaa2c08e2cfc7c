"""KSH: kernel-based supervised hashing (Liu, Wang, Ji, Jiang & Chang, CVPR 2012).

Following the authors' reference code (ksh.m / OptProjectionFast.m):
- m anchors drawn at random from the training set; Gaussian kernel
  k(x, a) = exp(-||x - a||^2 / (2 s)), s = the mean squared distance of the labelled samples to
  the anchors; kernel vectors are centred on their mean over the labelled samples.
- Labelled pairs: S_ij = 1 for a shared label, -1 otherwise; the target is r S (r = bits), so
  that code inner products b_i . b_j (in [-r, r]) should match it.
- Bits are learned greedily. For bit k, with residual R_k = r S - sum_{t<k} b_t b_t^T:
  spectral relaxation max a^T K^T R_k K a s.t. a^T K^T K a = l (a generalised eigenproblem) as
  the start, then the sigmoid-smoothed objective min -phi(K a)^T R_k phi(K a),
  phi(x) = 2 / (1 + e^-x) - 1, by accelerated gradient descent with backtracking (<= 500
  steps); the better of the two (by the exact sign objective) is kept; b_k = sgn(K a_k).
- Encoding: bit k of x = [(k(x, anchors) - mean) . a_k > 0].

For class-id labels S = 2 Y Y^T - 1 1^T (Y one-hot), so S is never formed: every product with
R_k costs O(l (classes + k)), which makes 2,000 labelled samples and 48 bits a matter of seconds.
Multi-hot labels use a dense S (l x l).
"""

from __future__ import annotations

import numpy as np

from pipeline.baselines._common import Hasher, as_features, check_bits
from pipeline.errors import BadInput


def sq_dists(X: np.ndarray, A: np.ndarray) -> np.ndarray:
    d = (X * X).sum(1)[:, None] + (A * A).sum(1)[None, :] - 2.0 * (X @ A.T)
    return np.maximum(d, 0.0)


class _Residual:
    """R = r S - B B^T as an operator (S from labels: low rank for class ids, dense otherwise)."""

    def __init__(self, y: np.ndarray, r: int):
        self.r = float(r)
        self.B = np.zeros((len(y), 0))
        if y.ndim == 1:
            _, inv = np.unique(y, return_inverse=True)
            self.Y = np.eye(inv.max() + 1)[inv]  # (l, c) one-hot
            self.S = None
        else:
            self.Y = None
            Yb = (y > 0).astype(np.float64)
            self.S = np.where(Yb @ Yb.T > 0, 1.0, -1.0)

    def add(self, b: np.ndarray) -> None:
        self.B = np.concatenate([self.B, b.astype(np.float64)[:, None]], 1)

    def matvec(self, p: np.ndarray) -> np.ndarray:
        """R p for p of shape (l,) or (l, j)."""
        if self.S is None:
            out = self.r * (2.0 * self.Y @ (self.Y.T @ p) - p.sum(0, keepdims=p.ndim > 1))
        else:
            out = self.r * (self.S @ p)
        if self.B.shape[1]:
            out = out - self.B @ (self.B.T @ p)
        return out

    def quad(self, p: np.ndarray) -> float:
        return float(p @ self.matvec(p))


def _phi(z):
    return np.tanh(z / 2.0)  # = 2 / (1 + e^-z) - 1, without overflow


def _signs(z):
    return np.where(z > 0, 1.0, -1.0)


def _optimise(K: np.ndarray, R: _Residual, a0: np.ndarray, max_iter: int = 500, tol=1e-5):
    """Accelerated gradient descent (with backtracking) on g(a) = -phi(K a)^T R phi(K a).

    As OptProjectionFast.m, except that the step search starts from half the previous step's
    inverse length beta (the reference restarts at beta = 1 every step, which costs ~10 extra
    objective evaluations per step here and accepts the same kind of step).
    """

    def g(a):
        return -R.quad(_phi(K @ a))

    a_prev, a = a0.copy(), a0.copy()
    cost_prev = g(a0)
    d_prev, d = 0.0, 1.0
    beta = 1.0
    for _ in range(max_iter):
        alpha = (d_prev - 1.0) / d
        v = a + alpha * (a - a_prev)
        p = _phi(K @ v)
        gv = -R.quad(p)
        grad = -K.T @ (R.matvec(p) * (1.0 - p * p))
        z = None
        beta = max(beta / 2.0, 1.0)
        for _ in range(60):
            zc = v - grad / beta
            gz = g(zc)
            dif = zc - v
            if gz <= gv + grad @ dif + beta * (dif @ dif) / 2.0:
                z = zc
                break
            beta *= 2.0
        if z is None:
            break
        a_prev, a = a, z
        d_prev, d = d, (1.0 + np.sqrt(1.0 + 4.0 * d * d)) / 2.0
        if abs(gz - cost_prev) <= tol * max(abs(cost_prev), 1e-12):
            break
        cost_prev = gz
    return a


class KSH(Hasher):
    name = "ksh"

    def __init__(self, anchors, s, kmean, A):
        self.anchors, self.s, self.kmean, self.A = anchors, s, kmean, A
        self.dim = anchors.shape[1]
        self.bits = A.shape[1]

    def kernel(self, X: np.ndarray) -> np.ndarray:
        return np.exp(-sq_dists(X, self.anchors) / (2.0 * self.s)) - self.kmean

    def project(self, X) -> np.ndarray:
        return self.kernel(self._check(X)) @ self.A


def fit(
    X,
    y,
    bits: int = 32,
    seed: int = 0,
    n_anchors: int = 300,
    n_labelled: int | None = None,
    max_iter: int = 500,
) -> KSH:
    """Fit on labelled X (l, d), y (l,) class ids or (l, c) multi-hot.

    `n_labelled` (optional) uses a seeded random subset of that many labelled samples (the paper
    uses 1,000 or 2,000); anchors are drawn from all of X.
    """
    X = as_features(X)
    if y is None:
        raise BadInput("KSH is supervised: it needs training labels")
    y = np.asarray(y)
    if len(y) != len(X) or y.ndim not in (1, 2):
        raise BadInput("KSH labels must be (n,) class ids or (n, c) multi-hot, one per vector")
    bits = check_bits(bits)
    rng = np.random.default_rng(seed)
    n_anchors = int(min(n_anchors, len(X)))
    if n_anchors < 2:
        raise BadInput("KSH needs at least 2 anchors")
    anchors = X[np.sort(rng.choice(len(X), n_anchors, replace=False))]
    if n_labelled is not None and n_labelled < len(X):
        lab = np.sort(rng.choice(len(X), int(n_labelled), replace=False))
        Xl, yl = X[lab], y[lab]
    else:
        Xl, yl = X, y
    l = len(Xl)
    D = sq_dists(Xl, anchors)
    s = float(D.mean())
    if s <= 0:
        raise BadInput("KSH: all training vectors coincide with the anchors")
    K = np.exp(-D / (2.0 * s))
    kmean = K.mean(0)
    K -= kmean
    RM = K.T @ K
    RM += 1e-8 * np.trace(RM) / len(RM) * np.eye(len(RM))  # keep it positive definite
    L = np.linalg.cholesky(RM)
    Linv = np.linalg.inv(L)
    res = _Residual(yl, bits)
    A = np.zeros((n_anchors, bits))
    for k in range(bits):
        KR = res.matvec(K)  # R_k K, (l, m)
        LM = K.T @ KR
        C = Linv @ LM @ Linv.T
        C = (C + C.T) / 2.0
        _, U = np.linalg.eigh(C)
        a = Linv.T @ U[:, -1]
        a *= np.sqrt(l / float(a @ RM @ a))
        a_opt = _optimise(K, res, a, max_iter)
        b, b_opt = _signs(K @ a), _signs(K @ a_opt)
        if res.quad(b_opt) > res.quad(b):
            a, b = a_opt, b_opt
        A[:, k] = a
        res.add(b)
    return KSH(anchors, s, kmean, A)
