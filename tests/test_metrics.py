"""pipeline.metrics: one `RetrievalMetrics` from train/evaluate and from the benchmark, its two
JSON layouts (the keys the jobs print) read back unchanged, and every figure drawn from it."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

import kernels
from pipeline.metrics import ClassAP, RetrievalMetrics, k_grid, per_class
from pipeline.reports import figures
from pipeline.training.evaluate import retrieval_metrics

TRAIN_KEYS = ["bits", "queries", "database", "map", "map_tie_aware", "map@10", "accuracy",
              "precision_at_k", "precision_at_k_tie_aware", "pr_curve"]  # fmt: skip
BENCH_KEYS = ["map", "map_tie_aware", "n_queries", "n_database", "tasks", "seconds",
              "comparisons_per_s", "map@10"]  # fmt: skip


@pytest.fixture(scope="module")
def scored():
    rng = np.random.default_rng(0)
    qh, dh = rng.standard_normal((30, 20)), rng.standard_normal((90, 20))
    ql, dl = rng.integers(0, 4, 30), rng.integers(0, 4, 90)
    logits = rng.standard_normal((30, 4))
    return retrieval_metrics(qh, ql, logits, dh, dl, topk=10), (qh, ql, dh, dl)


def _bench(nbits=16, seed=0) -> RetrievalMetrics:
    rng = np.random.default_rng(seed)
    ks = k_grid(240, 10)
    pr = np.sort(rng.random(nbits + 1))
    aps, labels = rng.random(40), rng.integers(0, 3, 40)
    return RetrievalMetrics(
        nbits=nbits, n_queries=40, n_database=240, map=float(aps.mean()), map_tie_aware=0.41,
        topk=10, map_at_k=0.5, precision_at_k_tie_aware={k: 1 / k**0.1 for k in ks},
        pr_precision=list(pr[::-1]), pr_recall=list(pr),
        per_class=per_class(aps, aps * 0.9, labels, ["arc", "hot_spot", "drapery"]),
        seconds=0.25, tasks=2,
    )  # fmt: skip


def test_train_layout_keys_and_values(scored):
    m, (qh, ql, dh, dl) = scored
    d = m.to_dict()
    assert list(d) == TRAIN_KEYS and d["bits"] == 20 and (d["queries"], d["database"]) == (30, 90)
    qc, dc = kernels.pack_codes(qh), kernels.pack_codes(dh)
    assert d["map"] == kernels.mean_average_precision(qc, dc, ql, dl)
    assert list(d["precision_at_k"]) == ["1", "10", "100", "500", "1000"]
    assert d["pr_curve"]["radius"] == list(range(21)) and len(d["pr_curve"]["recall"]) == 21
    assert json.loads(json.dumps(d)) == d
    assert RetrievalMetrics.from_dict(json.loads(json.dumps(d))).to_dict() == d


def test_benchmark_layout_keys_and_round_trip():
    m = _bench()
    s = m.benchmark_summary()
    assert list(s) == BENCH_KEYS and s["comparisons_per_s"] == 40 * 240 / 0.25
    rec = m.benchmark_dict()
    assert list(rec)[len(BENCH_KEYS) :] == [
        "topk", "pr_radius", "pr_precision", "pr_recall", "precision_at_k", "per_class",
    ]  # fmt: skip
    assert rec["precision_at_k"]["k"] == k_grid(240, 10) and rec["pr_radius"] == list(range(17))
    assert [c["label"] for c in rec["per_class"]] == [0, 1, 2]
    back = RetrievalMetrics.from_dict(json.loads(json.dumps(rec)))
    assert back.benchmark_dict() == rec and back.per_class[1].name == "hot_spot"
    assert isinstance(back.per_class[0], ClassAP)


def test_every_figure_draws_from_the_record(scored, tmp_path):
    m, _ = scored
    bench = {"87d9d02d204a": _bench(16), "313db68cd0d0": _bench(40, seed=1)}
    pngs = [
        figures.pr_figure({"compact": m}),
        figures.pr_figure(bench),
        figures.precision_at_k_figure({"compact": m}),
        figures.per_class_figure(bench),
        figures.map_vs_bits_figure(bench),
        figures.runs_figure({"runs": list(bench.values())}, bench, {"paper": {16: 0.5}}, "t"),
    ]
    for png in pngs:
        assert Image.open(io.BytesIO(png)).format == "PNG"
    path = tmp_path / "sub" / "pr.png"
    assert figures.write_png(pngs[0], str(path)) == str(path) and path.read_bytes() == pngs[0]
