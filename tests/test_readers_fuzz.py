"""Seeded byte-level mutations of every format: readers yield Frames / FrameErrors or raise
CorruptFile / SkipFile, and nothing else (no stray exception types that would crash a worker)."""

from __future__ import annotations

import bz2
import gzip
import io
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import reader_fixtures as rf

from pipeline.readers import CorruptFile, Frame, FrameError, SkipFile, read_frames
from pipeline.synth import generate, pgm_minute_bytes, png_bytes

T0 = datetime(2020, 1, 1, tzinfo=timezone.utc)
TRIALS = 40


def _seeds(tmp_path) -> dict[str, bytes]:
    frames, labels = generate(3, size=16, seed=1)
    raw = pgm_minute_bytes(frames, T0, labels=labels)
    rf.write_asf_cdf(tmp_path / "c.cdf", frames, [T0] * 3)
    buf = io.BytesIO()
    pq.write_table(pa.table({"image": [png_bytes(f) for f in frames], "label": labels}), buf)
    rf.make_tar(tmp_path / "t.tar", [(f"{k}.png", png_bytes(frames[k])) for k in range(3)])
    return {
        "x.pgm": raw,
        "x.pgm.gz": gzip.compress(raw),
        "x.pgm.bz2": bz2.compress(raw),
        "thg_l1_asf_x_2020010100_v01.cdf": (tmp_path / "c.cdf").read_bytes(),
        "x.parquet": buf.getvalue(),
        "x.tar": (tmp_path / "t.tar").read_bytes(),
        "x.png": png_bytes(frames[0], label=labels[0], site="synt", time=T0),
    }


def _mutate(rng, data: bytes) -> bytes:
    b = bytearray(data)
    op = rng.integers(0, 3)
    if op == 0:  # flip bytes
        for _ in range(rng.integers(1, 8)):
            b[rng.integers(0, len(b))] = rng.integers(0, 256)
    elif op == 1:  # truncate
        b = b[: rng.integers(0, len(b))]
    else:  # insert junk
        i = rng.integers(0, len(b))
        b = b[:i] + rng.integers(0, 256, rng.integers(1, 50)).astype(np.uint8).tobytes() + b[i:]
    return bytes(b)


@pytest.mark.parametrize(
    "name",
    [
        "x.pgm",
        "x.pgm.gz",
        "x.pgm.bz2",
        "thg_l1_asf_x_2020010100_v01.cdf",
        "x.parquet",
        "x.tar",
        "x.png",
    ],
)
def test_mutated_files_fail_only_in_the_documented_ways(tmp_path, name):
    data = _seeds(tmp_path)[name]
    rng = np.random.default_rng(sum(name.encode()))
    path = tmp_path / name
    outcomes = set()
    for _ in range(TRIALS):
        path.write_bytes(_mutate(rng, data))
        try:
            for item in read_frames(str(path)):
                assert isinstance(item, (Frame, FrameError)), type(item)
                outcomes.add(type(item).__name__)
        except (CorruptFile, SkipFile) as exc:
            assert exc.reason
            outcomes.add(type(exc).__name__)
    assert outcomes  # something was read or refused every time
