"""The search report's parts without Ray: frames read back through the readers for thumbnails
(placeholders with the reason when they cannot be), the gallery and JSON of a search, query
specs, and `search --out DIR` through jobs.common.output_file."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from shard_fixtures import write_dataset

from jobs.cli import main
from pipeline.codes import store
from pipeline.ingest.query_images import parse_spec
from pipeline.readers import list_archive, read_frames
from pipeline.reports import write_report
from pipeline.reports.frames import read_thumbnails
from pipeline.reports.search import SHOW_COLUMNS, QueryFrame, search_report
from pipeline.synth import CLASSES, write_archive


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """One labelled synthetic minute file (20 frames of 64 px) and its frames as readers give."""
    root = tmp_path_factory.mktemp("archive")
    write_archive(str(root), 20, seed=4, fmt="pgm", size=64)
    (uri,) = list_archive(str(root))
    return uri, list(read_frames(uri))


def _png_size(png: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(png)).size


def test_thumbnails_from_the_archive_and_placeholders_with_reasons(archive, tmp_path):
    uri, frames = archive
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png at all")
    refs = [(uri, 3), (uri, 19), (uri, 25), (str(tmp_path / "gone.pgm"), 0), (str(junk), 0)]
    got = read_thumbnails(refs, size=48)
    ok = got[(uri, 3)]
    assert ok.ok and ok.site == frames[3].site and ok.time == frames[3].time
    assert ok.label == frames[3].label and _png_size(ok.png) == (48, 48)
    assert got[(uri, 19)].ok
    assert not got[(uri, 25)].ok and got[(uri, 25)].reason == "no such frame (the file has 20)"
    assert got[(str(tmp_path / "gone.pgm"), 0)].reason == "file not found"
    bad = got[(str(junk), 0)]
    assert not bad.ok and bad.reason and _png_size(bad.png) == (48, 48)


def test_query_specs():
    assert parse_spec("a/x.pgm.gz#3") == ("a/x.pgm.gz", 3)
    assert parse_spec("s3://b/x.png") == ("s3://b/x.png", None)
    assert parse_spec("odd#name.png") == ("odd#name.png", None)


def _search(uri, frames):
    """A search result over the archive's frames: query frame 0, neighbours 0, 5, 7 and two
    that cannot be shown (a frame past the end, a file that is gone)."""
    ids = np.array([["f#0", "f#5", "f#7", "f#99", "gone#1", "lost#2"]], dtype=object)
    rows = {}
    for fid in ids[0][:4]:
        i = int(fid.split("#")[1])
        fr = frames[min(i, 19)]
        rows[fid] = {"source": uri, "frame": i, "site": fr.site, "time": fr.time, "pred": 2,
                     "score": 0.875, "label": fr.label}  # fmt: skip
    rows["gone#1"] = dict(rows["f#0"], source="/nowhere/gone.pgm", frame=1)
    rows["lost#2"] = {**dict.fromkeys(SHOW_COLUMNS), "id": "lost#2"}  # as frame_rows gives it
    res = SimpleNamespace(
        ids=ids,
        distances=np.array([[0, 1, 3, 4, 9, 9]], np.int32),
        indices=np.arange(6)[None],
        n_database=40,
        seconds=0.01,
    )
    meta = store.ShardMeta(nbits=32, model="c" * 64, classes=list(CLASSES))
    cat = SimpleNamespace(meta=meta, segments=[], shards=[1, 2])
    query = QueryFrame("f#0", uri, 0, pred=1, score=0.5, label=frames[0].label)
    return [query], res, rows, cat


def test_search_report_gallery_and_json(archive, tmp_path):
    uri, frames = archive
    queries, res, rows, cat = _search(uri, frames)
    run = {"codes": "codes/", "query": "f#0", "n_queries": 3, "k": 5, "seconds": 0.5}
    rep = search_report(queries, res, rows, cat, run)
    (gallery,) = rep.sections[0].blocks
    ((head, tiles),) = gallery.rows
    labelled = CLASSES[frames[0].label].replace("_", " ")
    assert head == f"1. f#0  \u00b7  labelled {labelled}"
    assert [t.title for t in tiles] == [
        "query",
        "d = 0",
        "d = 1",
        "d = 3",
        "d = 4",
        "d = 9",
        "d = 9",
    ]
    assert tiles[0].mark == "query"
    same = [frames[i].label == frames[0].label for i in (0, 5, 7)]
    assert [t.mark for t in tiles[1:4]] == ["hit" if s else "miss" for s in same]
    assert "radial corona 88%" in tiles[1].note and "synt" in tiles[1].note
    assert f"{frames[5].time:%H:%M:%S} UTC" in tiles[2].note
    assert tiles[4].mark is None and "not readable: no such frame" in tiles[4].note
    assert "not readable: file not found" in tiles[5].note
    assert tiles[6].note == "not readable: no longer in the codes"
    assert "1 of 3 queries" in rep.subtitle
    folder = write_report(rep, str(tmp_path))
    doc = json.loads(Path(folder, "report.json").read_text())
    (q,) = doc["queries"]
    assert q["id"] == "f#0" and q["class"] == "drapery_corona" and q["score"] == 0.5
    assert [n["distance"] for n in q["neighbours"]] == [0, 1, 3, 4, 9, 9]
    assert q["neighbours"][1]["time"] == frames[5].time.isoformat()
    assert q["neighbours"][0]["class"] == "radial_corona" and q["neighbours"][0]["rank"] == 1


def test_search_out_folder_and_report_argument_checks(tmp_path, capsys):
    codes, labels, ids, uris = write_dataset(tmp_path / "codes", sizes=(6, 7), nbits=24)
    base = ["search", "--codes", str(tmp_path / "codes"), "--query-id", ids[2], "--no-ray"]
    (tmp_path / "out").mkdir()
    assert main([*base, "--k", "3", "--out", str(tmp_path / "out")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["out"] == f"{tmp_path}/out/neighbours.parquet"
    assert pq.read_table(summary["out"]).num_rows == 3
    assert main([*base, "--report", str(tmp_path / "r"), "--report-queries", "0"]) == 2
    assert "--report-queries" in json.loads(capsys.readouterr().out.splitlines()[-1])["error"]
    assert main(["search", "--codes", str(tmp_path / "codes"), "--image", "x.png"]) == 2  # no Ray
    assert "--model" in json.loads(capsys.readouterr().out.splitlines()[-1])["error"]
