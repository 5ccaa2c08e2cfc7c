import numpy as np
import pytest

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
    precision_at_k,
    unpack_codes,
)

Q = np.zeros((3, 1), np.uint64)
X = np.zeros((5, 1), np.uint64)
QL = np.zeros(3, np.int64)
DL = np.zeros(5, np.int64)


@pytest.mark.parametrize(
    "queries,database,match",
    [
        (Q.astype(np.int64), X, "queries"),
        (Q, X.astype(np.uint8), "database"),
        (Q[:, 0], X, "queries"),
        (Q, X[None], "database"),
        (Q, np.zeros((5, 2), np.uint64), "same number of words"),
        ([[0]], X, "queries"),
        (np.zeros((3, 0), np.uint64), np.zeros((5, 0), np.uint64), "queries"),
    ],
)
def test_bad_codes(queries, database, match):
    with pytest.raises(ValueError, match=match):
        hamming_knn(queries, database, 1)
    with pytest.raises(ValueError, match=match):
        average_precision(queries, database, QL, DL)
    with pytest.raises(ValueError, match=match):
        distance_histograms(queries, database, QL, DL)


@pytest.mark.parametrize("k", [0, -1, 1.5, True, None, "3"])
def test_bad_k(k):
    with pytest.raises(ValueError, match="k"):
        hamming_knn(Q, X, k)
    with pytest.raises(ValueError, match="k"):
        precision_at_k(Q, X, QL, DL, k)
    with pytest.raises(ValueError, match="k"):
        merge_knn([np.zeros((3, 1), np.int32)], [np.zeros((3, 1), np.int64)], k)


@pytest.mark.parametrize(
    "ql,dl,match",
    [
        (np.zeros(2, np.int64), DL, "query_labels"),
        (QL, np.zeros(6, np.int64), "db_labels"),
        (QL.astype(float), DL, "query_labels"),
        (QL, DL.astype(np.float32), "db_labels"),
        (np.zeros((3, 2, 2)), DL, "query_labels"),
        (np.zeros((3, 4), np.uint8), DL, "query_labels and db_labels"),
        (np.zeros((3, 4), np.uint8), np.zeros((5, 3), np.uint8), "same number of classes"),
        (np.zeros((3, 4), np.uint8), np.zeros((4, 4), np.uint8), "db_labels"),
    ],
)
def test_bad_labels(ql, dl, match):
    with pytest.raises(ValueError, match=match):
        average_precision(Q, X, ql, dl)
    with pytest.raises(ValueError, match=match):
        mean_average_precision(Q, X, ql, dl, ties="aware")
    with pytest.raises(ValueError, match=match):
        distance_histograms(Q, X, ql, dl)
    with pytest.raises(ValueError, match=match):
        precision_at_k(Q, X, ql, dl, 2)


def test_bad_modes():
    with pytest.raises(ValueError, match="ties"):
        average_precision(Q, X, QL, DL, ties="random")
    with pytest.raises(ValueError, match="ties"):
        precision_at_k(Q, X, QL, DL, 1, ties="")
    for topk in (0, -3, 2.0):
        with pytest.raises(ValueError, match="topk"):
            average_precision(Q, X, QL, DL, topk=topk)
        with pytest.raises(ValueError, match="topk"):
            ap_tie_aware_from_histograms(np.ones((1, 3), int), np.ones((1, 3), int), topk=topk)


def test_bad_histograms_and_offsets():
    with pytest.raises(ValueError, match="all_counts"):
        ap_tie_aware_from_histograms(np.ones(3, int), np.ones(3, int))
    with pytest.raises(ValueError, match="rel_counts"):
        ap_tie_aware_from_histograms(np.ones((1, 3), int), np.ones((1, 3), float))
    with pytest.raises(ValueError, match="same shape"):
        ap_tie_aware_from_histograms(np.ones((1, 3), int), np.ones((1, 4), int))
    with pytest.raises(ValueError, match="rel_counts"):
        ap_tie_aware_from_histograms(np.ones((1, 3), int), 2 * np.ones((1, 3), int))
    good = np.zeros((3, 65), np.int64)
    with pytest.raises(ValueError, match="all_offset"):
        ap_index_partial(Q, X, QL, DL, np.zeros((3, 64), np.int64), good)
    with pytest.raises(ValueError, match="rel_offset"):
        ap_index_partial(Q, X, QL, DL, good, good.astype(float))


def test_bad_merge_and_relevance():
    d = np.zeros((3, 2), np.int32)
    i = np.zeros((3, 2), np.int64)
    with pytest.raises(ValueError, match="D_parts"):
        merge_knn([d], [i, i], 2)
    with pytest.raises(ValueError, match="D_parts"):
        merge_knn([d], [np.zeros((2, 2), np.int64)], 2)
    with pytest.raises(ValueError, match="D_parts"):
        merge_knn(d, i, 2)
    with pytest.raises(ValueError, match="relevance"):
        ap_from_neighbors(np.array([1, 0]))
    with pytest.raises(ValueError, match="relevance"):
        ap_from_neighbors(np.array([[2, 0]]))


def test_bad_packing():
    with pytest.raises(ValueError, match="bits"):
        pack_codes(np.zeros(8))
    with pytest.raises(ValueError, match="bits"):
        pack_codes(np.array([[0, 2]]))
    with pytest.raises(ValueError, match="bits"):
        pack_codes(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="bits"):
        pack_codes(np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="nbits"):
        unpack_codes(np.zeros((2, 1), np.uint64), 65)
    with pytest.raises(ValueError, match="nbits"):
        unpack_codes(np.zeros((2, 1), np.uint64), 0)
    with pytest.raises(ValueError, match="packed"):
        unpack_codes(np.zeros((2, 1), np.int64), 8)
    with pytest.raises(ValueError, match="packed"):
        unpack_codes(np.zeros(2, np.uint64), 8)
