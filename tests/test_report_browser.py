"""Reports open in a real headless Chromium, offline: no failed request, every image decoded,
not blank (tests/browser.py; skipped where Chromium is missing, required under CI=true)."""

from __future__ import annotations

import json

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
