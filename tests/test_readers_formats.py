"""Image files, Parquet tables and tar shards read into the Frame contract; the registry."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import reader_fixtures as rf
from PIL import Image

from pipeline.readers import (
    Frame,
    FrameError,
    format_of,
    list_archive,
    read_frames,
    reader_for,
)
from pipeline.synth import write_png

CIFAR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10"
T = datetime(2022, 3, 4, 5, 6, 7, 500000, tzinfo=timezone.utc)


def _one(uri) -> Frame:
    items = list(read_frames(str(uri)))
    assert len(items) == 1 and isinstance(items[0], Frame), items
    return items[0]


def test_png_16bit_with_text_chunks(tmp_path):
    px = (np.arange(40 * 30, dtype=np.uint32).reshape(30, 40) * 50).astype(np.uint16)
    p = write_png(str(tmp_path / "f.png"), px, label=2, site="abcd", time=T)
    f = _one(p)
    assert f.pixels.dtype == np.uint16 and f.pixels.shape == (30, 40)
    np.testing.assert_array_equal(f.pixels, px)
    assert (f.label, f.site, f.time) == (2, "abcd", T)


def test_png_8bit_grey_and_jpeg_colour(tmp_path):
    grey = np.tile(np.arange(16, dtype=np.uint8) * 16, (8, 1))
    Image.fromarray(grey).save(tmp_path / "g.png")
    f = _one(tmp_path / "g.png")
    assert f.pixels.dtype == np.uint8 and f.pixels.shape == (8, 16)
    np.testing.assert_array_equal(f.pixels, grey)
    assert f.label is None and f.site is None and f.time is None
    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(tmp_path / "c.jpg", quality=95)
    f = _one(tmp_path / "c.jpg")
    assert f.pixels.dtype == np.uint8 and f.pixels.shape == (16, 24, 3)
    assert abs(int(f.pixels[..., 0].mean()) - 200) < 4 and f.pixels[..., 1].mean() < 10


def test_tiff_16bit_and_multipage(tmp_path):
    a = (np.arange(100, dtype=np.uint16).reshape(10, 10) * 600).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / "a.tif")
    np.testing.assert_array_equal(_one(tmp_path / "a.tif").pixels, a)
    pages = [Image.fromarray(a + k) for k in range(3)]
    pages[0].save(tmp_path / "stack.tiff", save_all=True, append_images=pages[1:])
    items = list(read_frames(str(tmp_path / "stack.tiff")))
    assert [f.index for f in items] == [0, 1, 2]
    for k, f in enumerate(items):
        np.testing.assert_array_equal(f.pixels, a + k)


def test_rgba_and_palette_become_rgb(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 1] = 77
    rgba[..., 3] = 255
    Image.fromarray(rgba).save(tmp_path / "a.png")
    f = _one(tmp_path / "a.png")
    assert f.pixels.shape == (4, 4, 3) and (f.pixels[..., 1] == 77).all()


@pytest.mark.skipif(not CIFAR.is_dir(), reason="../shared/data/cifar10 not present")
def test_cifar10_parquet_rows(tmp_path):
    src = CIFAR / "test-00000-of-00001.parquet"
    first = next(pq.ParquetFile(src).iter_batches(batch_size=40)).to_pydict()
    it = read_frames(str(src))
    items = [next(it) for _ in range(40)]
    it.close()
    for k, f in enumerate(items):
        assert isinstance(f, Frame) and f.index == k
        assert f.pixels.shape == (32, 32, 3) and f.pixels.dtype == np.uint8
        assert f.label == first["label"][k] and f.meta["id"] == first["id"][k]
        expected = np.asarray(Image.open(io.BytesIO(first["image"][k])).convert("RGB"))
        np.testing.assert_array_equal(f.pixels, expected)


def test_parquet_struct_image_column_and_class_names(tmp_path):
    import pyarrow as pa

    img = np.full((6, 6), 1234, np.uint16)
    table = pa.table(
        {
            "img": pa.array(
                [{"bytes": rf.png_bytes(img), "path": "x.png"}] * 2,
                pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
            ),
            "label": ["radial_corona", "no_such_class"],
            "site": ["fykn", "fykn"],
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    items = list(read_frames(str(tmp_path / "t.parquet")))
    assert [f.label for f in items] == [2, None]
    assert items[0].site == "fykn" and items[0].pixels.dtype == np.uint16


def test_tar_gz_webdataset_shard(tmp_path):
    imgs = [np.full((5, 7), 10 * k, np.uint8) for k in range(3)]
    rf.make_tar(
        tmp_path / "s.tar",
        [
            ("a/000.jpg", rf.png_bytes(imgs[0])),  # content decides, not the extension
            ("a/000.cls", b"1"),
            ("a/000.json", b"{}"),
            ("a/001.png", rf.png_bytes(imgs[1])),
            ("a/002.seg.png", rf.png_bytes(imgs[2])),
            ("a/002.cls", b"arc"),
        ],
    )
    import gzip

    (tmp_path / "s.tar.gz").write_bytes(gzip.compress((tmp_path / "s.tar").read_bytes()))
    for name in ("s.tar", "s.tar.gz"):
        items = list(read_frames(str(tmp_path / name)))
        assert [type(i) for i in items] == [Frame] * 3
        assert [f.label for f in items] == [1, None, 0]
        assert [f.meta["key"] for f in items] == ["a/000", "a/001", "a/002"]
        for k, f in enumerate(items):
            np.testing.assert_array_equal(f.pixels, imgs[k])


def test_registry_and_listing(tmp_path):
    for name in (
        "x/20200101_0600_synt_themis99_full.pgm.gz",
        "x/20200101_0601_synt_themis99_full.pgm",
        "x/a.pgm.bz2",
        "x/thg_l1_asf_gako_2011010617_v01.cdf",
        "x/p.png",
        "x/q.JPG",
        "x/r.tiff",
        "x/t.parquet",
        "x/s.tar",
        "x/README.txt",
        "x/_quarantine/bad.pgm",
        "x/.tmp-1.pgm.gz",
        "x/sub/.hidden/y.png",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    files = [Path(f).relative_to(tmp_path / "x").as_posix() for f in list_archive(tmp_path / "x")]
    assert files == sorted(
        [
            "20200101_0600_synt_themis99_full.pgm.gz",
            "20200101_0601_synt_themis99_full.pgm",
            "a.pgm.bz2",
            "thg_l1_asf_gako_2011010617_v01.cdf",
            "p.png",
            "q.JPG",
            "r.tiff",
            "t.parquet",
            "s.tar",
        ]
    )
    assert format_of("s3://b/k/a.pgm.gz") == "themis-pgm"
    assert format_of("a.tgz") == "tar" and format_of("a.cdf") == "themis-cdf"
    assert reader_for("notes.txt") is None


def test_pgm_bz2(tmp_path):
    import bz2

    from pipeline.synth import generate, pgm_minute_bytes

    frames, labels = generate(3, size=24, seed=4)
    (tmp_path / "m.pgm.bz2").write_bytes(bz2.compress(pgm_minute_bytes(frames, T, labels=labels)))
    items = list(read_frames(str(tmp_path / "m.pgm.bz2")))
    assert not any(isinstance(i, FrameError) for i in items)
    np.testing.assert_array_equal(np.stack([f.pixels for f in items]), frames)


def test_errors_and_frames_pickle():
    """Ray moves read results between processes: every item type must survive pickling."""
    import pickle

    from pipeline.readers import CorruptFile, SkipFile

    for e in (
        FrameError("s3://b/f.pgm", 3, "truncated"),
        CorruptFile("f", "empty"),
        SkipFile("f", "x"),
    ):
        back = pickle.loads(pickle.dumps(e))
        assert type(back) is type(e) and str(back) == str(e) and back.reason == e.reason
    f = Frame(1, np.zeros((2, 2), np.uint16), "gill", T, 2, {"imager": "themis19"})
    back = pickle.loads(pickle.dumps(f))
    assert back.time == T and back.meta == f.meta and (back.pixels == f.pixels).all()
