"""pipeline.codes.search: k-NN and MAP across shards equal a single search over the
concatenation."""

from __future__ import annotations

import numpy as np
import pytest
from shard_fixtures import SHA_A, SHA_B, popcount_distances, reference_ap, write_dataset

from pipeline.codes import catalogue, search, store
from pipeline.errors import BadInput
from pipeline.metrics import RetrievalMetrics


@pytest.fixture
def dataset(tmp_path):
    codes, labels, ids, uris = write_dataset(tmp_path, sizes=(7, 0, 13, 5, 9), nbits=12, seed=3)
    rng = np.random.default_rng(9)
    qidx = rng.choice(len(codes), size=6, replace=False)
    return tmp_path, codes, labels, ids, uris, codes[qidx], labels[qidx]


def _reference_knn(q, db, k):
    d = popcount_distances(q, db)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, axis=1), order


@pytest.mark.parametrize("k", [1, 5, 34, 50])
def test_search_equals_reference(dataset, k):
    root, codes, labels, ids, uris, q, ql = dataset
    cat = catalogue.open_catalogue(str(root))
    assert [p.uri for p in cat.shards] == sorted(uris) and cat.meta.nbits == 12
    res = search.search(q, cat, k)
    D, I = _reference_knn(q, codes, k)
    assert res.n_database == len(codes) == 34
    np.testing.assert_array_equal(res.distances, D)
    np.testing.assert_array_equal(res.indices, I)
    np.testing.assert_array_equal(res.ids, ids[I])
    np.testing.assert_array_equal(res.labels, labels[I])


def test_map_equals_reference(dataset):
    root, codes, labels, ids, uris, q, ql = dataset
    res = search.evaluate_map(q, ql, catalogue.open_catalogue(str(root)), topk=10)
    d = popcount_distances(q, codes)
    ref = [reference_ap(d[i], labels == ql[i]) for i in range(len(q))]
    np.testing.assert_allclose(res.aps, ref, rtol=0, atol=1e-12)
    assert res.map == pytest.approx(np.mean(ref), abs=1e-12)
    # AP@10: only the first 10 ranked, normalised by relevant items retrieved.
    ref10 = []
    for i in range(len(q)):
        order = np.argsort(d[i], kind="stable")[:10]
        rel = (labels[order] == ql[i]).astype(float)
        ref10.append(
            0.0
            if rel.sum() == 0
            else float((np.cumsum(rel) / np.arange(1, 11) * rel).sum() / rel.sum())
        )
    assert res.map_at_k == pytest.approx(np.mean(ref10), abs=1e-12)
    # Tie-aware MAP equals the kernel on the concatenated database.
    import kernels

    aware = kernels.mean_average_precision(q, codes, ql, labels, ties="aware")
    assert res.map_tie_aware == pytest.approx(aware, abs=1e-12)
    assert res.n_database == 34 and res.n_queries == 6
    # PR per Hamming radius 0..12 (13 points, not 65), from histograms over the whole database
    assert len(res.pr_precision) == len(res.pr_recall) == 13
    assert res.hist_all.shape == res.hist_rel.shape == (6, 13)
    assert res.hist_all.sum(axis=1).tolist() == [34] * 6 and res.pr_recall[-1] > 0
    np.testing.assert_array_equal(res.query_labels, ql)
    # the one retrieval record: tie-aware P@k over the k grid, AP per query class
    assert isinstance(res, RetrievalMetrics) and res.nbits == 12 and res.topk == 10
    ks = list(res.precision_at_k_tie_aware)
    assert ks == [1, 2, 5, 10, 20, 34]
    want = [kernels.precision_at_k(q, codes, ql, labels, k, ties="aware").mean() for k in ks]
    np.testing.assert_allclose(list(res.precision_at_k_tie_aware.values()), want, atol=1e-12)
    for c in res.per_class:
        assert c.ap == pytest.approx(np.mean(np.asarray(ref)[ql == c.label]), abs=1e-12)
        assert c.queries == int((ql == c.label).sum())


def test_unlabelled_database_items_never_relevant(tmp_path):
    codes, labels, ids, uris = write_dataset(tmp_path, sizes=(6, 6), seed=1)
    # Rewrite one shard without labels: those frames can never be relevant.
    t = store.read_shard(uris[1])
    cols = {c: t.column(c) for c in store.COLUMNS}
    cols["label"] = [None] * t.num_rows
    store.write_shard(uris[1], cols, store.shard_meta(t))
    q, ql = codes[:3], labels[:3]
    res = search.evaluate_map(q, ql, catalogue.open_catalogue(str(tmp_path)))
    d = popcount_distances(q, codes)
    lab = labels.copy()
    lab[6:] = -1
    ref = [reference_ap(d[i], lab == ql[i]) for i in range(3)]
    np.testing.assert_allclose(res.aps, ref, atol=1e-12)


def test_several_models_need_a_choice(tmp_path):
    write_dataset(tmp_path, sizes=(4,), model=SHA_A)
    write_dataset(tmp_path, sizes=(5,), model=SHA_B, seed=1)
    with pytest.raises(BadInput, match="several models"):
        catalogue.open_catalogue(str(tmp_path))
    cat = catalogue.open_catalogue(str(tmp_path), model="bbbb")
    assert cat.meta.model == SHA_B and len(cat.shards) == 1
    roots = catalogue.model_roots(str(tmp_path))
    assert [r.uri for r in roots] == [f"{tmp_path}/{SHA_A[:12]}", f"{tmp_path}/{SHA_B[:12]}"]
    with pytest.raises(BadInput, match="no code shards"):
        catalogue.open_catalogue(str(tmp_path / "nothing"))


def test_mismatched_query_width(dataset):
    root, *_ = dataset
    with pytest.raises(BadInput, match="words"):
        search.search(np.zeros((2, 2), np.uint64), catalogue.open_catalogue(str(root)), 3)


@pytest.mark.integration
def test_ray_executor_matches_local(dataset, ray_local):
    root, codes, labels, ids, uris, q, ql = dataset
    cat = catalogue.open_catalogue(str(root))
    ex = search.RayExecutor()
    local = search.search(q, cat, 8)
    remote = search.search(q, cat, 8, executor=ex, task_rows=1)  # a task per shard
    assert remote.tasks > 2
    np.testing.assert_array_equal(local.indices, remote.indices)
    np.testing.assert_array_equal(local.distances, remote.distances)
    np.testing.assert_array_equal(local.ids, remote.ids)
    m_local = search.evaluate_map(q, ql, cat, topk=5)
    m_ray = search.evaluate_map(q, ql, cat, executor=ex, topk=5, task_rows=1)
    np.testing.assert_allclose(m_local.aps, m_ray.aps, atol=1e-12)
    assert m_local.map_tie_aware == pytest.approx(m_ray.map_tie_aware, abs=1e-12)
    assert m_local.map_at_k == pytest.approx(m_ray.map_at_k, abs=1e-12)


def test_relative_paths_and_file_uris_name_the_same_codes(dataset, monkeypatch):
    """A Location normalises the root (absolute, no file://), so the URIs it lists are below
    it: a relative --codes used to fail with 'is not a shard under'."""
    root, codes, labels, ids, uris, q, ql = dataset
    monkeypatch.chdir(root.parent)
    for where in (root.name, f"file://{root}", f"{root}/"):
        cat = catalogue.open_catalogue(where)
        assert cat.root == f"{root}/{SHA_A[:12]}" and [p.uri for p in cat.shards] == sorted(uris)
        got, _, got_ids = search.load_all(cat)
        np.testing.assert_array_equal(got, codes)
        assert list(got_ids) == list(ids)
