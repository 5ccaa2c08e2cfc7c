"""ITQ: iterative quantisation (Gong & Lazebnik, CVPR 2011; PAMI 2013).

Centre, project on the top `bits` principal components (V = (X - mean) P), then find the
orthogonal rotation R minimising the quantisation loss ||B - V R||_F^2 over B in {-1, 1}^(n x bits)
by alternating: B = sign(V R); R from the orthogonal Procrustes problem, svd(V^T B) = U S W^T ->
R = U W^T. Each step is optimal in its variable, so the loss never increases
(`loss_history[t]` is the loss after iteration t, `loss_history[0]` at the random start).
R starts as a random orthogonal matrix from `seed`; 50 iterations as in the paper.
"""

from __future__ import annotations

import numpy as np

from pipeline.baselines._common import Hasher, as_features, check_bits, pca


def _signs(Z: np.ndarray) -> np.ndarray:
    return np.where(Z >= 0, 1.0, -1.0)


def random_rotation(k: int, rng: np.random.Generator) -> np.ndarray:
    Q, Rr = np.linalg.qr(rng.standard_normal((k, k)))
    return Q * np.sign(np.diag(Rr))  # Haar-distributed


def quantization_loss(V: np.ndarray, R: np.ndarray) -> float:
    Z = V @ R
    return float(((_signs(Z) - Z) ** 2).sum())


class ITQ(Hasher):
    name = "itq"

    def __init__(self, mean, P, R, loss_history):
        self.mean, self.P, self.R = mean, P, R
        self.loss_history = loss_history
        self.dim, self.bits = P.shape

    def project(self, X) -> np.ndarray:
        return (self._check(X) - self.mean) @ self.P @ self.R


def fit(X, y=None, bits: int = 32, seed: int = 0, n_iter: int = 50) -> ITQ:
    X = as_features(X)
    bits = check_bits(bits, X.shape[1], "ITQ on these features")
    if len(X) < 2:
        raise ValueError("ITQ needs at least 2 training vectors")
    rng = np.random.default_rng(seed)
    mean, P, _ = pca(X, bits)
    V = (X - mean) @ P
    R = random_rotation(bits, rng)
    history = [quantization_loss(V, R)]
    for _ in range(int(n_iter)):
        B = _signs(V @ R)
        U, _, Wt = np.linalg.svd(V.T @ B)
        R = U @ Wt
        history.append(quantization_loss(V, R))
    return ITQ(mean, P, R, np.asarray(history))
