"""Word-major layout of packed codes: (n, words) -> (words, n), so that loops over codes vectorise
for every word count."""

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def _transpose(X):
    n, W = X.shape
    out = np.empty((W, n), X.dtype)
    block = 8192
    for b in prange((n + block - 1) // block):
        j0 = b * block
        j1 = min(n, j0 + block)
        for w in range(W):
            for j in range(j0, j1):
                out[w, j] = X[j, w]
    return out


def word_major(X):
    """(n, words) C-contiguous uint64 -> (words, n) contiguous (a free reshape for one word)."""
    if X.shape[1] == 1:
        return X.reshape(1, -1)
    return _transpose(X)
