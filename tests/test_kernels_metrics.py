import numpy as np
import pytest
from test_kernels_ref import (
    LENGTHS,
    ap_aware_enum,
    ap_aware_formula,
    ap_index,
    dist_matrix,
    histograms,
    random_codes,
    relevance,
)

from kernels import (
    ap_from_neighbors,
    ap_index_partial,
    ap_tie_aware_from_histograms,
    average_precision,
    distance_histograms,
    hamming_knn,
    mean_average_precision,
    merge_knn,
    pack_codes,
    pr_curve_from_histograms,
    precision_at_k,
    precision_at_k_from_histograms,
)


def labels(rng, q, n, multi, classes=4):
    if multi:
        return (
            rng.integers(0, 2, (q, classes)).astype(np.uint8),
            (rng.random((n, classes)) < 0.3).astype(np.uint8),
        )
    return rng.integers(0, classes, q), rng.integers(0, classes, n)


# --- the tie-aware reference itself, against exhaustive enumeration --------------------------


@pytest.mark.parametrize("seed", range(40))
def test_reference_formula_equals_enumeration(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 8))
    d = rng.integers(0, 3, n)
    rel = rng.integers(0, 2, n).astype(bool)
    for topk in (None, 1, 2, 3, 5, 9):
        assert ap_aware_formula(d, rel, topk) == pytest.approx(
            ap_aware_enum(d, rel, topk), abs=1e-12
        )


# --- AP against the references ------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_tiny_inputs_against_enumeration(seed):
    rng = np.random.default_rng(100 + seed)
    nbits = 4
    n = int(rng.integers(1, 8))
    X = random_codes(rng, n, nbits)
    Q = random_codes(rng, 3, nbits)
    ql, dl = rng.integers(0, 2, 3), rng.integers(0, 2, n)
    d = dist_matrix(Q, X)
    rel = relevance(ql, dl)
    for topk in (None, 1, 2, 4):
        got_i = average_precision(Q, X, ql, dl, topk=topk, ties="index")
        got_a = average_precision(Q, X, ql, dl, topk=topk, ties="aware")
        for i in range(3):
            assert got_i[i] == pytest.approx(ap_index(d[i], rel[i], topk), abs=1e-12)
            assert got_a[i] == pytest.approx(ap_aware_enum(d[i], rel[i], topk), abs=1e-12)


@pytest.mark.parametrize("nbits", LENGTHS)
@pytest.mark.parametrize("multi", [False, True])
def test_ap_all_lengths(nbits, multi):
    rng = np.random.default_rng(nbits + 7 * multi)
    n, q = 1500, 12
    X = random_codes(rng, n, nbits)
    Q = np.concatenate([random_codes(rng, q - 2, nbits), X[:2]])
    ql, dl = labels(rng, q, n, multi)
    d = dist_matrix(Q, X)
    rel = relevance(ql, dl)
    for topk in (None, 1, 50, n, n + 3):
        got_i = average_precision(Q, X, ql, dl, topk=topk)
        got_a = average_precision(Q, X, ql, dl, topk=topk, ties="aware")
        ref_i = [ap_index(d[i], rel[i], topk) for i in range(q)]
        ref_a = [ap_aware_formula(d[i], rel[i], topk) for i in range(q)]
        np.testing.assert_allclose(got_i, ref_i, rtol=0, atol=1e-10)
        np.testing.assert_allclose(got_a, ref_a, rtol=0, atol=1e-10)
    m = mean_average_precision(Q, X, ql, dl, ties="aware", topk=50)
    assert isinstance(m, float)
    assert m == pytest.approx(np.mean([ap_aware_formula(d[i], rel[i], 50) for i in range(q)]))


@pytest.mark.parametrize("multi", [False, True])
def test_index_ties_with_distance_64(multi):
    # complements of the queries sit at distance 64, sharing a one-hot bit with distance 0
    rng = np.random.default_rng(8)
    n, q = 5000, 5
    X = random_codes(rng, n, 64)
    Q = random_codes(rng, q, 64)
    X[rng.integers(0, n, 300)] = ~Q[0]
    X[rng.integers(0, n, 300)] = Q[0]
    ql, dl = labels(rng, q, n, multi)
    d = dist_matrix(Q, X)
    rel = relevance(ql, dl)
    got = average_precision(Q, X, ql, dl)
    np.testing.assert_allclose(got, [ap_index(d[i], rel[i]) for i in range(q)], rtol=0, atol=1e-10)


