"""Index-tie AP (kernels/_index_w1.py and the multi-word kernels) against a slow reference that
ranks by (distance, index) with a stable argsort and adds the precisions in the kernels' order,
so that results must match bit for bit."""

import os
import sys

import numba
import numpy as np
import pytest
from test_kernels_ref import dist_matrix, random_codes, relevance

from kernels import ap_index_partial, average_precision, distance_histograms, metrics
from kernels._index_w1 import ap_one_pass_w1, dense_ids, relevant_counts

CHUNK = 4096


def ref_numerator(d_row, rel_row, a=0, b=None, chunk=CHUNK):
    """Sum of precisions at the relevant items of database items a..b: each precision is
    (relevant items ranked up to it) / (its 1-based rank) in the whole database's ranking by
    (distance, index), added in index order, restarting every `chunk` items from a (None: one
    running sum), as the kernels do."""
    b = len(d_row) if b is None else b
    order = np.argsort(d_row, kind="stable")
    rank = np.empty(len(d_row), np.int64)
    rank[order] = np.arange(1, len(d_row) + 1)
    hits = np.cumsum(rel_row[order])
    step = chunk or max(1, b - a)
    total = 0.0
    for c0 in range(a, b, step):
        s = total if chunk is None else 0.0
        for j in np.flatnonzero(rel_row[c0 : min(b, c0 + step)]) + c0:
            s += int(hits[rank[j] - 1]) / int(rank[j])
        total = s if chunk is None else total + s
    return total


def ref_ap(d_row, rel_row, chunk):
    n_rel = int(rel_row.sum())
    return ref_numerator(d_row, rel_row, chunk=chunk) / n_rel if n_rel else 0.0


