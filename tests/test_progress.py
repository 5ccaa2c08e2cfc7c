"""Progress lines: a fixed total, and one that grows while the work is planned."""

from __future__ import annotations

import logging

from pipeline.progress import Progress


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "aurorahash.progress"]


def test_a_known_total_is_printed_plain(caplog):
    with caplog.at_level(logging.INFO, logger="aurorahash.progress"):
        p = Progress("search", 4, interval=0)
        p.advance(3, rows=30)
        p.done()
    assert [line.split(",")[0] for line in _lines(caplog)] == ["search: 3/4 tasks"] * 2


def test_a_growing_total_says_planned_so_far_until_the_plan_is_complete(caplog):
    with caplog.at_level(logging.INFO, logger="aurorahash.progress"):
        p = Progress("compact", None, unit="shards", interval=0)
        p.plan(1200)
        p.advance(1000)
        p.plan(2200)
        p.advance(200)
        p.planned()
        p.done()
    heads = [line.split(",")[0] for line in _lines(caplog)]
    assert heads == [
        "compact: 1000/1200+ shards planned so far",
        "compact: 1200/3400+ shards planned so far",
        "compact: 1200/3400 shards",
    ]