@pytest.mark.parametrize("n_classes", [5, 300])
def test_index_ties_one_pass_with_sparse_labels(n_classes):
    # the single-label one-pass path: labels far from 0..C-1 (dense uint8 ids inside), a query
    # class absent from the database, several 4,096-item chunks, n not a multiple of 64, many
    # ties (12-bit codes); 300 classes exceed the uint8 ids and take the general path
    rng = np.random.default_rng(11)
    n, q = 9001, 7
    X = random_codes(rng, n, 12)
    Q = random_codes(rng, q, 12)
    values = rng.choice(np.arange(-500, 5000), n_classes, replace=False)
    dl = values[rng.integers(0, n_classes, n)]
    ql = values[rng.integers(0, n_classes, q)]
    ql[0] = 99999  # absent
    d = dist_matrix(Q, X)
    rel = relevance(ql, dl)
    got = average_precision(Q, X, ql, dl)
    np.testing.assert_allclose(got, [ap_index(d[i], rel[i]) for i in range(q)], rtol=0, atol=1e-10)
    assert got[0] == 0


def test_big_tie_groups_use_harmonic_numbers():
    # 6-bit codes over 3,000 items: tie groups of hundreds, beyond the direct-sum cutoff
    rng = np.random.default_rng(5)
    X = pack_codes(rng.integers(0, 2, (3000, 6)))
    Q = pack_codes(rng.integers(0, 2, (4, 6)))
    ql, dl = rng.integers(0, 3, 4), rng.integers(0, 3, 3000)
    d = dist_matrix(Q, X)
    rel = relevance(ql, dl)
    for topk in (None, 10, 700):
        got = average_precision(Q, X, ql, dl, topk=topk, ties="aware")
        ref = [ap_aware_formula(d[i], rel[i], topk) for i in range(4)]
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)


def test_no_relevant_item_scores_zero():
    rng = np.random.default_rng(6)
    X = random_codes(rng, 50, 32)
    Q = random_codes(rng, 3, 32)
    ql, dl = np.array([7, 7, 0]), np.zeros(50, np.int64)
    for ties in ("index", "aware"):
        for topk in (None, 5):
            ap = average_precision(Q, X, ql, dl, topk=topk, ties=ties)
            assert ap[0] == 0 and ap[1] == 0 and ap[2] == pytest.approx(1.0)


# --- histograms (including the carry-save path and distance 64) ---------------------------------


@pytest.mark.parametrize("nbits", LENGTHS)
def test_histograms(nbits):
    rng = np.random.default_rng(nbits)
    n, q = 2600, 9
    X = random_codes(rng, n, nbits)
    Q = random_codes(rng, q, nbits)
    if nbits == 64:  # items at distance 64 share a counter bit with distance 0
        X[100:700] = ~Q[2]
        X[900:950] = Q[2]
    ql, dl = rng.integers(0, 3, q), rng.integers(0, 3, n)
    ql[0] = 9  # a class absent from the database
    A, R = distance_histograms(Q, X, ql, dl)
    Ar, Rr = histograms(Q, X, ql, dl)
    assert A.shape == (q, 64 * Q.shape[1] + 1) and A.dtype == np.int64
    assert np.array_equal(A, Ar) and np.array_equal(R, Rr)
    qm, dm = labels(rng, q, n, multi=True, classes=70)
    A, R = distance_histograms(Q, X, qm, dm)
    Ar, Rr = histograms(Q, X, qm, dm)
    assert np.array_equal(A, Ar) and np.array_equal(R, Rr)


