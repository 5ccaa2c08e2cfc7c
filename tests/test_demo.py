"""`aurorahash demo` end to end on tiny options (slow: minutes on 2 CPUs): the summary keeps its
keys (the "map" of train vs ingested codes), summary.json and report.html land in the workdir,
and the report opens in a real browser with its figures and neighbour grid."""

from __future__ import annotations

import json

import pytest

from jobs.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.integration]

TINY = ["--frames", "40", "--query-frames", "20", "--n-train", "64", "--epochs", "1",
        "--size", "32", "--bits", "16"]  # fmt: skip


def test_demo_writes_summary_and_report(tmp_path, capsys):
    from browser import assert_renders, render, require_browser

    require_browser()
    w = tmp_path / "demo"
    rc = main(["demo", "--workdir", str(w), *TINY])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0, summary
    assert set(summary["map"]) == {"train", "ingested"} and 0 <= summary["map"]["ingested"] <= 1
    assert summary["report"] == str(w / "report.html")
    on_disk = json.loads((w / "summary.json").read_text())
    assert on_disk["map"] == summary["map"] and on_disk["report"] == summary["report"]
    page = render(w / "report.html")
    figures, tiles = 4, len(page.images) - 4  # training, P@k, AP per class, PR
    assert tiles >= 7 and tiles % 7 == 0, len(page.images)  # rows of a query and 6 neighbours
    assert_renders(page, images=figures + tiles)
    assert "MAP of the codes ingest stored" in page.text and "d = " in page.text
