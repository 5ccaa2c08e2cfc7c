"""Ingestion on real parts: a local Ray instance, real THEMIS files, Parquet, a moto S3 server."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from ingest_helpers import (
    THEMIS,
    make_model,
    pgm_headers,
    rows_by_id,
    snapshot,
    themis_expected,
)
from shard_fixtures import read_codes

from pipeline import storage
from pipeline.codes import catalogue, search, store
from pipeline.ingest.config import IngestConfig, parse_since
from pipeline.ingest.driver import run_ingest
from pipeline.ingest.plan import date_from_name

pytestmark = pytest.mark.integration

SUMMARY_KEYS = {
    "files_seen",
    "files_skipped",
    "files_done",
    "files_failed",
    "frames",
    "quarantined",
    "frames_per_s",
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("model") / "ckpt", size=32, bits=32, seed=0)


@pytest.fixture(scope="module")
def themis_run(ray_local, model_dir, tmp_path_factory):
    """One ingest of all of ../shared/data/themis into a local folder (shared by tests)."""
    out = tmp_path_factory.mktemp("themis_out")
    cfg = IngestConfig(source=str(THEMIS), out=str(out), model=model_dir, progress_interval=1)
    summary = run_ingest(cfg)
    return out, summary


def test_themis_one_row_per_frame_with_header_sites_and_times(themis_run, model_dir):
    out, summary = themis_run
    expected = themis_expected()
    n_frames = sum(len(v) for v in expected.values())
    assert n_frames == 6 * 20 + 23
    assert summary["files_seen"] == 8  # 6 PGM, the ASF CDF and the AST thumbnail
    assert summary["files_done"] == 7 and summary["files_ignored"] == 1
    assert summary["files_skipped"] == 0 and summary["files_failed"] == 0
    assert summary["frames"] == n_frames and summary["quarantined"] == 0
    assert set(summary) >= SUMMARY_KEYS and summary["frames_per_s"] > 0
    assert summary["time_breakdown_s"]["read_s"] > 0  # the end rows' timings column, summed

    prefix = summary["out"]
    shards = store.list_shards(str(out))
    assert [store.relpath_of_shard(s, prefix) for s in shards] == sorted(expected)
    table = read_codes(str(out))
    assert table.num_rows == n_frames
    rows = rows_by_id(table)
    assert len(rows) == n_frames  # ids unique
    for rel, frames in expected.items():
        for i, (site, t) in enumerate(frames):
            r = rows[f"{rel}#{i}"]
            assert r["source"] == str(THEMIS / rel)
            assert (r["frame"], r["site"], r["time"]) == (i, site, t), rel
            assert r["label"] is None and 0 <= r["pred"] < 4 and 0.25 <= r["score"] <= 1.0
    _assert_header_meta(rows, expected)
    assert summary["sequence_gaps"] == 0 and summary["frames_dropped"] == 0
    meta = store.shard_meta(table)
    assert meta.nbits == 32 and len(meta.classes) == 4
    assert prefix.endswith(meta.model12)
    # `aurorahash.model` is the model id (weights + preprocessing + encode settings), not the
    # sha256 of the weights alone
    from pipeline.model.checkpoint import load_checkpoint

    _, cfg = load_checkpoint(model_dir)
    assert meta.model == cfg["model_id"] != cfg["model_sha256"]
    assert summary["model"] == cfg["model_id"][:12]


def _assert_header_meta(rows: dict, expected: dict) -> None:
    """The shard's meta column holds each PGM frame's own header values (parsed here), and
    the CDF frames' exposure ends."""
    for rel, frames in expected.items():
        if not rel.endswith((".pgm", ".pgm.gz")):
            for i, (_, t) in enumerate(frames):
                end = datetime.fromisoformat(json.loads(rows[f"{rel}#{i}"]["meta"])["exposure_end"])
                assert timedelta(0) < end - t < timedelta(seconds=2)
            continue
        for i, h in enumerate(pgm_headers(THEMIS / rel)):
            meta = json.loads(rows[f"{rel}#{i}"]["meta"])
            assert meta["sequence"] == int(h["Mode sequence number"])
            assert meta["exposure_options"] == h["Exposure options"]
            readout = h["Image readout start"].replace(" UTC", "+00:00")
            assert datetime.fromisoformat(meta["readout_start"]) == datetime.fromisoformat(readout)