@pytest.mark.parametrize("nbits", [32, 64])
def test_histograms_class_segments(nbits):
    # class sizes that exercise whole carry-save groups, padded remainders and tiny remainders
    # (scalar loop); negative and huge class ids take the general class-id path
    rng = np.random.default_rng(21)
    sizes = {-3: 2 * 1024 + 50, 10**12: 300, 7: 5, 0: 1024 + 700}
    dl = np.concatenate([np.full(v, k) for k, v in sizes.items()])
    dl = dl[rng.permutation(len(dl))]
    X = random_codes(rng, len(dl), nbits)
    Q = random_codes(rng, 6, nbits)
    ql = np.array([-3, 10**12, 7, 0, 5, -3])
    A, R = distance_histograms(Q, X, ql, dl)
    Ar, Rr = histograms(Q, X, ql, dl)
    assert np.array_equal(A, Ar) and np.array_equal(R, Rr)
    small = dl.copy()
    small[small == 10**12] = 1
    small[small == -3] = 2
    A, R = distance_histograms(Q, X, np.array([2, 1, 7, 0, 5, 2]), small)
    assert np.array_equal(A, Ar) and np.array_equal(R, Rr)


# --- distributed helpers: 3 uneven shards -------------------------------------------------------


@pytest.mark.parametrize("nbits,multi", [(48, False), (64, True), (128, False)])
def test_sharded_evaluation_equals_single_shot(nbits, multi):
    rng = np.random.default_rng(11)
    n, q = 2100, 10
    X = random_codes(rng, n, nbits)
    Q = random_codes(rng, q, nbits)
    ql, dl = labels(rng, q, n, multi)
    bounds = [0, 17, 1300, n]
    shards = list(zip(bounds[:-1], bounds[1:], strict=True))
    hists = [distance_histograms(Q, X[a:b], ql, dl[a:b]) for a, b in shards]
    A = sum(h[0] for h in hists)
    R = sum(h[1] for h in hists)
    A1, R1 = distance_histograms(Q, X, ql, dl)
    assert np.array_equal(A, A1) and np.array_equal(R, R1)
    for topk in (None, 30):
        np.testing.assert_allclose(
            ap_tie_aware_from_histograms(A, R, topk=topk),
            average_precision(Q, X, ql, dl, topk=topk, ties="aware"),
            rtol=0,
            atol=1e-12,
        )
    # index ties: second pass with offsets = counts at smaller distances + earlier shards
    before_a = np.concatenate([np.zeros((q, 1), np.int64), np.cumsum(A, 1)[:, :-1]], axis=1)
    before_r = np.concatenate([np.zeros((q, 1), np.int64), np.cumsum(R, 1)[:, :-1]], axis=1)
    num = np.zeros(q)
    for (a, b), (ha, hr) in zip(shards, hists, strict=True):
        num += ap_index_partial(Q, X[a:b], ql, dl[a:b], before_a, before_r)
        before_a = before_a + ha
        before_r = before_r + hr
    tot = R.sum(1)
    ap = np.divide(num, tot, out=np.zeros(q), where=tot > 0)
    np.testing.assert_allclose(ap, average_precision(Q, X, ql, dl), rtol=0, atol=1e-12)
    # AP@K with index ties: merged top-K, then relevance of the merged list
    Ds, Is = [], []
    for a, b in shards:
        D, I = hamming_knn(Q, X[a:b], 30)
        Ds.append(D)
        Is.append(I + a)
    _, I = merge_knn(Ds, Is, 30)
    rel = relevance(ql, dl)
    got = ap_from_neighbors(np.take_along_axis(rel, I, axis=1))
    np.testing.assert_allclose(got, average_precision(Q, X, ql, dl, topk=30), rtol=0, atol=1e-12)


def test_ap_from_neighbors():
    rel = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 1, 1]])
    np.testing.assert_allclose(
        ap_from_neighbors(rel), [(1 + 2 / 3) / 2, 0.0, (1 / 2 + 2 / 3 + 3 / 4) / 3]
    )
    assert ap_from_neighbors(np.zeros((2, 0), np.uint8)).tolist() == [0.0, 0.0]


# --- precision@k and precision/recall curves ----------------------------------------------------


