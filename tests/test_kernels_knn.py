import sys

import numpy as np
import pytest
from test_kernels_ref import LENGTHS, dist_matrix, knn, random_codes

import kernels.knn
from kernels import hamming_knn, merge_knn


@pytest.fixture(autouse=True, params=["numpy", "compiled"])
def path(request, monkeypatch):
    """Every case through each implementation: the NumPy scan and the compiled one."""
    monkeypatch.setattr(kernels.knn, "FORCE", request.param)
    return request.param


def test_rent_or_buy(monkeypatch):
    """NumPy until its work would pass SMALL_WORK, then the compiled scan for good."""
    monkeypatch.setattr(kernels.knn, "FORCE", None)
    monkeypatch.setattr(kernels.knn, "SMALL_WORK", 1000)
    monkeypatch.setattr(kernels.knn, "_numpy_done", 0)
    monkeypatch.delitem(sys.modules, "kernels._knn_scan", raising=False)
    assert kernels.knn._numpy_path(600) and kernels.knn._numpy_path(400)
    assert not kernels.knn._numpy_path(1)  # the budget is spent
    assert kernels.knn._numpy_done == 1000
    monkeypatch.setattr(kernels.knn, "_numpy_done", 0)
    monkeypatch.setitem(sys.modules, "kernels._knn_scan", object())
    assert not kernels.knn._numpy_path(1)  # once loaded, always compiled


@pytest.mark.parametrize("nbits", LENGTHS)
def test_knn_matches_stable_argsort(nbits):
    rng = np.random.default_rng(nbits)
    n = 600
    X = random_codes(rng, n, nbits)
    Q = np.concatenate([random_codes(rng, 20, nbits), X[:5]])
    for k in (1, 7, n, n + 5):
        D, I = hamming_knn(Q, X, k)
        Dr, Ir = knn(Q, X, k)
        assert D.dtype == np.int32 and I.dtype == np.int64
        assert D.shape == (len(Q), min(k, n))
        assert np.array_equal(I, Ir)
        assert np.array_equal(D, Dr)


def test_short_codes_heavy_ties_and_database_shards():
    # 12-bit codes: every distance is shared by thousands of items; two queries on 40,000 codes
    # also exercises the split of the database across threads and the merge
    rng = np.random.default_rng(0)
    X = random_codes(rng, 40_000, 12)
    Q = random_codes(rng, 2, 12)
    for k in (1, 100, 5000):
        D, I = hamming_knn(Q, X, k)
        Dr, Ir = knn(Q, X, k)
        assert np.array_equal(I, Ir) and np.array_equal(D, Dr)


def test_buffer_compaction():
    # database ordered from far to near: every item improves the threshold and is admitted,
    # so the candidate buffer fills and is compacted many times
    rng = np.random.default_rng(1)
    X = random_codes(rng, 5000, 64, dup_frac=0.0)
    Q = X[:1] ^ np.uint64(0)
    order = np.argsort(-dist_matrix(Q, X)[0], kind="stable")
    X = X[order]
    for k in (1, 3, 50):
        D, I = hamming_knn(Q, X, k)
        Dr, Ir = knn(Q, X, k)
        assert np.array_equal(I, Ir) and np.array_equal(D, Dr)


def test_distance_64_and_deterministic():
    X = np.array([[0], [2**64 - 1], [0], [2**64 - 1]], dtype=np.uint64)
    Q = np.array([[2**64 - 1]], dtype=np.uint64)
    D, I = hamming_knn(Q, X, 4)
    assert D.tolist() == [[0, 0, 64, 64]] and I.tolist() == [[1, 3, 0, 2]]
    rng = np.random.default_rng(2)
    X = random_codes(rng, 3000, 24)
    Q = random_codes(rng, 40, 24)
    a = hamming_knn(Q, X, 10)
    b = hamming_knn(Q, X, 10)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_empty_inputs():
    X = np.zeros((5, 1), np.uint64)
    D, I = hamming_knn(np.zeros((0, 1), np.uint64), X, 3)
    assert D.shape == (0, 3) and I.shape == (0, 3)
    D, I = hamming_knn(np.zeros((2, 1), np.uint64), np.zeros((0, 1), np.uint64), 3)
    assert D.shape == (2, 0)


@pytest.mark.parametrize("nbits", [24, 128])
def test_merge_across_uneven_shards(nbits):
    rng = np.random.default_rng(3)
    X = random_codes(rng, 1000, nbits)
    Q = random_codes(rng, 30, nbits)
    bounds = [0, 13, 600, 1000]
    for k in (1, 20, 2000):
        Ds, Is = [], []
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            D, I = hamming_knn(Q, X[a:b], k)
            Ds.append(D)
            Is.append(I + a)
        D, I = merge_knn(Ds, Is, k)
        Dr, Ir = knn(Q, X, k)
        assert np.array_equal(I, Ir) and np.array_equal(D, Dr)


def test_small_jobs_leave_the_thread_count_alone():
    import numba

    before = numba.get_num_threads()
    rng = np.random.default_rng(4)
    X = random_codes(rng, 200, 64)
    hamming_knn(X[:3], X, 5)
    assert numba.get_num_threads() == before


def test_kernels_leave_torchs_thread_count_alone():
    """numba's OpenMP layer shares libgomp with torch: starting numba's threads after torch has
    run must not move torch's count (an encoder set to one thread ran on all of them after its
    first MAP)."""
    import os
    import subprocess
    import sys

    code = (
        "import torch, numpy as np\n"
        "torch.set_num_threads(1)\n"
        "torch.nn.functional.conv2d(torch.randn(64, 3, 64, 64), torch.randn(16, 3, 3, 3))\n"
        "from kernels import hamming_knn, mean_average_precision\n"
        "assert torch.get_num_threads() == 1\n"
        "import numba\n"
        "numba.get_num_threads()\n"
        "rng = np.random.default_rng(0)\n"
        "X = rng.integers(0, 2**32, (80, 1), dtype=np.uint64)\n"
        "labels = rng.integers(0, 4, 80)\n"
        "hamming_knn(X[:3], X, 5)\n"
        "mean_average_precision(X[:20], X, labels[:20], labels)\n"
        "print(torch.get_num_threads())\n"
    )
    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "1"
