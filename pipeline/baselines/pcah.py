"""PCAH: the signs of the top `bits` principal components (the usual PCA-hashing baseline)."""

from __future__ import annotations

import numpy as np

from pipeline.baselines._common import Hasher, as_features, check_bits, pca


class PCAH(Hasher):
    name = "pcah"

    def __init__(self, mean: np.ndarray, P: np.ndarray):
        self.mean, self.P = mean, P
        self.dim, self.bits = P.shape

    def project(self, X) -> np.ndarray:
        return (self._check(X) - self.mean) @ self.P


def fit(X, y=None, bits: int = 32, seed: int = 0) -> PCAH:
    X = as_features(X)
    bits = check_bits(bits, X.shape[1], "PCAH on these features")
    mean, P, _ = pca(X, bits)
    return PCAH(mean, P)
