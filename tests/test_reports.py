"""pipeline.reports: dated folders never overwrite, pages are self-contained, thumbnails stretch."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from pipeline.reports import (
    Figure,
    Gallery,
    Report,
    Section,
    Table,
    Text,
    Tile,
    plots,
    render_html,
    thumbnail,
    write_report,
)

NOW = dt.datetime(2026, 11, 30, 23, 15, 0, tzinfo=dt.timezone.utc)


def _read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def _png(w=8, h=6) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 120, 90)).save(buf, format="PNG")
    return buf.getvalue()


def _report(**kw) -> Report:
    table = Table(
        ["model", "MAP"], [["a", 0.5], ["b <i>", 0.75], ["c", None]], "cap", best=("MAP",)
    )
    blocks = [table, Figure("pr", _png(), "PR <curves>"), Text("note & text")]
    return Report(
        "benchmark", "T <script>", "sub", [("db", "s3://x")], [Section("S", blocks)], **kw
    )


def test_folder_is_new_dated_and_never_overwrites(tmp_path):
    first = write_report(_report(data={"x": 1}), str(tmp_path), now=NOW)
    assert os.path.basename(first) == "2026-11-30T231500Z-benchmark"
    assert sorted(os.listdir(first)) == ["pr.png", "report.html", "report.json"]
    before = {f: _read(os.path.join(first, f), "rb") for f in os.listdir(first)}
    second = write_report(_report(data={"x": 2}), str(tmp_path), now=NOW)
    third = write_report(_report(data={"x": 3}), str(tmp_path), now=NOW)
    assert [os.path.basename(p) for p in (second, third)] == [
        "2026-11-30T231500Z-benchmark-2",
        "2026-11-30T231500Z-benchmark-3",
    ]
    assert {f: _read(os.path.join(first, f), "rb") for f in os.listdir(first)} == before
    assert json.loads(_read(os.path.join(third, "report.json")))["x"] == 3
    assert sorted(os.listdir(tmp_path)) == sorted(
        os.path.basename(p) for p in (first, second, third)
    )


def test_failed_write_leaves_no_folder(tmp_path, monkeypatch):
    def boom(*a):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        write_report(_report(), str(tmp_path), now=NOW)
    assert os.listdir(tmp_path) == []  # neither the report nor its hidden temporary folder


def test_json_beside_the_page(tmp_path):
    folder = write_report(
        _report(data={"models": [{"map": np.float64(0.5), "n": np.int64(3)}]}),
        str(tmp_path),
        now=NOW,
    )
    doc = json.loads(_read(os.path.join(folder, "report.json")))
    assert doc["kind"] == "benchmark" and doc["created"] == "2026-11-30T23:15:00+00:00"
    assert doc["figures"] == ["pr.png"] and doc["facts"] == {"db": "s3://x"}
    assert doc["models"] == [{"map": 0.5, "n": 3}]
    with pytest.raises(ValueError, match="kind"):
        write_report(_report(data={"kind": "x"}), str(tmp_path))
    with pytest.raises(ValueError):
        write_report(_report(data={"x": float("nan")}), str(tmp_path))


def test_page_is_self_contained_and_escaped():
    rep = _report()
    rep.sections.append(
        Section("G", [Gallery([("query <1>", [Tile(_png(), "t", "n", "hit")])], "gal")])
    )
    page = render_html(rep, "2026-11-30T23:15:00+00:00")
    assert "<script>" not in page and "T &lt;script&gt;" in page and "b &lt;i&gt;" in page
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) == 2 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"(href|src)=\"(https?:)?//", page) and "@import" not in page
    assert "default-src 'none'" in page  # the browser itself refuses any fetch
    assert '<td class="num best">0.7500</td>' in page and "\u2013" in page  # best, None
    assert "Table 1." in page and "Figure 1." in page and "Figure 2." in page


def test_figure_names_are_file_stems(tmp_path):
    rep = _report()
    rep.sections[0].blocks.append(Figure("../x", _png()))
    with pytest.raises(ValueError, match="figure names"):
        write_report(rep, str(tmp_path))
    rep.sections[0].blocks[-1] = Figure("pr", _png())
    with pytest.raises(ValueError, match="figure names"):
        write_report(rep, str(tmp_path))


def test_plots_make_pngs():
    with plots.figure(ncols=2) as (fig, axes):
        for i, ax in enumerate(axes):
            ax.plot([0, 1], [0, 1], **plots.series_style(i))
    png = plots.to_png(fig)
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.size[0] > 1500  # 200 dpi, wide


def test_thumbnail_stretches_16_bit_counts():
    rng = np.random.default_rng(0)
    frame = rng.normal(3000, 30, (200, 300)).astype(np.uint16)  # sky background ~3000 counts
    frame[80:100, :] += 600  # a faint arc
    frame[5, 5] = 65535  # a saturated star
    img = Image.open(io.BytesIO(thumbnail.thumbnail_png(frame, size=120)))
    assert img.size == (120, 80) and img.mode == "L"
    a = np.asarray(img).astype(float)
    arc, sky = a[33:39].mean(), a[50:70].mean()
    assert arc > 200 and sky < 140, (arc, sky)  # linear /65535 would show both black
    small = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(thumbnail.display_stretch(small), small)  # 8-bit as is
    rgb = Image.open(io.BytesIO(thumbnail.thumbnail_png(np.zeros((4, 4, 3), np.uint8))))
    assert rgb.mode == "RGB" and rgb.size == (4, 4)  # never enlarged
    flat = thumbnail.display_stretch(np.full((5, 5), 7, np.uint16))
    assert flat.dtype == np.uint8 and flat.shape == (5, 5)
    with pytest.raises(ValueError):
        thumbnail.thumbnail_png(np.zeros((0, 3), np.uint16))


@pytest.mark.integration
def test_s3_report_folder_is_new_and_its_page_comes_last(s3, monkeypatch):
    from pipeline import storage

    bucket = s3.bucket("reports")
    order = []
    fs = storage.split_uri(f"s3://{bucket}/", s3.storage_options)[0]  # fsspec caches it
    pipe = fs.pipe_file
    record = lambda p, data, **kw: order.append(p.rsplit("/", 1)[1]) or pipe(p, data, **kw)  # noqa: E731
    monkeypatch.setattr(fs, "pipe_file", record)
    uris = [write_report(_report(), f"s3://{bucket}/map/", s3.storage_options, NOW) for _ in "ab"]
    assert uris == [
        f"s3://{bucket}/map/2026-11-30T231500Z-benchmark",
        f"s3://{bucket}/map/2026-11-30T231500Z-benchmark-2",
    ]
    assert order == ["pr.png", "report.json", "report.html"] * 2
    keys = s3.keys(bucket)
    assert len(keys) == 6 and "map/2026-11-30T231500Z-benchmark/report.html" in keys
    assert s3.get(bucket, "map/2026-11-30T231500Z-benchmark/report.html").startswith(b"<!DOCTYPE")
