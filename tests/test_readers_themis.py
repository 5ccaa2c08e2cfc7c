"""The readers on the real THEMIS sample files in ../shared/data/themis (read in place)."""

from __future__ import annotations

import gzip
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cdflib
import numpy as np
import pytest

from pipeline.readers import Frame, FrameError, SkipFile, list_archive, read_frames

THEMIS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "themis"
PGMS = sorted(p for p in THEMIS.glob("*.pgm*")) if THEMIS.is_dir() else []
ASF = THEMIS / "thg_l1_asf_gako_2011010617_v01.cdf"
AST = THEMIS / "thg_l1_ast_gako_20110505_v01.cdf"

pytestmark = pytest.mark.skipif(not THEMIS.is_dir(), reason="../shared/data/themis not present")


def _raw(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def _independent_rasters(data: bytes, w: int = 256, h: int = 256) -> list[np.ndarray]:
    """Simplest possible parse: each raster follows the first '\\n65535\\n' after the last."""
    out, pos = [], 0
    while True:
        i = data.find(b"\n65535\n", pos)
        if i < 0:
            return out
        start = i + len(b"\n65535\n")
        out.append(np.frombuffer(data[start : start + 2 * w * h], ">u2").reshape(h, w))
        pos = start + 2 * w * h


def test_sample_files_are_there():
    assert len(PGMS) == 6
    assert ASF.is_file() and AST.is_file()


def test_list_archive_lists_every_sample_file():
    files = list_archive(str(THEMIS))
    assert [Path(f).name for f in files] == sorted(p.name for p in THEMIS.iterdir())


@pytest.mark.parametrize("path", PGMS, ids=lambda p: p.name)
def test_pgm_minute_file(path: Path):
    items = list(read_frames(str(path)))
    assert all(isinstance(i, Frame) for i in items)
    assert len(items) == 20
    assert [f.index for f in items] == list(range(20))
    minute = datetime.strptime(path.name[:13], "%Y%m%d_%H%M").replace(tzinfo=timezone.utc)
    raw = _raw(path)
    stamps = re.findall(rb'#"Image request start" (\S+ \S+) UTC', raw)
    assert len(stamps) == 20
    for k, (f, stamp) in enumerate(zip(items, stamps, strict=True)):
        assert f.site == "gill"
        assert f.meta["imager"] == "themis19"
        assert f.meta["latitude"] == pytest.approx(56.3539)
        assert f.meta["longitude"] == pytest.approx(-94.6557)
        assert f.pixels.shape == (256, 256) and f.pixels.dtype == np.uint16
        assert f.label is None
        # the exact header timestamp, as an aware UTC datetime
        expected = datetime.strptime(stamp.decode(), "%Y-%m-%d %H:%M:%S.%f")
        assert f.time == expected.replace(tzinfo=timezone.utc)
        # 3 s cadence from the minute in the file name
        assert abs((f.time - minute) - timedelta(seconds=3 * k)) < timedelta(seconds=0.2)
    rasters = _independent_rasters(raw)
    assert len(rasters) == 20
    # the community orientation: the file's rows bottom first (docs/READERS.md)
    np.testing.assert_array_equal(items[0].pixels, rasters[0][::-1])
    np.testing.assert_array_equal(items[19].pixels, rasters[19][::-1])
    assert items[0].pixels.flags.c_contiguous
    # per-frame header values kept for the shard's meta column
    seqs = [int(v) for v in re.findall(rb'#"Mode sequence number" (\d+)', raw)]
    reads = re.findall(rb'#"Image readout start" (\S+ \S+) UTC', raw)
    options = re.findall(rb'#"Exposure options" ([^\n]*)', raw)
    assert len(seqs) == len(reads) == len(options) == 20
    assert [f.meta["sequence"] for f in items] == seqs
    assert seqs == list(range(seqs[0], seqs[0] + 20))  # no dropped frame in these minutes
    for f, r, o in zip(items, reads, options, strict=True):
        t = datetime.strptime(r.decode(), "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=timezone.utc)
        assert datetime.fromisoformat(f.meta["readout_start"]) == t
        assert timedelta(0) < t - f.time < timedelta(seconds=1.5)
        assert f.meta["exposure_options"] == o.decode().strip()


def test_asf_cdf_every_record_with_epoch():
    items = list(read_frames(str(ASF)))
    assert len(items) == 23 and all(isinstance(i, Frame) for i in items)
    cdf = cdflib.CDF(str(ASF))
    ref_pixels = cdf.varget("thg_asf_gako")
    ref_times = cdflib.cdfepoch.to_datetime(cdf.varget("thg_asf_gako_epoch"))
    ref_ends = cdf.varget("thg_asf_gako_tend")  # seconds since 1970
    for k, f in enumerate(items):
        assert f.index == k
        assert f.site == "gako"
        assert f.pixels.shape == (256, 256) and f.pixels.dtype == np.uint16
        assert f.time.tzinfo is not None
        assert datetime(2011, 1, 6, 17, tzinfo=timezone.utc) <= f.time
        assert f.time < datetime(2011, 1, 6, 18, tzinfo=timezone.utc)
        ref = np.datetime64(ref_times[k], "us").item().replace(tzinfo=timezone.utc)
        assert abs(f.time - ref) < timedelta(microseconds=2)
        end = datetime.fromisoformat(f.meta["exposure_end"])
        assert abs(end.timestamp() - ref_ends[k]) < 1e-5
        assert timedelta(seconds=0.5) < end - f.time < timedelta(seconds=1.5)
    # flipped top to bottom like the PGM frames (docs/READERS.md: checked against the sky)
    np.testing.assert_array_equal(items[7].pixels, ref_pixels[7][::-1])
    assert not np.array_equal(ref_pixels[7], ref_pixels[7][::-1])
    assert all(b.time > a.time for a, b in zip(items, items[1:], strict=False))


def test_ast_thumbnails_are_skipped_with_a_reason():
    with pytest.raises(SkipFile, match="thumbnail"):
        list(read_frames(str(AST)))


def test_read_through_file_uri():
    items = list(read_frames("file://" + str(PGMS[0])))
    assert len(items) == 20 and not any(isinstance(i, FrameError) for i in items)


@pytest.mark.parametrize("path", [PGMS[0], PGMS[-1]], ids=lambda p: p.name)
def test_pgm_frames_equal_pyucalgarysrs(path: Path):
    """UCalgary's reader is the community's reference: the same pixels, the same way up, and
    the same times (it gives naive UTC datetimes)."""
    from pyucalgarysrs.data.read import ReadManager

    ref = ReadManager().read_themis(str(path), quiet=True)
    assert not ref.problematic_files
    ours = list(read_frames(str(path)))
    assert ref.data.shape == (256, 256, len(ours)) == (256, 256, 20)
    for k, f in enumerate(ours):
        np.testing.assert_array_equal(f.pixels, ref.data[:, :, k])
        assert f.time == ref.timestamp[k].replace(tzinfo=timezone.utc)
        assert f.meta["sequence"] == int(ref.metadata[k]["Mode sequence number"])


def test_record_times_of_the_thumbnail_file_with_a_virtual_epoch():
    """AST: one epoch record (the virtual comp_themis_epoch, stored as 0) for 1,075 frames."""
    from pipeline.readers.cdf import record_times

    cdf = cdflib.CDF(str(AST))
    n = cdf.varinq("thg_ast_gako").Last_Rec + 1
    assert n == 1075 and cdf.varinq("thg_ast_gako_epoch").Last_Rec == 0
    starts, ends = record_times(cdf, "thg_ast_gako", n)
    seconds = cdf.varget("thg_ast_gako_time")  # independent: seconds since 1970 (CATDESC)
    assert len(starts) == n and None not in starts
    assert [t.timestamp() for t in starts] == pytest.approx(list(seconds), abs=1e-6)
    assert starts[0] == datetime(2011, 5, 5, 9, 14, 15, tzinfo=timezone.utc)
    steps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
    assert all(s > 0 and s % 3 == 0 for s in steps)  # the 3 s cadence, a few exposures missing
    assert steps.count(3.0) > 0.95 * len(steps)
    assert ends == [None] * n  # the thumbnail file has no thg_ast_gako_tend


def test_asf_with_a_virtual_epoch_is_timed_by_its_record_times(tmp_path):
    """The thumbnail file's records and times, written as an ASF file with its one-record
    virtual epoch: the reader falls back to thg_asf_SITE_time (start) and _tend (end)."""
    from reader_fixtures import write_asf_cdf

    cdf = cdflib.CDF(str(AST))
    frames = cdf.varget("thg_ast_gako", startrec=0, endrec=59)
    seconds = cdf.varget("thg_ast_gako_time")[:60]
    base = datetime(1970, 1, 1, tzinfo=timezone.utc)
    starts = [base + timedelta(seconds=float(s)) for s in seconds]
    ends = [t + timedelta(seconds=1) for t in starts]
    p = tmp_path / "thg_l1_asf_gako_2011050509_v01.cdf"
    write_asf_cdf(p, frames, starts, site="gako", virtual_epoch=True, ends=ends)
    assert cdflib.CDF(str(p)).varinq("thg_asf_gako_epoch").Last_Rec == 0
    items = list(read_frames(str(p)))
    assert [f.time for f in items] == starts
    assert [datetime.fromisoformat(f.meta["exposure_end"]) for f in items] == ends
    np.testing.assert_array_equal(items[5].pixels, frames[5][::-1])