def test_dropped_exposures_are_counted_in_the_summary(ray_local, model_dir, tmp_path):
    from pipeline.synth import generate, write_pgm_minute

    frames, _ = generate(20, size=32, seed=0)
    src = str(tmp_path / "night")
    write_pgm_minute(src, frames, "2020-01-01T06:00", sequence=[*range(5), *range(8, 23)])
    write_pgm_minute(src, frames[:19], "2020-01-01T06:01", sequence=range(23, 42))
    s = run_ingest(IngestConfig(source=src, out=str(tmp_path / "out"), model=model_dir))
    assert s["files_done"] == 2 and s["frames"] == 39
    assert (s["sequence_gaps"], s["frames_dropped"]) == (1, 3)  # 5, 6 and 7 missing


def test_codes_equal_the_bare_model(themis_run, model_dir):
    """The codes in a shard are the model's codes for those frames, bit for bit."""
    from pipeline.ingest.encode_actor import HashEncoder
    from pipeline.ingest.read import FileTask, read_file_rows
    from pipeline.model.checkpoint import open_checkpoint

    out, summary = themis_run
    enc = HashEncoder(open_checkpoint(model_dir), device="cpu")
    rel = "20140310_0605_gill_themis19_full.pgm"
    shard = store.read_shard(store.shard_uri(str(out), rel, summary["model"] + "0" * 52))
    blocks = list(read_file_rows(FileTask(str(THEMIS / rel), rel)))
    frames = [r for b in blocks for r in enc(b).to_pylist() if r["kind"] == "frame"]
    assert len(frames) == 20
    assert [r["code"] for r in frames] == shard.column("code").to_pylist()
    assert [r["pred"] for r in frames] == shard.column("pred").to_pylist()
    codes, _, _ = search.load_all(catalogue.open_catalogue(summary["out"]))
    assert codes.dtype == np.uint64 and codes.shape == (6 * 20 + 23, 1)
    assert not np.any(codes >> np.uint64(32)), "bits above nbits must be zero"


def test_second_run_skips_everything_and_changes_nothing(themis_run, model_dir):
    out, _ = themis_run
    before = snapshot(out)
    again = run_ingest(IngestConfig(source=str(THEMIS), out=str(out), model=model_dir))
    assert again["files_skipped"] == 7 and again["files_ignored"] == 1
    assert again["files_done"] == 0 and again["frames"] == 0 and again["files_failed"] == 0
    assert snapshot(out) == before


def test_another_model_writes_its_own_set(themis_run, tmp_path):
    out, first = themis_run
    other = make_model(tmp_path / "other", size=32, bits=64, seed=1)
    src = str(THEMIS / "20140310_0600_gill_themis19_full.pgm.gz")
    s = run_ingest(IngestConfig(source=src, out=str(out), model=other))
    assert s["files_done"] == 1 and s["frames"] == 20 and s["out"] != first["out"]
    assert len(store.list_models(str(out))) == 2
    cat = catalogue.open_catalogue(str(out), s["model"])
    codes, _, ids = search.load_all(cat)
    assert cat.meta.nbits == 64 and codes.shape == (20, 1)
    assert ids[0] == "20140310_0600_gill_themis19_full.pgm.gz#0"  # relative to a file source
    with pytest.raises(Exception, match="several models"):
        catalogue.open_catalogue(str(out))


