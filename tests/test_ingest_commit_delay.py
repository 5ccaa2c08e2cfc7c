"""A file with many frames does not hold back the shards of the small files beside it (issue 12:
no shard of any other file for 146 s while one 10,000-frame file was being encoded).

Real Ray (the module's local instance, 2 CPUs, one encoder actor), real PGM files. The big file
(1,500 frames) comes first by path, so the job before this fix read it first, inside the
encoder actor (Ray Data fused the read into the actor: one call for the whole file), and every
small file waited for it. Now reads are separate tasks, small files are read first and encoder
calls take one block of one file. Not covered: a file that is small in bytes but holds many
frames (a gzip of constant frames); its rows can still queue ahead of later files' rows.
"""

from __future__ import annotations

import datetime as dt
import os

import numpy as np
import pytest
from ingest_helpers import make_model

from pipeline.ingest.config import IngestConfig
from pipeline.ingest.driver import run_ingest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIG_FRAMES = 1500
SMALL_FILES = 6


def make_archive(root, big_frames: int = BIG_FRAMES, small_files: int = SMALL_FILES):
    """(big file's rel path, small files' rel paths) under root."""
    from pipeline.synth import write_pgm_minute

    root.mkdir(parents=True, exist_ok=True)
    t0 = dt.datetime(2014, 3, 10, 0, 0, tzinfo=dt.timezone.utc)
    rng = np.random.default_rng(0)
    big = rng.integers(0, 60000, size=(big_frames, 64, 64), dtype=np.uint16)
    big_uri = write_pgm_minute(str(root / "20140310_0000_big_themis99_full.pgm"), big, t0)
    small = []
    for k in range(small_files):
        frames = rng.integers(0, 60000, size=(20, 64, 64), dtype=np.uint16)
        name = f"20140310_01{k:02d}_smal_themis99_full.pgm"
        write_pgm_minute(str(root / name), frames, t0 + dt.timedelta(hours=1, minutes=k))
        small.append(name)
    assert os.path.getsize(big_uri) > max(os.path.getsize(root / s) for s in small)
    return os.path.basename(big_uri), small


def test_small_files_are_committed_while_a_big_file_is_still_encoding(ray_local, tmp_path):
    model = make_model(tmp_path / "model", size=64, bits=32)
    big, small = make_archive(tmp_path / "src")
    out = tmp_path / "out"
    s = run_ingest(IngestConfig(source=str(tmp_path / "src"), out=str(out), model=model))
    assert s["files_done"] == 1 + SMALL_FILES and s["files_failed"] == 0
    assert s["frames"] == BIG_FRAMES + 20 * SMALL_FILES

    def committed(rel):  # shards are written to a temp name and renamed: mtime ~ commit time
        return (out / s["model"] / (rel + ".parquet")).stat().st_mtime

    t_big = committed(big)
    t_small = sorted(committed(r) for r in small)
    gaps = [round(t_big - t, 2) for t in t_small]
    # every small file's shard exists before the big file's (before the fix: all at its end)
    assert t_small[-1] < t_big, (gaps, s)
    # and all but one long before, while the big file (~93% of the frames, >= 5 s of encoding
    # on one CPU actor) is still being encoded. The exception allowed: with several read slots
    # (read_cpus), a small file read beside the big file's start can queue behind its rows
    assert sum(g > 3.0 for g in gaps) >= SMALL_FILES - 1, (gaps, s)
