"""Hostile and broken archive files: each is refused with a reason, and good frames survive."""

from __future__ import annotations

import gzip
import io
import os
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


def _read_traced(path):
    """All items the readers yield for `path`, and the peak Python memory while reading."""
    tracemalloc.start()
    try:
        items = list(read_frames(str(path)))
        return items, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


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
    items, peak = _read_traced(p)
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
    np.testing.assert_array_equal(good[2].pixels, frames[3][::-1])  # rows flipped, as PGM
    assert len(bad) == 1 and bad[0].index == 2 and "fill" in bad[0].reason


def test_cdf_block_inflation_is_capped(tmp_path, monkeypatch):
    """cdflib's own gzip.decompress is unbounded; the reader's override caps every block."""
    frames = np.random.default_rng(2).integers(2000, 9000, (4, 32, 32)).astype(np.uint16)
    p = tmp_path / "thg_l1_asf_test_2021120109_v01.cdf"
    rf.write_asf_cdf(p, frames, [T0.replace(second=3 * k) for k in range(4)], site="test")
    assert len(_split(list(read_frames(str(p))))[0]) == 4
    monkeypatch.setattr(limits, "MAX_DECOMPRESSED_BYTES", 1000)  # a block holds 2 x 2048 B
    good, bad = _split(list(read_frames(str(p))))
    assert good == [] and [b.index for b in bad] == [0, 1, 2, 3]
    assert all("expands beyond 1000 bytes" in b.reason for b in bad)


def test_whole_file_compressed_cdf_is_refused_before_cdflib_inflates_it(tmp_path):
    frames = np.zeros((2, 8, 8), np.uint16)
    p = tmp_path / "thg_l1_asf_test_2021120109_v01.cdf"
    rf.write_asf_cdf(p, frames, [T0, T0], site="test")
    data = bytearray(p.read_bytes())
    assert data[4:8].hex() == "0000ffff"
    data[4:8] = bytes.fromhex("cccc0001")  # the header word of a whole-file compressed CDF
    p.write_bytes(bytes(data))
    with pytest.raises(CorruptFile, match="whole-file compressed"):
        list(read_frames(str(p)))


def test_cdflib_is_the_release_the_bounded_reader_was_written_for():
    """pipeline/readers/cdf.py overrides private cdflib methods; another release may change
    them (and bypass the cap) without notice: upgrade the pin only after re-checking them."""
    import inspect
    from pathlib import Path

    import cdflib

    from pipeline.readers.cdf import _BoundedCDF

    text = (Path(__file__).resolve().parents[1] / "constraints.txt").read_text()
    pins = dict(ln.split("==", 1) for ln in text.split() if ln.startswith("cdflib=="))
    assert cdflib.__version__ == pins["cdflib"]
    for name in ("_read_vvr_block", "_read_vvr_block2"):
        ours, theirs = getattr(_BoundedCDF, name), getattr(cdflib.CDF, name)
        assert ours is not theirs
        assert list(inspect.signature(ours).parameters) == ["self", "offset"]
        assert list(inspect.signature(theirs).parameters) == ["self", "offset"]


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
        np.testing.assert_array_equal(f.pixels, frames[f.index][::-1])


# ------------------------------------------------------------------ poison inputs (issue 12)
# Each is a CorruptFile (whole file) or a FrameError (one frame) with a clear reason; the
# frames beside it come through; and the read task (read_file_rows, what Ray runs) never
# reports it as "fail" (that is kept for infrastructure) nor raises.

EDGES = ["0001-01-01 00:00:00+05:00", "9999-12-31 23:59:59-05:00"]


def _pgm(frames, times) -> bytes:
    parts = []
    for f, t in zip(frames, times, strict=True):
        h, w = f.shape
        parts.append(f'P5\n#"Image request start" {t}\n{w} {h}\n65535\n'.encode())
        parts.append(f.astype(">u2").tobytes())
    return b"".join(parts)