@pytest.mark.parametrize("nbits", [12, 100])
def test_precision_at_k(nbits):
    rng = np.random.default_rng(nbits)
    n, q = 800, 7
    X = random_codes(rng, n, nbits)
    Q = random_codes(rng, q, nbits)
    ql, dl = labels(rng, q, n, multi=False)
    d = dist_matrix(Q, X)
    rel = relevance(ql, dl)
    for k in (1, 10, n + 1):
        kk = min(k, n)
        order = np.argsort(d, axis=1, kind="stable")[:, :kk]
        ref = np.take_along_axis(rel, order, axis=1).mean(axis=1)
        np.testing.assert_allclose(precision_at_k(Q, X, ql, dl, k), ref)
        # tie-aware: expected relevant count in the top kk
        exp = []
        for i in range(q):
            s = np.sort(d[i])
            t = s[kk - 1]
            inside = (d[i] < t).sum()
            m = kk - inside
            g = d[i] == t
            exp.append(((d[i] < t) & rel[i]).sum() + m * (g & rel[i]).sum() / g.sum())
        np.testing.assert_allclose(
            precision_at_k(Q, X, ql, dl, k, ties="aware"), np.array(exp) / kk
        )


def test_precision_at_k_aware_by_enumeration():
    rng = np.random.default_rng(9)
    X = random_codes(rng, 6, 4)
    Q = random_codes(rng, 2, 4)
    ql, dl = rng.integers(0, 2, 2), rng.integers(0, 2, 6)
    d = dist_matrix(Q, X)
    rel = relevance(ql, dl)
    import itertools

    for k in (1, 3, 6):
        got = precision_at_k(Q, X, ql, dl, k, ties="aware")
        for i in range(2):
            vals = []
            for perm in itertools.permutations(range(6)):
                p = np.array(perm)
                order = p[np.argsort(d[i][p], kind="stable")]
                vals.append(rel[i][order][:k].mean())
            assert got[i] == pytest.approx(np.mean(vals))


def test_precision_at_k_from_shard_histograms():
    """P@k of many k at once from histograms summed over shards = the tie-aware P@k."""
    rng = np.random.default_rng(11)
    X = random_codes(rng, 500, 16)
    Q = random_codes(rng, 5, 16)
    ql, dl = rng.integers(0, 3, 5), rng.integers(0, 3, 500)
    parts = [distance_histograms(Q, X[a:b], ql, dl[a:b]) for a, b in ((0, 120), (120, 500))]
    A, R = parts[0][0] + parts[1][0], parts[0][1] + parts[1][1]
    ks = [1, 7, 100, 500, 900]
    got = precision_at_k_from_histograms(A, R, ks)
    assert got.shape == (5, len(ks))
    for j, k in enumerate(ks):
        ref = precision_at_k(Q, X, ql, dl, k, ties="aware")
        np.testing.assert_allclose(got[:, j], ref, rtol=0, atol=1e-12)
    assert got[:, -1] == pytest.approx((R.sum(1) / 500.0).tolist())  # k > n: the whole database
    assert precision_at_k_from_histograms(A[:, :0], R[:, :0], [3]).tolist() == [[0.0]] * 5
    with pytest.raises(ValueError):
        precision_at_k_from_histograms(A, R, [0])


def test_pr_curve():
    rng = np.random.default_rng(10)
    X = random_codes(rng, 300, 24)
    Q = random_codes(rng, 6, 24)
    ql, dl = rng.integers(0, 3, 6), rng.integers(0, 3, 300)
    ql[0] = 5
    A, R = distance_histograms(Q, X, ql, dl)
    prec, rec = pr_curve_from_histograms(A, R)
    d = dist_matrix(Q, X)
    rel = relevance(ql, dl)
    for r in (0, 5, 12, 64):
        ret = d <= r
        nret = ret.sum(1)
        hit = (ret & rel).sum(1)
        p = np.where(nret > 0, hit / np.maximum(nret, 1), 0.0)
        tot = rel.sum(1)
        rc = np.where(tot > 0, hit / np.maximum(tot, 1), 0.0)
        assert prec[r] == pytest.approx(p.mean()) and rec[r] == pytest.approx(rc.mean())
