"""Synthetic aurora: determinism, chunking, balance, realism bounds, writers and round trips."""

from __future__ import annotations

import gzip
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from jobs.cli import main as cli_main
from pipeline.readers import Frame, list_archive, read_frames
from pipeline.synth import (
    CLASSES,
    generate,
    minute_file_name,
    split_indices,
    write_archive,
    write_pgm_minute,
    write_png,
)

THEMIS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "themis"
T0 = datetime(2020, 1, 1, 6, 0, tzinfo=timezone.utc)


def test_classes_are_the_four_dayside_classes():
    assert CLASSES == ["arc", "drapery_corona", "radial_corona", "hot_spot"]


def test_shapes_dtypes_and_determinism():
    a, la = generate(6, size=48, seed=3)
    b, lb = generate(6, size=48, seed=3)
    c, _ = generate(6, size=48, seed=4)
    assert a.shape == (6, 48, 48) and a.dtype == np.uint16
    assert la.shape == (6,) and la.dtype == np.int64
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(a, c)


def test_chunks_equal_the_whole_stream():
    whole, lw = generate(11, size=32, seed=7)
    parts = [generate(k, size=32, seed=7, start=s) for s, k in ((0, 3), (3, 5), (8, 3))]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), whole)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), lw)


def test_class_balance_and_subsets():
    _, labels = generate(40, size=16, seed=1)
    assert np.bincount(labels, minlength=4).tolist() == [10, 10, 10, 10]
    # every aligned block of four holds each class once, in a seeded order
    for b in range(10):
        assert sorted(labels[4 * b : 4 * b + 4]) == [0, 1, 2, 3]
    assert labels[:8].tolist() != generate(8, size=16, seed=2)[1].tolist()
    _, sub = generate(6, size=16, seed=1, classes=["arc", "hot_spot"])
    assert sorted(sub.tolist()) == [0, 0, 0, 3, 3, 3]
    with pytest.raises(ValueError, match="unknown aurora class"):
        generate(2, classes=["aurora_borealis"])


def test_frames_look_like_themis_counts():
    frames, _ = generate(8, size=128, seed=5)
    yy, xx = np.mgrid[:128, :128]
    r = np.hypot(yy - 63.5, xx - 63.5)
    for f in frames.astype(float):
        corners = f[r > 70]
        disk = f[r < 40]
        assert 2000 < np.median(corners) < 3800  # dark level of the CCD
        assert 5 < corners.std() < 80  # read noise, no structure
        assert np.median(disk) > np.median(corners) + 100  # the sky is brighter
        assert f.max() <= 65535


def test_classes_differ_in_structure():
    """A weak but real check that labels mean something: the radial corona's rays make its
    angular profile around the centre far less smooth than a hot spot's patches."""
    frames, labels = generate(16, size=96, seed=8)
    yy, xx = np.mgrid[:96, :96]
    ang = np.arctan2(yy - 47.5, xx - 47.5)
    ring = (np.hypot(yy - 47.5, xx - 47.5) > 12) & (np.hypot(yy - 47.5, xx - 47.5) < 30)
    bins = ((ang[ring] + np.pi) / (2 * np.pi) * 90).astype(int) % 90

    def roughness(f):
        prof = np.bincount(bins, f[ring], 90) / np.bincount(bins, minlength=90)
        return np.abs(np.diff(prof)).mean() / (prof.std() + 1e-9)

    rough = {c: np.mean([roughness(f.astype(float)) for f in frames[labels == c]]) for c in (2, 3)}
    assert rough[2] > rough[3]


def test_pgm_minute_round_trip(tmp_path):
    frames, labels = generate(20, size=64, seed=2)
    for gz in (True, False):
        uri = write_pgm_minute(str(tmp_path / f"gz{gz}"), frames, T0, labels=labels, gzip=gz)
        assert Path(uri).name == minute_file_name(T0, "synt", "themis99", gz)
        assert Path(uri).name == "20200101_0600_synt_themis99_full.pgm" + (".gz" if gz else "")
        items = list(read_frames(uri))
        assert len(items) == 20 and all(isinstance(i, Frame) for i in items)
        np.testing.assert_array_equal(np.stack([f.pixels for f in items]), frames)
        assert [f.label for f in items] == labels.tolist()
        assert [f.time for f in items] == [T0 + timedelta(seconds=3 * k) for k in range(20)]
        assert {f.site for f in items} == {"synt"}
        assert {f.meta["imager"] for f in items} == {"themis99"}
        assert items[5].meta["label_name"] == CLASSES[labels[5]]
        assert [f.meta["sequence"] for f in items] == list(range(20))
    # the file holds the rows bottom first (the reader flips them back): the THEMIS convention
    raw = Path(uri).read_bytes()
    start = raw.index(b"\n64 64\n65535\n") + len(b"\n64 64\n65535\n")
    first = np.frombuffer(raw[start : start + 2 * 64 * 64], ">u2").reshape(64, 64)
    assert not np.array_equal(frames[0], frames[0][::-1])
    np.testing.assert_array_equal(first, frames[0][::-1])


def test_pgm_minute_with_a_dropped_exposure(tmp_path):
    frames, _ = generate(4, size=16, seed=3)
    uri = write_pgm_minute(str(tmp_path / "d.pgm"), frames, T0, sequence=[7, 8, 10, 11])
    items = list(read_frames(uri))
    assert [f.meta["sequence"] for f in items] == [7, 8, 10, 11]
    assert [(f.time - T0).total_seconds() for f in items] == [0, 3, 9, 12]  # 6 s at the gap
    with pytest.raises(ValueError, match="sequence"):
        write_pgm_minute(str(tmp_path / "e.pgm"), frames, T0, sequence=[1, 2, 2, 3])


