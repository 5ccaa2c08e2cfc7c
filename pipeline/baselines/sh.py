"""SH: spectral hashing (Weiss, Torralba & Fergus, NIPS 2008), following the authors' trainSH.m.

PCA to min(bits, d) directions; on each direction the data are taken as uniform on
[min, max] (of the training projections); the analytic Laplacian eigenfunctions of that box are
products of sin(pi/2 + k pi (x - min) / (max - min)); the `bits` eigenfunctions with the smallest
eigenvalues (lowest spatial frequency k pi / (max - min)), the constant one excluded, are the bits.
As in the reference code every chosen eigenfunction varies along one direction only, and
bit = [its value > 0].
"""

from __future__ import annotations

import numpy as np

from pipeline.baselines._common import Hasher, as_features, check_bits, pca


class SH(Hasher):
    name = "sh"

    def __init__(self, mean, P, mn, mx, modes):
        self.mean, self.P, self.mn, self.mx, self.modes = mean, P, mn, mx, modes
        self.dim = P.shape[0]
        self.bits = modes.shape[0]

    def project(self, X) -> np.ndarray:
        Z = (self._check(X) - self.mean) @ self.P - self.mn
        omegas = self.modes * (np.pi / (self.mx - self.mn))  # (bits, npca)
        # product over directions of sin(pi/2 + omega z); modes are 0 except on one direction,
        # where the factor is cos(omega z) (the other factors are sin(pi/2) = 1)
        out = np.ones((len(Z), self.bits))
        for j in range(self.bits):
            nz = np.flatnonzero(self.modes[j])
            for i in nz:
                out[:, j] *= np.sin(np.pi / 2 + Z[:, i] * omegas[j, i])
        return out


def fit(X, y=None, bits: int = 32, seed: int = 0) -> SH:
    X = as_features(X)
    bits = check_bits(bits)
    if len(X) < 2:
        raise ValueError("SH needs at least 2 training vectors")
    npca = min(bits, X.shape[1])
    mean, P, _ = pca(X, npca)
    Z = (X - mean) @ P
    eps = np.finfo(np.float64).eps
    mn, mx = Z.min(0) - eps, Z.max(0) + eps
    R = mx - mn
    max_mode = np.ceil((bits + 1) * R / R.max()).astype(int)
    n_modes = int(max_mode.sum() - len(max_mode) + 1)
    modes = np.ones((n_modes, npca))
    m = 0
    for i in range(npca):
        modes[m + 1 : m + max_mode[i], i] = np.arange(2, max_mode[i] + 1)
        m += max_mode[i] - 1
    modes -= 1
    omegas = modes * (np.pi / R)
    eigval = -(omegas**2).sum(1)
    order = np.argsort(-eigval, kind="stable")
    modes = modes[order[1 : bits + 1]]
    if len(modes) < bits:
        raise ValueError(f"SH found only {len(modes)} eigenfunctions for {bits} bits")
    return SH(mean, P, mn, mx, modes)
