"""Reports open in a real headless Chromium, offline: no failed request, every image decoded,
not blank (tests/browser.py; skipped where Chromium is missing, required under CI=true)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from browser import assert_renders, render, require_browser
from report_fixtures import write_models

from jobs.cli import main
from pipeline.reports import Gallery, Report, Section, Tile, write_report
from pipeline.reports.thumbnail import thumbnail_png


@pytest.fixture(autouse=True)
def _browser():
    require_browser()


def test_benchmark_report_renders(tmp_path, capsys):
    write_models(tmp_path / "db", tmp_path / "q", bits=(16, 32), db_files=8, query_files=2)
    argv = ["benchmark", "--database", str(tmp_path / "db"), "--queries", str(tmp_path / "q")]
    rc = main([*argv, "--no-ray", "--topk", "20", "--report", str(tmp_path / "r")])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0, summary
    page = render(summary["report"], screenshot=tmp_path / "shot.png")
    assert_renders(page, images=4)
    assert "Hashing retrieval benchmark" in page.text and "MAP@20" in page.text


def test_gallery_of_16_bit_frames_renders(tmp_path):
    from pipeline.synth import generate

    frames, labels = generate(4, size=96, seed=1)
    tiles = [
        Tile(thumbnail_png(f, 96), f"frame {i}", f"class {c}", "hit")
        for i, (f, c) in enumerate(zip(frames, labels, strict=True))
    ]
    rep = Report("search", "Neighbours", sections=[Section("Q", [Gallery([("query", tiles)])])])
    folder = write_report(rep, str(tmp_path))
    page = render(f"{folder}/report.html")
    assert_renders(page, images=4, min_text=20)
    assert all(i["width"] == 96 for i in page.images)


def test_a_broken_page_fails_the_checks(tmp_path):
    """The checks can fail: a remote image is blocked, an undecodable one has no width."""
    html = tmp_path / "bad.html"
    html.write_text(
        "<html><body><p>x</p><img src='https://example.org/a.png'>"
        "<img src='data:image/png;base64,AAAA'></body></html>"
    )
    page = render(html)
    assert any("example.org" in f for f in page.failed)
    with pytest.raises(AssertionError, match="failed requests"):
        assert_renders(page, images=2, min_text=0)
    assert page.errors  # the console reports the blocked fetch
    page.failed, page.errors = [], []
    with pytest.raises(AssertionError, match="not decoded"):
        assert_renders(page, images=2, min_text=0)


HISTORY = [
    {"epoch": e, "loss": 1.6 - 0.3 * e, "ce": 1.4 - 0.3 * e, "pair": 0.5 / e, "quant": 0.2,
     "train_accuracy": 0.4 + 0.15 * e}
    for e in (1, 2, 3)
]  # fmt: skip


def _encoded_splits(n_query=8, n_db=40, bits=16):
    """Synthetic aurora as model inputs, with codes that mostly agree within a class."""
    from pipeline.model.preprocess import PreprocessConfig, preprocess_batch
    from pipeline.synth import CLASSES, generate
    from pipeline.training.evaluate import EncodedSplits

    frames, labels = generate(n_query + n_db, size=64, seed=2)
    pre = PreprocessConfig.aurora(32).to_dict()
    x = preprocess_batch(list(frames), PreprocessConfig.from_dict(pre))
    rng = np.random.default_rng(0)
    centres = rng.choice([-1.0, 1.0], (len(CLASSES), bits))
    h = centres[labels] * np.where(rng.random((len(labels), bits)) < 0.2, -1, 1)
    logp = np.log(np.full((len(labels), len(CLASSES)), 1 / len(CLASSES)))
    q, d = slice(0, n_query), slice(n_query, None)
    splits = {"query": (x[q], labels[q]), "db": (x[d], labels[d]), "classes": list(CLASSES),
              "preprocess": pre}  # fmt: skip
    return splits, EncodedSplits(h[q], logp[q], h[d], logp[d])


def test_training_report_renders(tmp_path):
    from pipeline.reports.training import K_EXAMPLES, N_EXAMPLES, write_model_report
    from pipeline.training.evaluate import evaluate_encoded

    splits, enc = _encoded_splits()
    metrics = evaluate_encoded(enc, splits, topk=10)
    config = {"arch": "compact", "bits": 16, "history": HISTORY, "epochs_done": 3,
              "train_images": 40, "params_mb": 0.04, "model_sha256": "ab" * 32}  # fmt: skip
    run = {"model": "runs/x", "dataset": "synthetic-aurora", "protocol": "synthetic"}
    path = write_model_report("train", str(tmp_path), None, config, metrics, splits, enc, run)
    page = render(path, screenshot=tmp_path / "shot.png")
    assert_renders(page, images=3 + N_EXAMPLES * (1 + K_EXAMPLES))
    assert "MAP@10" in page.text and "query 0: arc" in page.text
    shown = [i for i in page.images if i["alt"] in ("query", "d = 0", "d = 1")]
    assert shown and all(i["width"] == 32 for i in shown)  # the model's inputs, 32 px


def test_demo_report_renders(tmp_path, capsys):
    from pipeline.reports import write_page
    from pipeline.reports.demo import demo_report
    from pipeline.synth import generate

    write_models(tmp_path / "db", tmp_path / "q", bits=(32,), db_files=4, query_files=1)
    argv = ["benchmark", "--database", str(tmp_path / "db"), "--queries", str(tmp_path / "q")]
    assert main([*argv, "--no-ray", "--topk", "20", "--out", str(tmp_path / "b.json")]) == 0
    capsys.readouterr()
    records = list(json.loads((tmp_path / "b.json").read_text()).values())
    frames, _ = generate(3, size=64, seed=1)
    tiles = [Tile(thumbnail_png(f), "d = 0", "arc 90%", "hit") for f in frames]
    gallery = Gallery([("x.pgm.gz#0", tiles)], "neighbours")
    summary = {"workdir": str(tmp_path), "train": {"seconds": 12.0, "accuracy": 0.9},
               "map": {"train": 0.8, "ingested": 0.79}, "total_seconds": 40.0}  # fmt: skip
    run = {"database": "db", "queries": "q", "topk": 20, "executor": "local", "seconds": 1.0}
    rep = demo_report(summary, HISTORY, records, run, gallery)
    page = render(write_page(rep, str(tmp_path / "report.html")))
    assert_renders(page, images=4 + 3)
    assert "MAP of the codes ingest stored" in page.text and "0.7900" in page.text