def test_s3_source_and_output_match_the_local_run(themis_run, model_dir, s3):
    out, local = themis_run
    src_bucket, dst_bucket = s3.bucket("archive"), s3.bucket("codes")
    s3.upload_dir(THEMIS, src_bucket, "themis")
    cfg = IngestConfig(
        source=f"s3://{src_bucket}/themis",
        out=f"s3://{dst_bucket}/nightly",
        model=model_dir,
        s3_endpoint=s3.endpoint,
    )
    summary = run_ingest(cfg)
    assert summary["files_done"] == 7 and summary["frames"] == local["frames"]
    keys = s3.keys(dst_bucket)
    m12 = local["model"]
    shard_keys = [k for k in keys if "/_" not in k]  # not quarantine, not pending marks
    assert shard_keys == [f"nightly/{m12}/{rel}.parquet" for rel in sorted(themis_expected())]
    assert f"nightly/{m12}/_pending/FORMAT" in keys  # the shards' folder is marked pending
    assert any(k.startswith(f"nightly/{m12}/_pending/") and k.endswith(".mark") for k in keys)
    remote = read_codes(storage.location(cfg.out, options=s3.storage_options))
    mine = read_codes(str(out), model=m12)
    assert remote.num_rows == mine.num_rows
    a, b = rows_by_id(remote), rows_by_id(mine)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k]["source"] == f"s3://{src_bucket}/themis/{k.split('#')[0]}"
        assert {c: v for c, v in a[k].items() if c != "source"} == {
            c: v for c, v in b[k].items() if c != "source"
        }
    # a re-run skips everything, also with the checkpoint itself read from S3 (same model id)
    s3.upload_dir(model_dir, src_bucket, "models/tiny")
    again = run_ingest(replace(cfg, model=f"s3://{src_bucket}/models/tiny"))
    assert again["files_skipped"] == 7 and again["files_done"] == 0
    assert again["model"] == local["model"]
    assert s3.keys(dst_bucket) == keys


# ------------------------------------------------------------------------------- bad input