def tied_codes(rng, n, nbits, Q):
    """Codes with many ties: 30% duplicated rows, plus copies of a query and of its complement
    (distance 0 and, for whole words, the full code length)."""
    X = random_codes(rng, n, nbits)
    k = max(1, n // 20)
    X[rng.integers(0, n, k)] = Q[0]
    comp = ~Q[0]
    if nbits % 64:
        comp[-1] &= np.uint64((1 << (nbits % 64)) - 1)
    X[rng.integers(0, n, k)] = comp
    return X


def make(rng, q, n, nbits, multi, classes=4):
    Q = random_codes(rng, q, nbits)
    X = tied_codes(rng, n, nbits, Q)
    if multi:
        ql = rng.integers(0, 2, (q, classes)).astype(np.uint8)
        dl = (rng.random((n, classes)) < 0.3).astype(np.uint8)
        ql[0] = 0  # no relevant item
    else:
        ql, dl = rng.integers(0, classes, q), rng.integers(0, classes, n)
        ql[0] = classes + 3  # a class absent from the database
    return Q, X, ql, dl


@pytest.mark.parametrize("nbits", [12, 24, 48, 64, 100, 128, 256])
@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("n", [1, 63, 1000, 9001])
def test_whole_ranking_bit_identical(nbits, multi, n):
    rng = np.random.default_rng(nbits * 31 + n + multi)
    Q, X, ql, dl = make(rng, 9, n, nbits, multi)
    d = dist_matrix(Q, X)
    rel = relevance(ql, dl)
    got = average_precision(Q, X, ql, dl, ties="index")
    # single labels: one running sum; multi-hot labels: per chunk (the orders of the kernels)
    chunk = CHUNK if multi else None
    ref = [ref_ap(d[i], rel[i], chunk) for i in range(len(Q))]
    assert got.tolist() == ref
    assert got[0] == 0.0


@pytest.mark.parametrize("nbits", [12, 64])
def test_many_classes_sum_per_chunk(nbits):
    # > 254 classes: no uint8 class ids, relevance per item, per-chunk sums
    rng = np.random.default_rng(3)
    n = 9001
    Q = random_codes(rng, 6, nbits)
    X = tied_codes(rng, n, nbits, Q)
    values = rng.choice(np.arange(-500, 5000), 300, replace=False)
    dl = values[rng.integers(0, 300, n)]
    ql = dl[rng.integers(0, n, 6)]
    ql[1] = 99999
    d = dist_matrix(Q, X)
    rel = relevance(ql, dl)
    got = average_precision(Q, X, ql, dl)
    assert got.tolist() == [ref_ap(d[i], rel[i], CHUNK) for i in range(6)]


@pytest.mark.parametrize("nbits,multi", [(12, False), (64, False), (64, True), (100, False)])
def test_three_shards_equal_unsharded(nbits, multi):
    rng = np.random.default_rng(17 + nbits)
    n, q = 10_000, 7
    Q, X, ql, dl = make(rng, q, n, nbits, multi)
    d = dist_matrix(Q, X)
    rel = relevance(ql, dl)
    bounds = [(0, 50), (50, 4200), (4200, n)]
    hists = [distance_histograms(Q, X[a:b], ql, dl[a:b]) for a, b in bounds]
    A = sum(h[0] for h in hists)
    R = sum(h[1] for h in hists)
    before_a = np.cumsum(A, axis=1) - A
    before_r = np.cumsum(R, axis=1) - R
    num = np.zeros(q)
    for (a, b), (ha, hr) in zip(bounds, hists, strict=True):
        part = ap_index_partial(Q, X[a:b], ql, dl[a:b], before_a, before_r)
        # the shard's own precisions, with ranks in the whole database, summed per shard chunk
        assert part.tolist() == [ref_numerator(d[i], rel[i], a, b) for i in range(q)]
        num += part
        before_a = before_a + ha
        before_r = before_r + hr
    total = R.sum(axis=1)
    ap = np.divide(num, total, out=np.zeros(q), where=total > 0)
    np.testing.assert_allclose(ap, average_precision(Q, X, ql, dl), rtol=0, atol=1e-12)
    assert ap[0] == 0.0


def test_threads_do_not_change_results():
    rng = np.random.default_rng(5)
    Q, X, ql, dl = make(rng, 40, 20_000, 64, False, classes=10)
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = average_precision(Q, X, ql, dl)
        numba.set_num_threads(saved)
        many = average_precision(Q, X, ql, dl)
    finally:
        numba.set_num_threads(saved)
    assert one.tolist() == many.tolist()


def test_bit_identical_to_previous_kernels():
    # the frozen pre-change code kept for the benchmark
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
    try:
        import _map_index_before as old
    finally:
        sys.path.pop(0)
    rng = np.random.default_rng(9)
    for multi in (False, True):
        Q, X, ql, dl = make(rng, 20, 30_000, 64, multi, classes=10)
        assert (
            average_precision(Q, X, ql, dl).tolist() == old.average_precision(Q, X, ql, dl).tolist()
        )
        A, R = distance_histograms(Q, X, ql, dl)
        oa, orl = np.cumsum(A, 1) - A, np.cumsum(R, 1) - R
        new_p = ap_index_partial(Q, X, ql, dl, oa, orl)
        assert new_p.tolist() == old.ap_index_partial(Q, X, ql, dl, oa, orl).tolist()


@pytest.mark.parametrize("buffer_bytes", [8, 8 * 700, 64 << 20])
def test_one_pass_query_blocks_bit_identical(buffer_bytes):
    # the one-pass kernel (single labels, one word) in blocks of 1, a few and 32 queries; classes
    # of unequal sizes, one query of a class absent from the database, one whose class is the
    # whole of a tiny database chunk's tail
    rng = np.random.default_rng(23)
    n, q = 2 * CHUNK + 77, 70
    Q = random_codes(rng, q, 64)
    X = tied_codes(rng, n, 64, Q)
    dl = rng.choice(5, n, p=[0.5, 0.3, 0.1, 0.06, 0.04])
    dl[-5:] = 7  # a class that only the last, partial block holds
    ql = rng.integers(0, 5, q)
    ql[3], ql[4] = 9, 7
    qids, ids = dense_ids(ql, dl)
    nrel = relevant_counts(qids, ids, n)
    assert nrel[3] == 0 and nrel[4] == 5
    got = ap_one_pass_w1(Q, X, qids, ids, nrel, buffer_bytes)
    d = dist_matrix(Q, X)
    rel = relevance(ql, dl)
    assert got.tolist() == [ref_ap(d[i], rel[i], None) for i in range(q)]
    assert got[3] == 0.0 and got[4] > 0


def test_one_pass_ties_at_zero_and_64():
    # all items at distance 0 or 64 from the query: two tie groups, ranks by index only
    rng = np.random.default_rng(4)
    n = 5000
    Q = random_codes(rng, 3, 64)
    X = np.where(rng.random((n, 1)) < 0.5, Q[0], ~Q[0]).astype(np.uint64)
    ql, dl = np.array([0, 1, 2]), rng.integers(0, 3, n)
    d = dist_matrix(Q, X)
    assert set(np.unique(d[0]).tolist()) == {0, 64}
    rel = relevance(ql, dl)
    got = average_precision(Q, X, ql, dl)
    assert got.tolist() == [ref_ap(d[i], rel[i], None) for i in range(3)]


def test_buffer_too_small_sums_per_chunk(monkeypatch):
    # when the rank buffer does not fit, whole-ranking AP takes the histogram + per-chunk path,
    # with the per-chunk order of the earlier kernels
    monkeypatch.setattr(metrics, "_ONE_PASS_BYTES", 1024)
    rng = np.random.default_rng(8)
    Q, X, ql, dl = make(rng, 5, 9001, 64, False)
    d = dist_matrix(Q, X)
    rel = relevance(ql, dl)
    got = average_precision(Q, X, ql, dl)
    assert got.tolist() == [ref_ap(d[i], rel[i], CHUNK) for i in range(5)]
    # and the running sum differs from the per-chunk one for some query (the test can tell)
    assert got.tolist() != [ref_ap(d[i], rel[i], None) for i in range(5)]
