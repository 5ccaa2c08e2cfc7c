"""`search --image` on real THEMIS frames: a frame that ingest stored finds itself at distance 0,
the checkpoint must be the codes' model, bad files are exit 2 with the file and the reason, and
`--report` shows the archive's frames (or a placeholder with the reason) in a real browser."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from ingest_helpers import CLASSES, THEMIS, make_model

from jobs.cli import main
from pipeline.ingest.config import IngestConfig
from pipeline.ingest.driver import run_ingest

pytestmark = pytest.mark.integration

PGZ, PGM = "20140310_0603_gill_themis19_full.pgm.gz", "20140310_0605_gill_themis19_full.pgm"


@pytest.fixture(scope="module")
def ingested(ray_local, tmp_path_factory):
    """Two real THEMIS minute files (gzip and plain PGM, 40 frames) ingested with a tiny model."""
    root = tmp_path_factory.mktemp("themis")
    src = root / "src"
    src.mkdir()
    for name in (PGZ, PGM):
        shutil.copy(THEMIS / name, src / name)
    model = make_model(root / "model", size=32, bits=32, seed=0)
    summary = run_ingest(IngestConfig(source=str(src), out=str(root / "codes"), model=model))
    assert summary["frames"] == 40 and summary["files_failed"] == 0
    return root, src, model


def _search(capsys, root, model, *argv):
    rc = main(["search", "--codes", str(root / "codes"), "--model", model, "--no-ray", *argv])
    return rc, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_a_stored_frame_finds_itself_at_distance_0(ingested, capsys):
    root, src, model = ingested
    for spec, own in ((f"{src}/{PGZ}#3", f"{PGZ}#3"), (f"{THEMIS}/{PGM}#17", f"{PGM}#17")):
        rc, s = _search(capsys, root, model, "--image", spec, "--k", "40")
        assert rc == 0, s
        (got,) = s["neighbors"].values()
        assert dict(got)[own] == 0, got  # among the ties at distance 0, the frame itself
        assert s["n_database"] == 40 and s["n_queries"] == 1
    rc, s = _search(capsys, root, model, "--image", str(src / PGZ), "--k", "1")  # every frame
    assert rc == 0 and len(s["neighbors"]) == 20 and f"{src}/{PGZ}#19" in s["neighbors"]


def test_an_image_on_s3(ingested, capsys, s3):
    """FILE may be an s3:// object (--s3-endpoint), with local codes."""
    root, src, model = ingested
    bucket = s3.bucket()
    s3.client.upload_file(str(src / PGZ), bucket, f"night/{PGZ}")
    spec = f"s3://{bucket}/night/{PGZ}#3"
    rc, s = _search(capsys, root, model, "--image", spec, "--k", "40", "--s3-endpoint", s3.endpoint)
    assert rc == 0, s
    assert dict(s["neighbors"][spec])[f"{PGZ}#3"] == 0


def test_the_model_must_have_made_the_codes(ingested, capsys):
    root, src, _ = ingested
    other = make_model(root / "other", size=32, bits=32, seed=1)
    rc, s = _search(capsys, root, other, "--image", f"{src}/{PGZ}#3")
    assert rc == 2 and "did not make the codes" in s["error"] and "other" in s["error"]


@pytest.mark.parametrize(
    "name, words",
    [
        ("missing.pgm.gz#1", ["missing.pgm.gz", "no such archive"]),
        (f"{PGZ}#25", [PGZ, "frame 25", "no such frame (the file has 20)"]),
        ("notes.txt", ["notes.txt", "no archive files a reader takes"]),
        ("", ["a folder of several files"]),
    ],
)
def test_bad_images_exit_2_naming_file_and_reason(ingested, capsys, tmp_path, name, words):
    root, src, model = ingested
    folder = tmp_path if name == "notes.txt" else src
    (tmp_path / "notes.txt").write_text("hello")
    rc, s = _search(capsys, root, model, "--image", f"{folder}/{name}")
    assert rc == 2 and all(w in s["error"] for w in words), s["error"]


def test_search_report_by_image_and_by_id_renders(ingested, capsys, tmp_path):
    from browser import assert_renders, render, require_browser

    require_browser()
    root, src, model = ingested
    rc, s = _search(capsys, root, model, "--image", f"{src}/{PGZ}#3", "--k", "6",
                    "--report", str(tmp_path / "r"))  # fmt: skip
    assert rc == 0 and s["report"].startswith(str(tmp_path / "r"))
    doc = json.loads(Path(s["report"]).with_name("report.json").read_text())
    (q,) = doc["queries"]
    assert q["source"] == f"{src}/{PGZ}" and q["frame"] == 3 and q["class"] in CLASSES
    assert q["site"] == "gill" and q["time"].startswith("2014-03-10T06:03:09")
    nbrs = q["neighbours"]
    assert len(nbrs) == 6 and {n["site"] for n in nbrs} == {"gill"} and all(n["time"] for n in nbrs)
    page = render(s["report"])
    assert_renders(page, images=7)
    assert "06:03:09 UTC" in page.text and "d = 0" in page.text

    src.rename(tmp_path / "away")  # the archive moved: placeholders with the reason, no crash
    try:
        rc, s = _search(capsys, root, model, "--query-id", f"{PGM}#2", "--k", "3",
                        "--report", str(tmp_path / "r"))  # fmt: skip
    finally:
        (tmp_path / "away").rename(src)
    assert rc == 0, s
    page = render(s["report"])
    assert_renders(page, images=4)
    assert page.text.count("not readable: file not found") == 4