def test_write_pgm_minute_to_an_explicit_name_and_unlabelled(tmp_path):
    frames, _ = generate(2, size=16, seed=2)
    uri = write_pgm_minute(str(tmp_path / "x.pgm"), frames, "2021-05-06T07:08:00")
    items = list(read_frames(uri))
    assert [f.label for f in items] == [None, None]
    assert items[1].time == datetime(2021, 5, 6, 7, 8, 3, tzinfo=timezone.utc)


@pytest.mark.skipif(not THEMIS.is_dir(), reason="../shared/data/themis not present")
def test_pgm_header_layout_matches_the_real_files(tmp_path):
    def keys(header: bytes) -> list[str]:
        return re.findall(r'^#"([^"]+)"', header.decode("latin-1"), flags=re.M)

    real = gzip.decompress((THEMIS / "20140310_0600_gill_themis19_full.pgm.gz").read_bytes())
    frames, labels = generate(2, size=256, seed=0)
    uri = write_pgm_minute(str(tmp_path), frames, T0, labels=labels, gzip=False)
    ours = Path(uri).read_bytes()
    for data, extra in ((real, []), (ours, ["Aurora class"])):
        assert data.startswith(b"P5\n")
        first = data[: data.index(b"\n256 256\n65535\n")]
        second_start = data.index(b"P5\n", len(first) + 15 + 131072)
        second = data[second_start : data.index(b"\n256 256\n65535\n", second_start)]
        if data is real:
            real_keys = (keys(first), keys(second))
        else:
            assert keys(first) == real_keys[0] + extra
            assert keys(second) == real_keys[1] + extra


def test_png_round_trip(tmp_path):
    frames, labels = generate(1, size=40, seed=9)
    uri = write_png(str(tmp_path / "a.png"), frames[0], label=labels[0], site="synt", time=T0)
    (f,) = list(read_frames(uri))
    np.testing.assert_array_equal(f.pixels, frames[0])
    assert f.pixels.dtype == np.uint16
    assert (f.label, f.site, f.time) == (labels[0], "synt", T0)


@pytest.mark.parametrize("fmt, n_files", [("pgm.gz", 3), ("pgm", 3), ("png", 45)])
def test_archive_equals_the_generated_stream(tmp_path, fmt, n_files):
    s = write_archive(str(tmp_path), 45, seed=6, fmt=fmt, size=32)
    assert s["frames"] == 45 and s["files"] == n_files
    assert sum(s["class_counts"].values()) == 45
    files = list_archive(str(tmp_path))
    assert len(files) == n_files
    top = "png" if fmt == "png" else "stream0"
    assert all(f"/{top}/2020/01/01/synt_themis99/ut06/" in f for f in files)
    got = [i for f in files for i in read_frames(f)]
    frames, labels = generate(45, size=32, seed=6)
    np.testing.assert_array_equal(np.stack([f.pixels for f in got]), frames)
    assert [f.label for f in got] == labels.tolist()
    if fmt != "png":  # one camera's counter, across its minute files
        assert [f.meta["sequence"] for f in got] == list(range(45))
    times = [f.time for f in got]
    assert times == sorted(times) and times[0] == T0 and times[20] == T0 + timedelta(minutes=1)


def test_split_is_seeded_disjoint_and_balanced():
    idx = split_indices(n_train=8, n_query=6, n_database=16)
    assert set(idx["train"]) <= set(idx["database"])
    assert not set(idx["query"]) & set(idx["database"])
    sep = split_indices(8, 6, 16, train_in_database=False)
    assert not set(sep["train"]) & (set(sep["database"]) | set(sep["query"]))
    from pipeline.training.datasets.synthetic import synthetic_splits

    s1 = synthetic_splits(1, None, size=24, n_train=8, n_query=8, n_database=16, workers=1)
    s2 = synthetic_splits(1, None, size=24, n_train=8, n_query=8, n_database=16, workers=1)
    for name in ("train", "query", "db"):
        np.testing.assert_array_equal(s1[name][0], s2[name][0])
    assert s1["db"][0].shape == (16, 1, 24, 24) and s1["query"][0].shape == (8, 1, 24, 24)
    assert np.bincount(s1["query"][1], minlength=4).tolist() == [2, 2, 2, 2]
    np.testing.assert_array_equal(s1["train"][0], s1["db"][0][:8])
    _, q_labels = generate(8, size=24, seed=1, start=16)  # the queries are frames 16..23
    assert s1["query"][1].tolist() == q_labels.tolist()


def test_synth_cli_job(tmp_path, capsys):
    rc = cli_main(["synth", "--out", str(tmp_path), "--frames", "8", "--size", "32", "--seed", "3"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["ok"] and summary["frames"] == 8 and summary["files"] == 1
    assert summary["class_counts"] == {c: 2 for c in CLASSES}
    (uri,) = list_archive(str(tmp_path))
    assert uri.endswith("20200101_0600_synt_themis99_full.pgm.gz")
    rc = cli_main(["synth", "--out", str(tmp_path / "b"), "--classes", "nope"])
    assert rc == 2
    assert "unknown aurora class" in json.loads(capsys.readouterr().out.strip())["error"]