def _rows(path, rel=None):
    """All rows read_file_rows (the read task's body, without Ray) makes of one file."""
    from pipeline.ingest.read import FileTask, read_file_rows

    task = FileTask(str(path), rel or os.path.basename(str(path)))
    blocks = list(read_file_rows(task, rows_per_block=4))
    return pa.concat_tables(blocks).to_pylist()


def _kinds(rows):
    out = {}
    for r in rows:
        out.setdefault(r["kind"], []).append(r)
    return out


@pytest.mark.parametrize("edge", EDGES)
def test_pgm_time_header_at_the_calendar_limits_is_one_frame_error(tmp_path, five, edge):
    frames = five[0]
    ok = "2021-12-01 09:30:00.000000 UTC"
    p = tmp_path / "20211201_0930_synt_themis99_full.pgm"
    p.write_bytes(_pgm(frames[:3], [ok, edge, ok]))
    good, bad = _split(list(read_frames(str(p))))
    assert [f.index for f in good] == [0, 2]  # the frame after it is read too
    np.testing.assert_array_equal(good[1].pixels, frames[2][::-1])  # file rows, bottom first
    assert good[0].time == T0
    assert [b.index for b in bad] == [1]
    assert "Image request start" in bad[0].reason and "outside the representable range" in (
        bad[0].reason
    )
    kinds = _kinds(_rows(p))
    assert len(kinds["frame"]) == 2 and len(kinds["error"]) == 1 and "fail" not in kinds


@pytest.mark.parametrize("edge", EDGES)
def test_png_and_tar_time_text_at_the_calendar_limits(tmp_path, edge):
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Image request start", edge)
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), 3, np.uint8)).save(buf, format="PNG", pnginfo=info)
    p = tmp_path / "edge.png"
    p.write_bytes(buf.getvalue())
    (bad,) = list(read_frames(str(p)))
    assert isinstance(bad, FrameError) and "outside the representable range" in bad.reason
    ok = rf.png_bytes(np.full((8, 8), 5, np.uint8))
    t = tmp_path / "edge.tar"
    rf.make_tar(t, [("a.png", ok), ("b.png", buf.getvalue()), ("c.png", ok)])
    good, bad = _split(list(read_frames(str(t))))
    assert [f.meta["key"] for f in good] == ["a", "c"]
    assert len(bad) == 1 and "'b.png'" in bad[0].reason and "representable" in bad[0].reason


def test_parquet_image_struct_of_int64_is_corrupt_with_its_type(tmp_path):
    p = tmp_path / "s.parquet"
    image = pa.array([{"bytes": 5}, {"bytes": 7}], pa.struct([("bytes", pa.int64())]))
    pq.write_table(pa.table({"image": image, "label": [1, 2]}), p)
    with pytest.raises(CorruptFile) as exc:
        list(read_frames(str(p)))
    assert "no binary image column" in exc.value.reason
    assert "struct<bytes: int64>" in exc.value.reason
    (row, end) = _rows(p)
    assert row["kind"] == "corrupt" and "struct<bytes: int64>" in row["reason"]
    assert end["kind"] == "end" and end["expected"] == 1


def test_parquet_time_beyond_year_9999_is_one_frame_error(tmp_path):
    img = rf.png_bytes(np.full((6, 6), 9, np.uint8))
    p = tmp_path / "t.parquet"
    times = pa.array([0, 10**13, 86_400], pa.timestamp("s"))
    pq.write_table(pa.table({"image": [img] * 3, "time": times, "label": [0, 1, 2]}), p)
    items = list(read_frames(str(p)))
    good, bad = _split(items)
    assert [f.index for f in good] == [0, 2] and [f.label for f in good] == [0, 2]
    assert good[1].time == datetime(1970, 1, 2, tzinfo=timezone.utc)
    assert [b.index for b in bad] == [1] and "outside the representable range" in bad[0].reason
    kinds = _kinds(_rows(p))
    assert len(kinds["frame"]) == 2 and len(kinds["error"]) == 1 and "fail" not in kinds


