"""The read-row protocol (pipeline.ingest.rows): every row kind, the one per-file reducer, and the
consumers that decide on a file through it (check, the in-process read, the committer)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from ingest_helpers import THEMIS

from pipeline.ingest.local_read import _read_files, file_rows
from pipeline.ingest.read import ROW_SCHEMA, FileTask
from pipeline.ingest.rows import FileOutcome, Problem, RowKind, Verdict, reduce_file
from pipeline.ingest.vet import STATUS_ORDER, check_file
from pipeline.model.preprocess import PreprocessConfig

GOOD = "20140310_0601_gill_themis19_full.pgm.gz"


def _row(kind, frame=-1, reason=None, **more):
    return {"kind": kind.value, "frame": frame, "reason": reason, **more}


def test_kinds_and_verdicts_are_the_column_strings():
    assert [k.value for k in RowKind] == ["frame", "error", "corrupt", "skip", "fail", "end"]
    assert RowKind("frame") is RowKind.FRAME and RowKind.FRAME == "frame"
    assert str(RowKind.END) == "end" and str(Verdict.IGNORED) == "ignored"
    assert sorted(STATUS_ORDER) == sorted(v.value for v in Verdict)
    assert pa.array([RowKind.ERROR], ROW_SCHEMA.field("kind").type).to_pylist() == ["error"]
    with pytest.raises(ValueError):
        RowKind("frames")


def test_every_kind_reduced_in_row_order():
    rows = [
        _row(RowKind.FRAME, 0, meta="a"),
        _row(RowKind.ERROR, 1, "not an image"),
        _row(RowKind.FRAME, 0, meta="b"),  # a second frame 0: the first one is kept
        _row(RowKind.ERROR, -1),  # no frame index, no reason: "error"
        _row(RowKind.FRAME, 2),
        _row(RowKind.CORRUPT, -1, "truncated"),
        _row(RowKind.END),
    ]
    out = FileOutcome()
    assert [out.add(r) for r in rows] == [RowKind(r["kind"]) for r in rows]
    assert [(r["frame"], r.get("meta")) for r in out.frames] == [(0, "a"), (2, None)]
    assert out.problems == [
        Problem(1, "not an image"),
        Problem(0, "duplicate frame index in file"),
        Problem(None, "error"),
        Problem(None, "truncated"),
    ]
    assert out.corrupt and out.n_problems == 4 and out.verdict is Verdict.CORRUPT
    assert out.stop is None and out.reason is None


@pytest.mark.parametrize(
    "kinds, dropped, verdict",
    [
        ([], 0, Verdict.OK),
        ([RowKind.FRAME, RowKind.END], 0, Verdict.OK),
        ([RowKind.FRAME, RowKind.ERROR], 0, Verdict.QUARANTINE),
        ([RowKind.FRAME], 3, Verdict.QUARANTINE),  # problems counted past the committer's cap
        ([RowKind.FRAME, RowKind.CORRUPT], 0, Verdict.CORRUPT),
        ([RowKind.ERROR, RowKind.CORRUPT, RowKind.FAIL], 0, Verdict.FAILED),
        ([RowKind.FRAME, RowKind.SKIP], 0, Verdict.IGNORED),
        ([RowKind.FAIL, RowKind.SKIP], 0, Verdict.IGNORED),  # skip before fail, in any order
    ],
)
def test_verdicts(kinds, dropped, verdict):
    out = reduce_file([_row(k, i, f"{k.value} {i}") for i, k in enumerate(kinds)], dropped)
    assert out.verdict is verdict
    assert out.n_problems == dropped + sum(k in (RowKind.ERROR, RowKind.CORRUPT) for k in kinds)


def test_a_stopped_file_keeps_its_first_reason_as_given():
    out = reduce_file([_row(RowKind.FAIL, reason="io"), _row(RowKind.FAIL, reason="again")])
    assert out.stop == (RowKind.FAIL, "io") and out.reason == "io"
    out = reduce_file([_row(RowKind.FAIL, reason="io"), _row(RowKind.SKIP)])
    assert out.stop == (RowKind.SKIP, None) and out.reason is None


def test_check_and_the_training_read_agree_with_the_reducer(tmp_path):
    """A truncated minute file: its frames before the cut, one problem; `check` and the
    in-process read (training, queries) report exactly what the reducer makes of its rows."""
    data = (THEMIS / GOOD).read_bytes()
    path = tmp_path / GOOD
    path.write_bytes(data[: len(data) * 6 // 10])
    task, cfg = FileTask(str(path), GOOD), PreprocessConfig(size=16)
    out = reduce_file(file_rows(task, cfg, {}))
    assert out.verdict is Verdict.QUARANTINE and 0 < len(out.frames) < 20
    assert all(r["x"].shape == (1, 16, 16) for r in out.frames)

    entry = check_file(task, cfg.to_dict(), {}, max_reasons=5)
    assert (entry["status"], entry["frames"]) == (out.verdict.value, len(out.frames))
    assert entry["quarantined"] == out.n_problems == sum(entry["reasons"].values())

    frames = _read_files(([(str(path), GOOD)], cfg.to_dict(), {}, (1, 16, 16)))
    assert list(frames.ids) == [f"{GOOD}#{r['frame']}" for r in out.frames]
    assert frames.skipped == out.n_problems
