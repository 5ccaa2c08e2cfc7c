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


class threads_for:
    """Run numba's parallel kernels on one thread when the work is small.

    ``work_seconds`` is the estimated single-thread time. A parallel region waits for its slowest
    thread; on a busy machine a thread can wait a whole scheduler slice (milliseconds) for a core,
    which dwarfs small jobs, so anything under ~20 ms runs on the calling thread alone.
    """

    def __init__(self, work_seconds, threshold=0.02):
        self.serial = work_seconds < threshold
        self.saved = None

    def __enter__(self):
        if self.serial:
            import numba

            self.saved = numba.get_num_threads()
            numba.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            import numba

            numba.set_num_threads(self.saved)
        return False


def start_threads_keeping_torchs():
    """Start numba's thread pool now and put torch's thread count back if that moved it.

    numba's OpenMP layer and torch share libgomp: numba starting its threads after torch has run
    resets the process's OpenMP count to numba's, so an encoder set to one thread ran on all of
    them after its first MAP. Starting them once, at import, keeps both counts as set. torch is
    only looked up, never imported.
    """
    import sys

    import numba

    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    numba.get_num_threads()
    if torch is not None and torch.get_num_threads() != before:
        torch.set_num_threads(before)


start_threads_keeping_torchs()