def test_parquet_wrongly_typed_cells_are_row_errors(tmp_path):
    img = rf.png_bytes(np.full((6, 6), 9, np.uint8))
    # a table whose first binary column is the image, and whose label is a list: no crash
    p = tmp_path / "w.parquet"
    labels = pa.array([[1], None, [2, 3]], pa.list_(pa.int64()))
    pq.write_table(pa.table({"image": [img, None, b"\x89PNG junk"], "label": labels}), p)
    good, bad = _split(list(read_frames(str(p))))
    assert [f.index for f in good] == [0] and good[0].label is None
    assert [b.index for b in bad] == [1, 2] and "no image bytes" in bad[0].reason


def test_symlink_loop_and_dangling_link_are_corrupt_not_failed(tmp_path):
    a, b = tmp_path / "20140310_0600_a.pgm", tmp_path / "20140310_0600_b.pgm"
    os.symlink(b, a)
    os.symlink(a, b)
    with pytest.raises(CorruptFile, match="symlink loop"):
        list(read_frames(str(a)))
    (row, _) = _rows(a)
    assert row["kind"] == "corrupt" and "symlink loop" in row["reason"]
    d = tmp_path / "x.png"
    os.symlink(tmp_path / "nowhere.png", d)
    with pytest.raises(CorruptFile, match="dangling symlink"):
        list(read_frames(str(d)))


@pytest.mark.parametrize("name", ["f.pgm", "f.pgm.gz", "f.png", "f.parquet", "f.tar"])
def test_fifo_is_not_a_regular_file(tmp_path, name):
    p = tmp_path / name
    os.mkfifo(p)
    with pytest.raises(CorruptFile) as exc:  # and it does not block on the open
        list(read_frames(str(p)))
    assert exc.value.reason == "not a regular file: a FIFO (named pipe)"
    assert "0 bytes" not in exc.value.reason


def test_huge_pgm_comment_line_says_so(tmp_path, five):
    frames, _, raw = five
    p = tmp_path / "comment.pgm"
    p.write_bytes(b"P5\n#" + b"A" * (1 << 20) + b"\n4 4\n255\n" + bytes(16))
    (bad,) = list(read_frames(str(p)))
    assert isinstance(bad, FrameError)
    assert "comment line longer than 4096 bytes" in bad.reason and "AAAA" not in bad.reason
    q = tmp_path / "after.pgm"
    q.write_bytes(pgm_minute_bytes(frames[:2], T0) + b"P5\n#" + b"A" * (1 << 20))
    good, bad = _split(list(read_frames(str(q))))
    assert [f.index for f in good] == [0, 1] and "comment line longer" in bad[0].reason


def test_non_utf8_file_name_is_read_and_carried_as_escaped_text(tmp_path, five):
    from pipeline.storage import relative_path, safe_text

    frames, _, raw = five
    name = os.fsdecode(b"\xff\xfe_20140310.pgm")
    p = os.path.join(str(tmp_path), name)
    with open(p, "wb") as f:
        f.write(raw)
    assert safe_text(name) == "%FF%FE_20140310.pgm"
    assert relative_path(p, str(tmp_path)) == "%FF%FE_20140310.pgm"
    assert safe_text(b"caf\xc3\xa9\xff") == "café%FF" and safe_text("100%.pgm") == "100%.pgm"
    rows = _rows(p, rel=name)  # the FileTask escapes uri and rel, and opens the listed name
    kinds = _kinds(rows)
    assert len(kinds["frame"]) == 5 and set(kinds) == {"frame", "end"}
    assert {r["rel"] for r in rows} == {"%FF%FE_20140310.pgm"}
    assert {r["source"] for r in rows} == {os.path.join(str(tmp_path), "%FF%FE_20140310.pgm")}
    # a bad file with such a name is quarantined, not failed
    q = os.path.join(str(tmp_path), os.fsdecode(b"\xfe_bad.pgm"))
    with open(q, "wb") as f:
        f.write(b"GIF89a" + bytes(64))
    (row, _) = _rows(q)
    assert row["kind"] == "corrupt" and row["source"].endswith("%FE_bad.pgm")


