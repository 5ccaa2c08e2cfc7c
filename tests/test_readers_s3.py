"""Readers and the synthetic archive writer through s3:// (a moto server on 127.0.0.1)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.readers import Frame, SkipFile, list_archive, read_frames
from pipeline.synth import generate, write_archive

THEMIS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "themis"

pytestmark = pytest.mark.integration


@pytest.mark.skipif(not THEMIS.is_dir(), reason="../shared/data/themis not present")
def test_real_themis_files_through_s3(s3):
    bucket = s3.bucket("themis")
    s3.upload_dir(THEMIS, bucket, "raw")
    so = s3.storage_options
    files = list_archive(f"s3://{bucket}/raw", so)
    assert len(files) == 8 and all(f.startswith(f"s3://{bucket}/raw/") for f in files)
    counts = {}
    for uri in files:
        try:
            items = list(read_frames(uri, so))
        except SkipFile:
            counts[Path(uri).name] = "skipped"
            continue
        assert all(isinstance(i, Frame) for i in items)
        counts[Path(uri).name] = len(items)
        local = list(read_frames(str(THEMIS / Path(uri).name)))
        np.testing.assert_array_equal(items[-1].pixels, local[-1].pixels)
        assert [f.time for f in items] == [f.time for f in local]
    assert counts["thg_l1_asf_gako_2011010617_v01.cdf"] == 23
    assert counts["thg_l1_ast_gako_20110505_v01.cdf"] == "skipped"
    assert counts["20140310_0605_gill_themis19_full.pgm"] == 20
    # modification times come with the same listing (ingest re-reads files newer than their shard)
    times = list_archive(f"s3://{bucket}/raw", so, detail=True)
    assert list(times) == files
    assert all(isinstance(t, float) and abs(t - time.time()) < 3600 for t in times.values())


def test_synthetic_archive_written_to_and_read_from_s3(s3):
    bucket = s3.bucket("synth")
    so = s3.storage_options
    s = write_archive(f"s3://{bucket}/arch", 25, seed=2, fmt="pgm.gz", size=32, storage_options=so)
    assert s["files"] == 2
    files = list_archive(f"s3://{bucket}/arch", so)
    got = [i for f in files for i in read_frames(f, so)]
    frames, labels = generate(25, size=32, seed=2)
    np.testing.assert_array_equal(np.stack([f.pixels for f in got]), frames)
    assert [f.label for f in got] == labels.tolist()
