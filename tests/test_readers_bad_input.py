"""Hostile and broken archive files: each is refused with a reason, and good frames survive."""

from __future__ import annotations

import gzip
import io
import tarfile
import tracemalloc
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import reader_fixtures as rf

from pipeline.errors import BadInput
from pipeline.readers import CorruptFile, Frame, FrameError, limits, read_frames
from pipeline.synth import generate, pgm_minute_bytes

T0 = datetime(2021, 12, 1, 9, 30, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def five():
    frames, labels = generate(5, size=32, seed=11)
    return frames, labels, pgm_minute_bytes(frames, T0, labels=labels)


def _split(items):
    return [i for i in items if isinstance(i, Frame)], [
        i for i in items if isinstance(i, FrameError)
    ]


def test_truncated_pgm_gz_yields_complete_frames_then_an_error(tmp_path, five):
    frames, labels, raw = five
    data = gzip.compress(raw, mtime=0)
    p = tmp_path / "20211201_0930_synt_themis99_full.pgm.gz"
    p.write_bytes(data[: int(len(data) * 0.6)])
    good, bad = _split(list(read_frames(str(p))))
    assert 1 <= len(good) < 5
    for f in good:
        np.testing.assert_array_equal(f.pixels, frames[f.index])
        assert f.label == labels[f.index]
    assert len(bad) == 1 and bad[0].index == len(good)
    assert "truncated" in bad[0].reason.lower() or "compressed" in bad[0].reason.lower()
    assert str(p) in str(bad[0])


def test_truncated_plain_pgm(tmp_path, five):
    frames, _, raw = five
    p = tmp_path / "cut.pgm"
    p.write_bytes(raw[: len(raw) - 100])
    good, bad = _split(list(read_frames(str(p))))
    assert len(good) == 4 and len(bad) == 1 and bad[0].index == 4
    assert "remain" in bad[0].reason or "truncated" in bad[0].reason


@pytest.mark.parametrize(
    "name",
    [
        "a.pgm",
        "a.pgm.gz",
        "a.pgm.bz2",
        "thg_l1_asf_x_2011010617_v01.cdf",
        "a.png",
        "a.tar",
        "a.parquet",
    ],
)
def test_zero_byte_files_are_corrupt(tmp_path, name):
    p = tmp_path / name
    p.write_bytes(b"")
    with pytest.raises(CorruptFile) as exc:
        list(read_frames(str(p)))
    assert str(p) in str(exc.value) and "0 bytes" in exc.value.reason
    assert isinstance(exc.value, BadInput)


@pytest.mark.parametrize(
    "name, data, words",
    [
        ("a.pgm", b"P6\n4 4\n255\n" + bytes(48), "magic"),
        ("a.pgm", b"GIF89a" + bytes(100), "magic"),
        ("a.pgm.gz", gzip.compress(b"JUNKJUNK" * 10), "magic"),
        ("a.pgm.gz", b"P5\n1 1\n255\n\x00", "not gzip"),
        ("thg_l1_asf_x_2011010617_v01.cdf", b"NOTACDF!" * 10, "not a CDF"),
        ("a.png", b"\x89PNX" + bytes(60), "not a PNG"),
        ("a.parquet", b"PAR1" + bytes(30), "Parquet"),
        ("a.tar", b"\x01" * 700, "not a tar"),
    ],
)
def test_wrong_magic_is_corrupt(tmp_path, name, data, words):
    p = tmp_path / name
    p.write_bytes(data)
    with pytest.raises(CorruptFile) as exc:
        list(read_frames(str(p)))
    assert words.lower() in exc.value.reason.lower()


def test_unsupported_extension_is_corrupt(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello")
    with pytest.raises(CorruptFile, match="unsupported"):
        read_frames(str(p))


@pytest.mark.parametrize("compress", [False, True])
def test_huge_declared_pgm_after_good_frames(tmp_path, five, compress):
    frames, _, raw = five
    two = pgm_minute_bytes(frames[:2], T0)
    evil = two + b'P5\n#"Site unique ID" evil\n100000 100000\n65535\n' + bytes(64)
    p = tmp_path / ("huge.pgm.gz" if compress else "huge.pgm")
    p.write_bytes(gzip.compress(evil) if compress else evil)
    tracemalloc.start()
    try:
        items = list(read_frames(str(p)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    good, bad = _split(items)
    assert [f.index for f in good] == [0, 1]
    np.testing.assert_array_equal(good[1].pixels, frames[1])
    assert len(bad) == 1 and bad[0].index == 2
    assert "100000x100000" in bad[0].reason and "limit" in bad[0].reason
    assert peak < 20 * 2**20  # nothing near 20 GB (or even 20 MB) was allocated


def test_declared_size_checked_against_bytes_present(tmp_path):
    p = tmp_path / "short.pgm"
    p.write_bytes(b"P5\n300 300\n65535\n" + bytes(1000))
    (bad,) = list(read_frames(str(p)))
    assert isinstance(bad, FrameError) and bad.index == 0
    assert "180000 bytes" in bad.reason and "remain" in bad.reason


def test_decompression_is_capped(tmp_path, five, monkeypatch):
    _, _, raw = five
    p = tmp_path / "big.pgm.gz"
    p.write_bytes(gzip.compress(raw))
    monkeypatch.setattr(limits, "MAX_DECOMPRESSED_BYTES", len(raw) // 3)
    good, bad = _split(list(read_frames(str(p))))
    assert 0 < len(good) < 5
    assert len(bad) == 1 and "MAX_DECOMPRESSED_BYTES" in bad[0].reason


def test_garbage_after_good_frames(tmp_path, five):
    _, _, raw = five
    p = tmp_path / "tail.pgm"
    p.write_bytes(raw + b"garbage that is not a frame")
    good, bad = _split(list(read_frames(str(p))))
    assert len(good) == 5 and len(bad) == 1 and "magic" in bad[0].reason


@pytest.mark.parametrize(
    "side, words", [(100000, "decompression bomb"), (9000, "9000x9000 exceeds the limit")]
)
def test_png_declaring_huge_size_is_refused_before_decoding(tmp_path, side, words):
    p = tmp_path / "bomb.png"
    p.write_bytes(rf.png_declaring(side, side))
    with pytest.raises(CorruptFile, match=words):
        list(read_frames(str(p)))


def test_tar_with_non_image_and_fake_image(tmp_path):
    img0 = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000
    img1 = np.full((8, 8), 7, np.uint8)
    p = tmp_path / "shard-000.tar"
    rf.make_tar(
        p,
        [
            ("s/000.png", rf.png_bytes(img0)),
            ("s/000.cls", b"2\n"),
            ("s/notes.txt", b"just text"),
            ("s/002.png", b"this is not a png"),
            ("s/003.png", rf.png_bytes(img1)),
            ("s/003.cls", b"hot_spot"),
        ],
    )
    items = list(read_frames(str(p)))
    assert [i.index for i in items] == [0, 1, 2, 3]
    good, bad = _split(items)
    assert [f.index for f in good] == [0, 3]
    np.testing.assert_array_equal(good[0].pixels, img0)
    assert good[0].label == 2 and good[1].label == 3
    assert good[0].meta["key"] == "s/000"
    assert "s/notes" in bad[0].reason and "no image" in bad[0].reason
    assert "s/002.png" in bad[1].reason


def test_tar_with_escaping_members(tmp_path):
    img = np.full((4, 4), 9, np.uint8)
    p = tmp_path / "evil.tar"
    rf.make_tar(
        p,
        [
            ("ok/a.png", rf.png_bytes(img)),
            ("../../etc/b.png", rf.png_bytes(img)),
            ("/abs/c.png", rf.png_bytes(img)),
            ("ok/d.png", None, "symlink"),
            ("ok/dir", None, "dir"),
            ("ok/e.png", rf.png_bytes(img)),
        ],
    )
    good, bad = _split(list(read_frames(str(p))))
    assert [f.meta["key"] for f in good] == ["ok/a", "ok/e"]
    reasons = " | ".join(b.reason for b in bad)
    assert len(bad) == 3
    assert "'../../etc/b.png'" in reasons and "'..'" in reasons
    assert "'/abs/c.png'" in reasons and "absolute" in reasons
    assert "'ok/d.png'" in reasons and "link" in reasons


def test_truncated_tar_keeps_complete_samples(tmp_path):
    img = (np.arange(400, dtype=np.uint16).reshape(20, 20) * 100).astype(np.uint16)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for k in range(4):
            data = rf.png_bytes(img + k)
            info = tarfile.TarInfo(f"{k:03d}.png")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    p = tmp_path / "cut.tar.gz"
    cut = data.index(rf.png_bytes(img + 2)) + 20  # inside the third sample's image
    p.write_bytes(gzip.compress(data[:cut]))
    good, bad = _split(list(read_frames(str(p))))
    assert [f.index for f in good] == [0, 1] and len(bad) == 1 and bad[0].index == 2
    for f in good:
        np.testing.assert_array_equal(f.pixels, img + f.index)
    assert "truncated" in bad[0].reason


def test_parquet_bad_row_is_a_frame_error(tmp_path):
    img = np.full((5, 5, 3), 100, np.uint8)
    table = pa.table(
        {
            "id": ["a", "b", "c"],
            "image": [rf.png_bytes(img), b"not an image", rf.png_bytes(img)],
            "label": pa.array([1, 2, None], pa.int8()),
        }
    )
    p = tmp_path / "t.parquet"
    pq.write_table(table, p)
    items = list(read_frames(str(p)))
    good, bad = _split(items)
    assert [f.index for f in good] == [0, 2] and [b.index for b in bad] == [1]
    assert good[0].label == 1 and good[1].label is None and good[1].meta["id"] == "c"
    assert good[0].pixels.shape == (5, 5, 3)


def test_cdf_fill_frames_are_frame_errors(tmp_path):
    frames = np.random.default_rng(0).integers(2000, 9000, (4, 16, 16)).astype(np.uint16)
    frames[2] = 65535
    times = [T0.replace(second=3 * k) for k in range(4)]
    p = tmp_path / "thg_l1_asf_test_2021120109_v01.cdf"
    rf.write_asf_cdf(p, frames, times, site="test")
    good, bad = _split(list(read_frames(str(p))))
    assert [f.index for f in good] == [0, 1, 3]
    assert [f.time for f in good] == [times[0], times[1], times[3]]
    assert all(f.site == "test" for f in good)
    np.testing.assert_array_equal(good[2].pixels, frames[3])
    assert len(bad) == 1 and bad[0].index == 2 and "fill" in bad[0].reason


def test_truncated_cdf_is_reported(tmp_path):
    frames = np.random.default_rng(1).integers(2000, 9000, (6, 32, 32)).astype(np.uint16)
    times = [T0.replace(second=3 * k) for k in range(6)]
    p = tmp_path / "thg_l1_asf_test_2021120109_v01.cdf"
    rf.write_asf_cdf(p, frames, times, site="test")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    try:
        items = list(read_frames(str(p)))
    except CorruptFile as exc:
        assert exc.reason
        return
    good, bad = _split(items)
    assert bad, "a half CDF cannot be read whole"
    for f in good:
        np.testing.assert_array_equal(f.pixels, frames[f.index])