def test_non_utf8_tar_member_names(tmp_path):
    img = rf.png_bytes(np.full((6, 6), 4, np.uint8))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for raw_name, data in [
            (b"\xff\xfe.png", img),
            (b"\xfa.txt", b"no image here"),
            (b"ok.png", img),
        ]:
            info = tarfile.TarInfo(os.fsdecode(raw_name))
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    p = tmp_path / "names.tar"
    p.write_bytes(buf.getvalue())
    good, bad = _split(list(read_frames(str(p))))
    assert [f.meta["key"] for f in good] == ["%FF%FE", "ok"]
    assert len(bad) == 1 and "'%FA'" in bad[0].reason and "no image" in bad[0].reason
    kinds = _kinds(_rows(p))
    assert len(kinds["frame"]) == 2 and "%FA" in kinds["error"][0]["reason"]


@pytest.mark.parametrize("kind", ["gnu-longname", "gnu-longlink", "pax"])
def test_tar_extended_header_claiming_100_mib_is_skipped_not_read(tmp_path, kind):
    good_img = np.full((8, 8), 7, np.uint8)
    p = tmp_path / "long.tar.gz"
    rf.hostile_tar_gz(p, 100 << 20, [("good.png", rf.png_bytes(good_img))], kind=kind)
    assert p.stat().st_size < 1 << 20  # a small file that claims more
    items, peak = _read_traced(p)
    good, bad = _split(items)
    assert peak < 8 << 20  # the claimed 100 MiB never sits in memory
    assert [f.meta["key"] for f in good] == ["good"]  # the image after it is read
    np.testing.assert_array_equal(good[0].pixels, good_img)
    assert len(bad) == 1 and bad[0].index == 0
    assert "'victim.png'" in bad[0].reason and "104857600 bytes" in bad[0].reason
    assert "MAX_TAR_HEADER_BYTES" in bad[0].reason and "no image" not in bad[0].reason


def test_tar_long_name_within_the_cap_still_works(tmp_path):
    img = np.full((4, 4), 2, np.uint8)
    name = "d/" + "n" * 300 + ".png"
    p = tmp_path / "ok.tar"
    with tarfile.open(p, "w", format=tarfile.GNU_FORMAT) as tf:
        data = rf.png_bytes(img)
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    (f,) = list(read_frames(str(p)))
    assert isinstance(f, Frame) and f.meta["member"] == name


def test_parquet_page_larger_than_the_cap_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "MAX_PARQUET_PAGE_BYTES", 4 << 20)
    img = rf.png_bytes(np.full((6, 6), 9, np.uint8))
    p = tmp_path / "blob.parquet"
    schema = pa.schema([("image", pa.binary()), ("label", pa.int64())])
    with pq.ParquetWriter(p, schema, compression="zstd") as w:
        w.write_table(pa.table({"image": [img], "label": [1]}, schema=schema))
        w.write_table(pa.table({"image": [b"\0" * (16 << 20)], "label": [2]}, schema=schema))
        w.write_table(pa.table({"image": [img, img], "label": [3, 0]}, schema=schema))
    assert p.stat().st_size < 64 << 10  # 16 MiB claimed by a few KB
    pool = pa.default_memory_pool()
    before = pool.bytes_allocated()
    items, peak = _read_traced(p)
    good, bad = _split(items)
    assert [(f.index, f.label) for f in good] == [(0, 1), (2, 3), (3, 0)]
    assert [b.index for b in bad] == [1]
    assert "row group 1" in bad[0].reason and "MAX_PARQUET_PAGE_BYTES" in bad[0].reason
    assert "16777" in bad[0].reason and "1 rows are skipped" in bad[0].reason
    assert peak < 4 << 20 and pool.bytes_allocated() - before < 4 << 20