def _png_bytes(value: int = 1000, size: int = 48) -> bytes:
    from PIL import Image

    arr = np.full((size, size), value, dtype=np.uint16)
    arr[size // 4 : size // 2, size // 4 : size // 2] = 40000
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _tar(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


@pytest.fixture
def hostile_archive(tmp_path):
    root = tmp_path / "archive"
    root.mkdir()
    good = THEMIS / "20140310_0601_gill_themis19_full.pgm.gz"
    os.symlink(good, root / good.name)
    data = good.read_bytes()
    (root / "20140310_0602_gill_themis19_full.pgm.gz").write_bytes(data[: len(data) * 6 // 10])
    (root / "20140310_0603_gill_themis19_full.pgm").write_bytes(b"")
    (root / "20140310_0604_gill_themis19_full.pgm").write_bytes(b"GIF89a" + b"\0" * 4000)
    huge = b'P5\n#"Site unique ID" gill\n100000 100000\n65535\n' + b"\0" * 1000
    (root / "20140310_0605_gill_themis19_full.pgm").write_bytes(huge)
    _tar(
        root / "shard-000.tar",
        {
            "a.png": _png_bytes(),
            "a.cls": b"1",
            "b.png": b"this is not an image at all",
            "b.cls": b"2",
            "c.png": _png_bytes(2000),
        },
    )
    _tar(root / "shard-001.tar", {"../evil.png": _png_bytes(), "ok.png": _png_bytes(3000)})
    return root


def test_hostile_input_is_quarantined_and_nothing_else_lost(
    ray_local, model_dir, hostile_archive, tmp_path, capsys
):
    from jobs.cli import main

    out = tmp_path / "out"
    rc = main(["ingest", "--source", str(hostile_archive), "--out", str(out), "--model", model_dir])
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert rc == 0, summary
    assert set(summary) >= SUMMARY_KEYS and summary["ok"] is True
    assert summary["files_seen"] == 7 and summary["files_failed"] == 0
    assert summary["files_done"] == 7

    records = {}
    for d, _, files in os.walk(out / "_quarantine"):
        for f in files:
            for line in Path(d, f).read_text().splitlines():
                r = json.loads(line)
                assert r["reason"] and "time" in r and "frame" in r
                records.setdefault(os.path.basename(r["file"]), []).append(r)
    assert set(records) == {
        "20140310_0602_gill_themis19_full.pgm.gz",  # truncated gzip
        "20140310_0603_gill_themis19_full.pgm",  # zero bytes
        "20140310_0604_gill_themis19_full.pgm",  # wrong magic
        "20140310_0605_gill_themis19_full.pgm",  # declares 100000 x 100000
        "shard-000.tar",  # a non-image member
        "shard-001.tar",  # a ../ member
    }, records
    assert summary["quarantined"] == sum(len(v) for v in records.values())
    assert any(r["frame"] is not None for r in records["shard-000.tar"])

    table = read_codes(str(out))
    ids = set(table.column("id").to_pylist())
    good = "20140310_0601_gill_themis19_full.pgm.gz"
    assert {f"{good}#{i}" for i in range(20)} <= ids  # the intact file, whole
    trunc = [i for i in ids if i.startswith("20140310_0602_")]
    assert 0 < len(trunc) < 20  # the frames before the truncation point
    tar0 = sorted(i for i in ids if i.startswith("shard-000.tar#"))
    tar1 = sorted(i for i in ids if i.startswith("shard-001.tar#"))
    assert len(tar0) == 2 and len(tar1) == 1  # a, c; and ok
    labels = {r["id"]: r["label"] for r in table.to_pylist() if r["id"] in tar0}
    assert sorted(v for v in labels.values() if v is not None) == [1]
    # Corrupt files are finished too (empty shard + record): a re-run has nothing to do.
    again = main(
        ["ingest", "--source", str(hostile_archive), "--out", str(out), "--model", model_dir]
    )
    s2 = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again == 0 and s2["files_skipped"] == 7 and s2["files_done"] == 0


# -------------------------------------------------------------------------------------- CLI


def test_help_documents_every_option(capsys):
    from jobs.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["ingest", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for opt in (
        "--source",
        "--out",
        "--model",
        "--since",
        "--ray-address",
        "--batch-size",
        "--s3-endpoint",
        "--actors",
        "--dry-run",
    ):
        assert opt in text
    assert "_quarantine" in text and "exit" in text.lower()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--since", "2014-13-45"], "--since"),
        (["--since", "yesterday"], "--since"),
        (["--batch-size", "0"], "--batch-size"),
        (["--actors", "0"], "--actors must be at least 1"),
        (["--encoder-threads", "0"], "--encoder-threads must be at least 1"),
        (["--read-tasks", "-1"], "--read-tasks must be at least 1"),
        (["--read-cpus", "0"], "--read-cpus must be in (0, 64]"),
        (["--read-cpus", "65"], "--read-cpus must be in (0, 64]"),
        (["--max-files", "-1"], "--max-files must be at least 0"),
        (["--progress-interval", "0"], "--progress-interval must be positive"),
        (["--batch-size", "4", "--rows-per-block", "9"], "--rows-per-block 9 must be at most"),
    ],
)
def test_bad_usage_exits_2(model_dir, tmp_path, capsys, extra, message):
    from jobs.cli import main

    rc = main(
        ["ingest", "--source", str(THEMIS), "--out", str(tmp_path), "--model", model_dir] + extra
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 2 and summary["ok"] is False and message in summary["error"]


def test_missing_source_or_model_exits_2(model_dir, tmp_path, capsys):
    from jobs.cli import main

    rc = main(
        ["ingest", "--source", str(tmp_path / "nope"), "--out", str(tmp_path), "--model", model_dir]
    )
    assert rc == 2
    rc = main(["ingest", "--source", str(THEMIS), "--out", str(tmp_path), "--model", str(tmp_path)])
    assert rc == 2
    rc = main(["ingest", "--source", "s3://", "--out", str(tmp_path), "--model", model_dir])
    assert rc == 2
    for line in capsys.readouterr().out.strip().splitlines():
        assert json.loads(line)["ok"] is False
    with pytest.raises(SystemExit) as exc:  # a required option missing: argparse says 2
        main(["ingest", "--source", str(THEMIS)])
    assert exc.value.code == 2


def test_since_filters_by_name_date(model_dir, tmp_path):
    cfg = IngestConfig(
        source=str(THEMIS),
        out=str(tmp_path),
        model=model_dir,
        since=parse_since("2012-01-01"),
        dry_run=True,
    )
    s = run_ingest(cfg)
    assert s["files_seen"] == 6 and s["files_todo"] == 6  # the 2014 PGM minutes only
    assert run_ingest(replace(cfg, since=parse_since("2014-03-11")))["files_seen"] == 0
    cfg = replace(cfg, since=None, source=f"file://{THEMIS}")
    assert run_ingest(cfg)["files_todo"] == 8  # file:// URIs list the same files
    assert str(date_from_name("thg_l1_asf_gako_2011010617_v01.cdf")) == "2011-01-06"
    assert str(date_from_name("stream0/2014/03/10/gill_themis19/ut06/x.pgm")) == "2014-03-10"
    assert str(date_from_name("20140310_0600_gill_themis19_full.pgm.gz")) == "2014-03-10"
    assert date_from_name("shard-000.tar") is None


def test_storage_options_never_print_credentials(monkeypatch):
    from pipeline.storage import options_for

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    opts = options_for("s3://b/p", endpoint="http://127.0.0.1:1")
    assert opts["secret"] == "very-secret-value"
    assert "very-secret-value" not in repr(opts) and "very-secret-value" not in str(opts)
    assert options_for("/local/path") == {}


def test_gzip_oracle_sanity():
    """The test oracle itself: 20 frames per minute file, 3 s cadence."""
    exp = themis_expected()
    assert len(exp) == 7
    t = [tt for _, tt in exp["20140310_0600_gill_themis19_full.pgm.gz"]]
    assert len(t) == 20 and 2.5 < (t[1] - t[0]).total_seconds() < 3.5
    assert (
        gzip.decompress((THEMIS / "20140310_0600_gill_themis19_full.pgm.gz").read_bytes())[:2]
        == b"P5"
    )


def test_archive_file_changed_after_ingest_is_read_again(ray_local, model_dir, tmp_path):
    # a minute file still being synced at ingest time (truncated), complete by the next night
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    name, other = (
        "20140310_0600_gill_themis19_full.pgm.gz",
        "20140310_0601_gill_themis19_full.pgm.gz",
    )
    whole = (THEMIS / name).read_bytes()
    (src / other).write_bytes((THEMIS / other).read_bytes())
    (src / name).write_bytes(whole[: len(whole) // 2])
    first = run_ingest(IngestConfig(source=str(src), out=str(out), model=model_dir))
    assert first["files_done"] == 2 and first["files_changed"] == 0
    assert 0 < first["frames"] - 20 < 20 and first["quarantined"] >= 1
    assert len(list((out / "_quarantine").rglob(name + ".jsonl"))) == 1
    before_other = snapshot(out / first["model"])[other + ".parquet"]

    (src / name).write_bytes(whole)
    shard = out / first["model"] / (name + ".parquet")
    later = shard.stat().st_mtime + 0.5  # synced after the first run's shard was written
    os.utime(src / name, (later, later))
    time.sleep(max(0.0, later + 0.1 - time.time()))
    second = run_ingest(IngestConfig(source=str(src), out=str(out), model=model_dir))
    assert second["files_changed"] == 1 and second["files_done"] == 1
    assert second["files_skipped"] == 1 and second["frames"] == 20 and second["quarantined"] == 0
    ids = read_codes(str(out)).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 40  # every frame once, none twice
    assert {f"{name}#{i}" for i in range(20)} <= set(ids)
    assert not list((out / "_quarantine").rglob(name + ".jsonl"))  # the old problems are gone
    assert snapshot(out / first["model"])[other + ".parquet"] == before_other  # untouched

    third = run_ingest(IngestConfig(source=str(src), out=str(out), model=model_dir))
    assert third["files_skipped"] == 2 and third["files_changed"] == 0 and third["files_done"] == 0


def test_quarantine_of_a_tar_of_many_bad_members_is_bounded(ray_local, model_dir, tmp_path):
    """Issue 12: a tar of 100,000 one-byte members wrote 100,000 quarantine lines (20 MB); now
    100 lines and one more with the exact count of the rest (here 1,500 members + 1 good)."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    members = {f"m{i:05d}.png": b"x" for i in range(1500)}
    members["zz.png"] = _png_bytes()
    _tar(src / "many.tar", members)
    s = run_ingest(IngestConfig(source=str(src), out=str(out), model=model_dir))
    assert s["files_done"] == 1 and s["frames"] == 1 and s["quarantined"] == 1500
    (q,) = list((out / "_quarantine").rglob("many.tar.jsonl"))
    lines = [json.loads(x) for x in q.read_text().splitlines()]
    assert len(lines) == 101 and q.stat().st_size < 100_000
    assert all(r["frame"] is not None for r in lines[:100])
    assert lines[-1]["frame"] is None and lines[-1]["more"] == 1400
    assert sum(lines[-1]["reasons"].values()) == 1400
