"""What the hashing baselines share: input checks, PCA, and the base class (project -> encode)."""

from __future__ import annotations

import numpy as np

from kernels import pack_codes
from pipeline.errors import BadInput


def as_features(X, name: str = "X") -> np.ndarray:
    """(n, d) finite float64 features."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise BadInput(f"{name} must be 2-D (n, d), got shape {X.shape}")
    X = X.astype(np.float64, copy=False)
    if X.size and not np.isfinite(X).all():
        raise BadInput(f"{name} holds NaN or infinite values")
    return X


def check_bits(bits: int, limit: int | None = None, what: str = "") -> int:
    bits = int(bits)
    if bits < 1:
        raise BadInput(f"bits must be >= 1, not {bits}")
    if limit is not None and bits > limit:
        raise BadInput(f"{what} gives at most {limit} bits here, {bits} asked")
    return bits


def pca(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean (d,), components (d, k) by decreasing variance, variances (k,)) of X (n, d)."""
    mean = X.mean(0)
    Xc = X - mean
    cov = Xc.T @ Xc / max(len(X) - 1, 1)
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1][:k]
    comps = evecs[:, order]
    # fix each component's sign (largest |entry| positive) so fits are reproducible across BLAS
    flip = np.sign(comps[np.abs(comps).argmax(0), np.arange(comps.shape[1])])
    comps = comps * np.where(flip == 0, 1.0, flip)
    return mean, comps, evals[order]


class Hasher:
    """A fitted hashing method: `project(X)` gives real values whose signs are the bits;
    `encode(X)` packs them (bit j = 1 where projection j > 0) into kernels' uint64 layout."""

    name = "hasher"
    bits: int
    dim: int

    def project(self, X) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check(self, X) -> np.ndarray:
        X = as_features(X)
        if X.shape[1] != self.dim:
            raise BadInput(f"{self.name} was fitted on {self.dim}-d features, got {X.shape[1]}-d")
        return X

    def encode(self, X, chunk: int = 8192) -> np.ndarray:
        X = self._check(X)
        words = (self.bits + 63) // 64
        out = np.zeros((len(X), words), np.uint64)
        for i in range(0, len(X), chunk):
            out[i : i + chunk] = pack_codes(self.project(X[i : i + chunk]))
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bits={self.bits}, dim={self.dim})"


class LinearHasher(Hasher):
    """Hashers whose projection is linear after centring: (X - mean) @ W, W (dim, bits)."""

    def __init__(self, mean: np.ndarray, W: np.ndarray):
        self.mean, self.W = mean, W
        self.dim, self.bits = W.shape

    def project(self, X) -> np.ndarray:
        return (self._check(X) - self.mean) @ self.W
