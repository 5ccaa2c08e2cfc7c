"""The ingest job end to end (local Ray) on the poison inputs of issue 12, beside real THEMIS
files: nothing fails, each poison file is quarantined or counted corrupt with its reason, the
good files are ingested whole (also one whose name is not UTF-8), and a re-run has nothing to
do. The readers' side of each case is in test_readers_bad_input.py; the caps in docs/LIMITS.md.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ingest_helpers import THEMIS, make_model
from shard_fixtures import read_codes

pytestmark = pytest.mark.integration

GOOD = "20140310_0601_gill_themis19_full.pgm.gz"
ODD = os.fsdecode(b"\xff\xfe_20140310.pgm")  # a copy of 20140310_0605, named in bytes
ODD_TEXT = "%FF%FE_20140310.pgm"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("poison_model") / "ckpt", size=32, bits=32)


def _png(value: int, time: str | None = None) -> bytes:
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    if time is not None:
        info.add_text("Image request start", time)
    arr = np.full((48, 48), value, np.uint16)
    arr[12:24, 12:24] = 40000
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def _pgm(times) -> bytes:
    f = (np.arange(64 * 64, dtype=np.uint32) * 13 % 60000).astype(">u2").reshape(64, 64)
    head = 'P5\n#"Image request start" {}\n64 64\n65535\n'
    return b"".join(head.format(t).encode() + f.tobytes() for t in times)


def _tar_gz(path, members) -> None:
    """members: (raw name bytes, data) in a GNU tar; a long-name header claiming 2 MiB (over
    limits.MAX_TAR_HEADER_BYTES) before the one named victim.png."""
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb") as gz:
        for name, data in members:
            if name == b"victim.png":
                head = tarfile.TarInfo("././@LongLink")
                head.type = tarfile.GNUTYPE_LONGNAME
                head.size = 2 << 20
                gz.write(head.tobuf(tarfile.GNU_FORMAT) + b"\0" * (2 << 20))
            info = tarfile.TarInfo(os.fsdecode(name))
            info.size = len(data)
            gz.write(info.tobuf(tarfile.GNU_FORMAT) + data + b"\0" * (-len(data) % 512))
        gz.write(b"\0" * 1024)


@pytest.fixture
def poison_archive(tmp_path):
    root = tmp_path / "archive"
    root.mkdir()
    os.symlink(THEMIS / GOOD, root / GOOD)
    shutil.copyfile(THEMIS / "20140310_0605_gill_themis19_full.pgm", os.path.join(root, ODD))
    ok = "2014-03-10 06:06:00 UTC"
    edges = ["0001-01-01 00:00:00+05:00", "9999-12-31 23:59:59-05:00"]
    (root / "20140310_0606_edges.pgm").write_bytes(_pgm([ok, edges[0], ok, edges[1]]))
    (root / "20140310_0607_edge.png").write_bytes(_png(500, edges[1]))
    (root / "20140310_0608_comment.pgm").write_bytes(b"P5\n#" + b"A" * (1 << 20) + b"\n")
    image = pa.array([{"bytes": 5}], pa.struct([("bytes", pa.int64())]))
    pq.write_table(pa.table({"image": image}), root / "struct.parquet")
    times = pa.array([10**13, 0], pa.timestamp("s"))
    pq.write_table(pa.table({"image": [_png(700), _png(800)], "time": times}), root / "t.parquet")
    os.symlink(root / "loop_b.pgm", root / "loop_a.pgm")
    os.symlink(root / "loop_a.pgm", root / "loop_b.pgm")
    os.mkfifo(root / "fifo.pgm")
    _tar_gz(
        root / "names.tar.gz",
        [
            (b"\xff\xfe.png", _png(900)),
            (b"\xfa.txt", b"no image"),
            (b"victim.png", _png(920)),
            (b"ok.png", _png(950)),
        ],
    )
    return root


def _records(out) -> dict[str, list[dict]]:
    found = {}
    for d, _, files in os.walk(out / "_quarantine"):
        for f in files:
            with open(os.path.join(d, f), encoding="utf-8") as fh:
                for line in fh:
                    r = json.loads(line)
                    assert r["reason"] and "time" in r and "frame" in r
                    found.setdefault(r["rel"], []).append(r)
    return found


def test_poison_inputs_are_quarantined_and_the_good_files_ingested(
    ray_local, model_dir, poison_archive, tmp_path, capsys
):
    from jobs.cli import main

    out = tmp_path / "out"
    args = ["ingest", "--source", str(poison_archive), "--out", str(out), "--model", model_dir]
    rc = main(args)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0, summary
    assert summary["ok"] is True and summary["files_failed"] == 0
    assert summary["files_seen"] == 11 and summary["files_done"] == 11

    records = _records(out)
    reasons = {rel: " | ".join(r["reason"] for r in rs) for rel, rs in records.items()}
    assert set(records) == {
        "20140310_0606_edges.pgm",
        "20140310_0607_edge.png",
        "20140310_0608_comment.pgm",
        "struct.parquet",
        "t.parquet",
        "loop_a.pgm",
        "loop_b.pgm",
        "fifo.pgm",
        "names.tar.gz",
    }, reasons
    assert [r["frame"] for r in records["20140310_0606_edges.pgm"]] == [1, 3]
    assert reasons["20140310_0606_edges.pgm"].count("outside the representable range") == 2
    assert "outside the representable range" in reasons["20140310_0607_edge.png"]
    assert "comment line longer than 4096 bytes" in reasons["20140310_0608_comment.pgm"]
    assert "struct<bytes: int64>" in reasons["struct.parquet"]
    assert records["t.parquet"][0]["frame"] == 0 and "representable" in reasons["t.parquet"]
    assert "symlink loop" in reasons["loop_a.pgm"] and "symlink loop" in reasons["loop_b.pgm"]
    assert reasons["fifo.pgm"] == "not a regular file: a FIFO (named pipe)"
    assert [r["frame"] for r in records["names.tar.gz"]] == [1, 2]
    assert "'%FA'" in reasons["names.tar.gz"] and "no image" in reasons["names.tar.gz"]
    assert "'victim.png': GNU long name of 2097152 bytes" in reasons["names.tar.gz"]
    assert summary["quarantined"] == sum(len(v) for v in records.values())
    assert summary["files_corrupt"] == 4  # struct.parquet, the two loops, the FIFO

    table = read_codes(str(out))
    ids = set(table.column("id").to_pylist())
    assert {f"{GOOD}#{i}" for i in range(20)} <= ids  # the good file, whole
    assert {f"{ODD_TEXT}#{i}" for i in range(20)} <= ids  # and the one named in bytes
    assert {"20140310_0606_edges.pgm#0", "20140310_0606_edges.pgm#2", "t.parquet#1"} <= ids
    assert {"names.tar.gz#0", "names.tar.gz#3"} <= ids  # the members beside the bad ones
    assert len(ids) == table.num_rows == 20 + 20 + 2 + 1 + 2
    sources = set(table.column("source").to_pylist())
    assert str(poison_archive / ODD_TEXT) in sources

    again = main(args)
    s2 = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again == 0 and s2["files_failed"] == 0
    assert s2["files_skipped"] == 11 and s2["files_done"] == 0