def test_parquet_big_row_group_of_small_pages_is_read_in_batches(tmp_path, monkeypatch):
    # the chunk is larger than the page cap, its pages are not: read, in several batches
    monkeypatch.setattr(limits, "MAX_PARQUET_PAGE_BYTES", 128 << 10)
    monkeypatch.setattr(limits, "MAX_PARQUET_BATCH_BYTES", 32 << 10)
    sizes = []
    real = pq.ParquetFile.iter_batches

    def spy(self, batch_size=65536, **kw):
        for b in real(self, batch_size=batch_size, **kw):
            sizes.append(b.num_rows)
            yield b

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    rng = np.random.default_rng(3)
    imgs = [rf.png_bytes(rng.integers(0, 255, (64, 64), dtype=np.uint8)) for _ in range(60)]
    p = tmp_path / "big.parquet"
    pq.write_table(
        pa.table({"image": imgs, "label": list(range(60))}),
        p,
        data_page_size=64 << 10,
        compression="none",
        use_dictionary=False,
        write_batch_size=4,
    )
    md = pq.ParquetFile(p).metadata
    assert md.num_row_groups == 1 and md.row_group(0).column(0).total_uncompressed_size > 128 << 10
    items = list(read_frames(str(p)))
    assert [(f.index, f.label) for f in items] == [(i, i) for i in range(60)]
    assert len(sizes) > 4 and sum(sizes) == 60 and max(sizes) <= 8  # ~32 KiB a batch


def test_read_task_classifies_errors(tmp_path, five, monkeypatch):
    """Reader exceptions that are the file's fault -> corrupt (frames before kept); storage
    trouble -> fail; nothing escapes the read task."""
    import errno

    from pipeline.readers import base, pgm

    frames, _, raw = five
    p = tmp_path / "20211201_0930_synt_themis99_full.pgm"
    p.write_bytes(raw)
    real = pgm._frames

    def breaking(exc):
        def frames_then_raise(uri, so):
            it = real(uri, so)
            yield next(it)
            yield next(it)
            raise exc

        return frames_then_raise

    for exc, kind, words in [
        (TypeError("object of type 'int' has no len()"), "corrupt", "TypeError"),
        (OverflowError("date value out of range"), "corrupt", "OverflowError"),
        (UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates"), "corrupt", "Unicode"),
        (OSError(errno.ELOOP, "Too many levels of symbolic links"), "corrupt", "symlink loop"),
        (OSError("Not a gzipped file"), "corrupt", "unreadable data"),
        (ConnectionResetError(errno.ECONNRESET, "reset"), "fail", "ConnectionResetError"),
        (TimeoutError("read timed out"), "fail", "TimeoutError"),
        (OSError(errno.EIO, "I/O error"), "fail", "I/O error"),
        (PermissionError(errno.EACCES, "denied"), "fail", "PermissionError"),
    ]:
        monkeypatch.setattr(pgm, "_frames", breaking(exc))
        kinds = _kinds(_rows(p))
        assert len(kinds["frame"]) == 2, exc
        (row,) = kinds[kind]
        assert words in row["reason"], (exc, row["reason"])
        assert set(kinds) == {"frame", kind, "end"}

    infra = type("EndpointConnectionError", (Exception,), {"__module__": "botocore.exceptions"})
    assert base.classify_error(infra("unreachable"))[0] == "fail"
    assert base.classify_error(MemoryError())[0] == "corrupt"


@pytest.mark.parametrize(
    "value, number",
    [(b"42", 42), (b"\xb2", None), (b"12x", None), (b"1" * 19, None), (b"", None), (b"-3", None)],
)
def test_odd_mode_sequence_numbers_leave_the_frame_readable(tmp_path, value, number):
    """A latin-1 header may hold digits int() refuses ('\\xb2' is str.isdigit): no crash."""
    frame = np.arange(16, dtype=np.uint16).reshape(4, 4)
    head = b'P5\n#"Mode sequence number" ' + value + b"\n4 4\n65535\n"
    p = tmp_path / "20211201_0930_synt_themis99_full.pgm"
    p.write_bytes(head + frame.astype(">u2").tobytes())
    (f,) = list(read_frames(str(p)))
    assert isinstance(f, Frame) and f.meta["sequence"] == number
    np.testing.assert_array_equal(f.pixels, frame[::-1])
