"""LSH: sign random projections (Charikar 2002), the data-independent baseline.

bit j = [w_j . (x - mean) > 0] with w_j ~ N(0, I) drawn from `seed`. For two vectors at angle
theta (after centring) each bit differs with probability theta / pi, so the expected normalised
Hamming distance is theta / pi. Centring on the training mean (`center=True`, as in the ITQ
paper's LSH baseline) keeps the bits balanced on non-negative features; `center=False` hashes the
raw vectors.
"""

from __future__ import annotations

import numpy as np

from pipeline.baselines._common import LinearHasher, as_features, check_bits


class LSH(LinearHasher):
    name = "lsh"


def fit(X, y=None, bits: int = 32, seed: int = 0, center: bool = True) -> LSH:
    X = as_features(X)
    bits = check_bits(bits)
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((X.shape[1], bits))
    mean = X.mean(0) if center and len(X) else np.zeros(X.shape[1])
    return LSH(mean, W)
