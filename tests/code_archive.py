"""Synthetic code archives for catalogue tests, and the checks that they read back right."""

from __future__ import annotations

import collections

import numpy as np
import pytest

import kernels
from pipeline import storage
from pipeline.codes import catalogue, search, store
from pipeline.synth.codes import make_codes, write_code_shards

MODEL = "d" * 64
NBITS, CLASSES = 12, 3


class Archive:
    """Synthetic per-minute shards, and the canonical reference the catalogue must equal."""

    def __init__(self, root: str, so: dict | None = None, nbits: int = NBITS, marked=True):
        self.root, self.so = str(root), so or {}
        self.marked = marked  # pending marks after the shards, as ingest; False: an old root
        self.loc = storage.location(self.root, options=self.so)  # as a job makes it
        self.rows: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # relpath -> (codes, labels)
        self.nbits = nbits

    def write(self, relpaths, seed=0, rows=20):
        codes, labels = make_codes(len(relpaths) * rows, self.nbits, CLASSES, seed)
        write_code_shards(
            self.root,
            relpaths,
            rows,
            self.nbits,
            CLASSES,
            model=MODEL,
            storage_options=self.so,
            codes_labels=(codes, labels),
            mark=self.marked,
        )
        for i, rel in enumerate(sorted(relpaths)):
            sl = slice(i * rows, (i + 1) * rows)
            self.rows[rel] = (codes[sl], labels[sl])

    def reference(self):
        order = sorted(self.rows)
        codes = np.concatenate([self.rows[r][0] for r in order])
        labels = np.concatenate([self.rows[r][1] for r in order])
        ids = [store.frame_id(r, j) for r in order for j in range(len(self.rows[r][0]))]
        return codes, labels, np.asarray(ids, dtype=object)

    def catalogue(self):
        return catalogue.open_catalogue(self.loc)

    def model_root(self):
        return store.model_prefix(self.root, MODEL)

    def model_loc(self):
        return self.loc.child(MODEL[: store.MODEL_PREFIX_LEN])


def assert_equals_kernels(arch: Archive, task_rows=None, executor=None, n_queries=12):
    """k-NN (distances, indices, ids) and both MAPs equal the kernels on the concatenation."""
    codes, labels, ids = arch.reference()
    cat = arch.catalogue()
    assert cat.n_rows >= 1
    step = max(1, len(codes) // n_queries)
    q, ql = codes[::step][:n_queries], labels[::step][:n_queries]
    res = search.search(q, cat, 40, executor, task_rows)
    D, I = kernels.hamming_knn(q, codes, 40)
    np.testing.assert_array_equal(res.distances, D)
    np.testing.assert_array_equal(res.indices, I)
    np.testing.assert_array_equal(res.ids, ids[I])
    m = search.evaluate_map(q, ql, cat, executor, topk=7, task_rows=task_rows)
    assert m.n_database == len(codes)
    ref = kernels.average_precision(q, codes, ql, labels)
    np.testing.assert_allclose(m.aps, ref, rtol=0, atol=1e-9)
    aware = kernels.mean_average_precision(q, codes, ql, labels, ties="aware")
    assert m.map_tie_aware == pytest.approx(aware, abs=1e-9)
    return res, m


def catalogue_ids(arch: Archive) -> collections.Counter:
    cat = arch.catalogue()
    out = collections.Counter()
    for task in catalogue.plan_tasks(cat.parts):
        t = catalogue.read_task(task, cat.meta, cat.loc, ("id",))
        out.update(t.column("id").to_pylist())
    return out


def assert_exactly_once(arch: Archive):
    ids = catalogue_ids(arch)
    assert max(ids.values()) == 1, "a frame appears twice"
    assert set(ids) == set(arch.reference()[2]), "frames missing or unexpected"
