"""PCAH: the signs of the top `bits` principal components (the usual PCA-hashing baseline)."""

from __future__ import annotations

from pipeline.baselines._common import LinearHasher, as_features, check_bits, pca


class PCAH(LinearHasher):
    name = "pcah"


def fit(X, y=None, bits: int = 32, seed: int = 0) -> PCAH:
    X = as_features(X)
    bits = check_bits(bits, X.shape[1], "PCAH on these features")
    mean, P, _ = pca(X, bits)
    return PCAH(mean, P)
