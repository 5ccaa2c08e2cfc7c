"""Frames travel from read tasks as read (uint16 stays uint16), and one step makes model inputs
of them (pipeline.ingest.frame_rows)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pipeline.errors import BadInput
from pipeline.ingest import read as datasource
from pipeline.ingest.frame_rows import frame_arrays, model_inputs, pixel_columns, with_errors
from pipeline.ingest.read import FileTask, frame_bytes_hint, read_file_rows
from pipeline.ingest.rows import RowKind
from pipeline.model.preprocess import PreprocessConfig, check_pixels, preprocess_batch
from pipeline.readers import read_frames
from pipeline.synth import write_archive


@pytest.fixture(scope="module")
def minute_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    write_archive(str(root), 20, seed=4, fmt="pgm.gz", size=96)
    (path,) = [p for p in root.rglob("*.pgm.gz")]
    return str(path)


def test_read_tasks_only_decode(minute_file):
    frames = [f.pixels for f in read_frames(minute_file)]
    table = pa.concat_tables(read_file_rows(FileTask(minute_file, "m.pgm.gz"), rows_per_block=8))
    rows = table.to_pylist()
    assert [r["kind"] for r in rows] == [RowKind.FRAME] * 20 + [RowKind.END]
    assert table.schema.field("kind").type == pa.string()  # the enum's values, as text
    end = rows[-1]  # the file's read seconds in their own column, not in `reason`
    assert end["expected"] == 20 and end["reason"] is None and end["timings"]["read_s"] > 0
    assert {r["timings"] for r in rows[:20]} == {None}
    assert {r["dtype"] for r in rows[:20]} == {"<u2"} and rows[0]["shape"] == [96, 96]
    for r, f in zip(rows, frames, strict=False):
        assert f.dtype == np.uint16 and r["pixels"] == f.tobytes()  # as read: no arithmetic
    assert rows[-1]["pixels"] == b"" and rows[-1]["shape"] is None
    assert "x" not in table.column_names
    assert frame_bytes_hint([FileTask(minute_file, "m.pgm.gz")]) == 96 * 96 * 2


def test_blocks_are_cut_by_rows_and_by_bytes(minute_file, monkeypatch):
    task = FileTask(minute_file, "m.pgm.gz")
    assert [t.num_rows for t in read_file_rows(task, rows_per_block=8)] == [8, 8, 5]
    monkeypatch.setattr(datasource, "MAX_BLOCK_BYTES", 3 * 96 * 96 * 2)
    assert [t.num_rows for t in read_file_rows(task, rows_per_block=8)][:2] == [3, 3]


def test_pixel_columns_round_trip_mixed_frames():
    rng = np.random.default_rng(0)
    frames = [
        rng.integers(0, 65535, (5, 7), dtype=np.uint16),
        None,
        rng.integers(0, 255, (4, 4, 3), dtype=np.uint8),
        rng.random((3, 2)).astype(np.float32),
    ]
    table = pa.table(dict(zip(["pixels", "shape", "dtype"], pixel_columns(frames), strict=True)))
    got = frame_arrays(table, [0, 2, 3])
    for g, f in zip(got, [frames[0], frames[2], frames[3]], strict=True):
        assert g.dtype == f.dtype and g.shape == f.shape
        np.testing.assert_array_equal(g, f)
    bad = table.set_column(1, "shape", pa.array([[5, 8], None, [4, 4, 3], [3, 2]]))
    with pytest.raises(ValueError, match="bytes of pixels"):
        frame_arrays(bad, [0])


def _rows(frames):
    kind = [RowKind.FRAME.value if f is not None else RowKind.END.value for f in frames]
    cols = pixel_columns(frames)
    names = ["kind", "reason", "pixels", "shape", "dtype"]
    return pa.table(dict(zip(names, [kind, [None] * len(kind), *cols], strict=True)))


def test_model_inputs_are_the_preprocessed_frames_and_bad_frames_become_errors():
    rng = np.random.default_rng(1)
    good = [rng.integers(0, 4000, (40, 40), dtype=np.uint16) for _ in range(3)]
    nan = rng.random((40, 40)).astype(np.float32)
    nan[3, 3] = np.nan  # outside the field of view, off the levels' grid: refused all the same
    table = _rows([good[0], nan, good[1], None, good[2]])
    cfg = PreprocessConfig(size=16)
    inp = model_inputs(table, cfg, "cpu")
    assert inp.rows.tolist() == [0, 2, 4]
    np.testing.assert_array_equal(inp.x.numpy(), preprocess_batch(good, cfg))
    assert list(inp.errors) == [1] and "non-finite" in inp.errors[1]
    with pytest.raises(BadInput, match="non-finite"):
        check_pixels(nan)
    marked = with_errors(table, inp.errors).column("kind").to_pylist()
    assert marked == [RowKind.FRAME, RowKind.ERROR, RowKind.FRAME, RowKind.END, RowKind.FRAME]
    assert model_inputs(table, cfg, "cpu", rows=[2]).rows.tolist() == [2]
