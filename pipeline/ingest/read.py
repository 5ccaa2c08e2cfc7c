"""The read task of ingestion: one archive file's rows, one row per frame, as read.

Ray runs it as one read task per file (`pipeline.ingest.datasource.ArchiveDatasource`); `check`
and the training datasets run it in process, without importing Ray. Each read task opens one
archive file with `pipeline.readers.read_frames` and only decodes: a frame travels as read
(uint16 stays uint16) in the pixel columns of `pipeline.ingest.frame_rows`, and the encoder
actors preprocess it on their device (`pipeline.ingest.frame_rows.model_inputs`), so the read
CPUs do the reading. Read tasks yield Arrow blocks of `ROW_SCHEMA`, whose `kind` column holds a
`pipeline.ingest.rows.RowKind`:

    frame    a readable frame: `pixels`, `shape`, `dtype` (pipeline.ingest.frame_rows)
    error    a frame the reader rejected, or that preprocessing cannot take (its shape or
             dtype, `pipeline.model.preprocess.check_pixels`), with its `reason`: quarantined
    corrupt  nothing in the file could be read (CorruptFile)
    skip     the file is deliberately not ingested (SkipFile, e.g. THEMIS thumbnails)
    fail     reading failed for a reason that is not the input's fault (I/O, bug): the file
             is not committed, the job reports it and a re-run retries it
    end      the last row of a file: `expected` = how many rows of this file (all kinds
             except end) precede it, so the consumer knows when a file is complete, and
             `timings` = {read_s: the file's reading (decoding) seconds} (null on other rows)

What a file's rows come to (frames, quarantine lines, ok / quarantine / corrupt / ignored /
failed) is decided once, by `pipeline.ingest.rows.FileOutcome`.

A frame row's `meta` holds the header values that go into the shard's optional `meta` column
(`pipeline.ingest.frame_meta`: JSON text, null when the frame has none).

`seq` numbers the rows of one file 0, 1, 2, ...; a consumer that keys rows by (source, seq)
tolerates a read task that Ray retried after a worker died and that emits some rows twice.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipeline.ingest.frame_rows import PIXEL_COLUMNS, PIXEL_FIELDS, pixel_columns
from pipeline.ingest.rows import RowKind
from pipeline.storage import safe_text

log = logging.getLogger("aurorahash.ingest")

TIMINGS = pa.struct([("read_s", pa.float64())])  # an end row's seconds, reported, not used
ROW_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("rel", pa.string()),
        ("kind", pa.string()),
        ("seq", pa.int32()),
        ("frame", pa.int32()),
        ("site", pa.string()),
        ("time_us", pa.int64()),
        ("label", pa.int16()),
        ("reason", pa.string()),
        ("expected", pa.int32()),
        ("meta", pa.string()),
        ("timings", TIMINGS),
    ]
    + PIXEL_FIELDS
)
MAX_BLOCK_BYTES = 256 << 20  # pixel bytes per block at most, whatever the row count

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


@dataclass(frozen=True, slots=True)  # slots: a million of them in a backfill's plan
class FileTask:
    """One archive file. `uri` and `rel` are safe text (pipeline.storage.safe_text: bytes of
    the name that are not UTF-8 are written %XX), so rows, records, shards and logs can carry
    them; `path` is the name as listed (possibly surrogate-escaped), which is what is opened."""

    uri: str  # the archive file, as text
    rel: str  # its path relative to the archive root (frame ids, shard names), as text
    path: str = ""  # what the reader opens; defaults to `uri` as given

    def __post_init__(self):
        object.__setattr__(self, "path", self.path or self.uri)
        object.__setattr__(self, "uri", safe_text(self.uri))
        object.__setattr__(self, "rel", safe_text(self.rel))


def time_to_us(t) -> int | None:
    if t is None:
        return None
    if isinstance(t, np.datetime64):
        return int(t.astype("datetime64[us]").astype(np.int64))
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    d = t - _EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


class _Rows:
    """Accumulates rows of one file and cuts them into blocks of at most `rows_per_block` rows
    and about MAX_BLOCK_BYTES of pixels."""

    def __init__(self, task: FileTask, rows_per_block: int):
        self.task = task
        self.rows_per_block = rows_per_block
        self._reset()
        self.seq = 0

    def _reset(self) -> None:
        self.cols = {f.name: [] for f in ROW_SCHEMA if f.name not in PIXEL_COLUMNS}
        self.frames: list[np.ndarray | None] = []
        self.nbytes = 0

    def add(
        self,
        kind: RowKind,
        frame=None,
        site=None,
        time_us=None,
        label=None,
        reason=None,
        meta=None,
        pixels=None,
        timings=None,
    ):
        # every text field as safe text: an exception message or tar member name may hold
        # surrogate-escaped bytes, which Arrow cannot encode (and would fail the whole task)
        site = None if site is None else safe_text(site)
        reason = None if reason is None else safe_text(reason)
        c = self.cols
        c["source"].append(self.task.uri)
        c["rel"].append(self.task.rel)
        end = kind is RowKind.END
        c["kind"].append(kind.value)
        c["seq"].append(-1 if end else self.seq)
        c["frame"].append(-1 if frame is None else int(frame))
        c["site"].append(site)
        c["time_us"].append(time_us)
        c["label"].append(label)
        c["reason"].append(reason)
        c["expected"].append(self.seq if end else -1)
        c["meta"].append(meta)
        c["timings"].append(timings)
        self.frames.append(pixels)
        self.nbytes += 0 if pixels is None else pixels.nbytes
        if not end:
            self.seq += 1

    def full(self) -> bool:
        return len(self.frames) >= self.rows_per_block or self.nbytes >= MAX_BLOCK_BYTES

    def take(self) -> pa.Table | None:
        if not self.frames:
            return None
        arrays = [pa.array(self.cols[f.name], f.type) for f in ROW_SCHEMA if f.name in self.cols]
        t = pa.Table.from_arrays(arrays + pixel_columns(self.frames), schema=ROW_SCHEMA)
        self._reset()
        return t


def _label(v) -> int | None:
    if v is None:
        return None
    v = int(v)
    return v if -(2**15) <= v < 2**15 else None


def read_file_rows(
    task: FileTask,
    storage_options: dict | None = None,
    rows_per_block: int = 32,
) -> Iterator[pa.Table]:
    """The body of one read task (also usable without Ray): blocks of ROW_SCHEMA rows.

    Whatever the file holds, the task ends with its end row: an exception from the reader is
    classified by pipeline.readers.base.classify_error (the file's fault -> a corrupt row, with
    the frames already read kept; infrastructure -> a fail row), and one frame that no row can
    hold (its pixels or metadata) is an error row for that frame.
    """
    from pipeline.readers import FrameError, read_frames
    from pipeline.readers.base import classify_error

    rows = _Rows(task, rows_per_block)
    t_read = 0.0
    try:
        t0 = time.perf_counter()
        it = iter(read_frames(task.path, storage_options=storage_options or {}))
        while True:
            item = next(it, None)
            if item is None:
                break
            if isinstance(item, FrameError):
                rows.add(RowKind.ERROR, frame=item.index, reason=str(item.reason))
            else:
                _add_frame(rows, item)
            if rows.full():
                t_read += time.perf_counter() - t0
                yield rows.take()
                t0 = time.perf_counter()
        t_read += time.perf_counter() - t0
    except Exception as exc:
        kind, reason = classify_error(exc)
        kind = RowKind(kind)
        if kind is RowKind.FAIL:  # I/O trouble or a lost node: not committed, retried next run
            log.warning("reading %s failed: %s", task.uri, safe_text(reason))
        rows.add(kind, reason=reason)
    rows.add(RowKind.END, timings={"read_s": t_read})
    yield rows.take()


def _add_frame(rows: _Rows, item) -> None:
    """One decoded frame as a row; an error row when preprocessing could not take its
    pixels (shape, dtype) or no row can hold its metadata."""
    from pipeline.ingest import frame_meta
    from pipeline.model.preprocess import check_pixels

    try:
        pixels = check_pixels(item.pixels)
    except Exception as exc:  # the frame's content, not the job, is at fault
        rows.add(RowKind.ERROR, frame=item.index, reason=f"preprocess: {exc}")
        return
    try:
        fields = dict(
            site=None if item.site is None else str(item.site),
            time_us=time_to_us(item.time),
            label=_label(item.label),
            meta=frame_meta.to_json(item.meta),
        )
    except Exception as exc:  # metadata that no row can hold
        rows.add(RowKind.ERROR, frame=item.index, reason=f"metadata: {exc}")
    else:
        rows.add(RowKind.FRAME, frame=item.index, pixels=pixels, **fields)


def frame_bytes_hint(files: list[FileTask], storage_options: dict | None = None) -> int | None:
    """Bytes of the first frame that the first of `files` to yield one holds (None if none
    does): what a frame of the archive weighs, to size read blocks in bytes."""
    from pipeline.readers import FrameError, read_frames

    for f in files:
        try:
            for item in read_frames(f.path, storage_options=storage_options or {}):
                if not isinstance(item, FrameError):
                    return int(np.asarray(item.pixels).nbytes)
                break
        except Exception:  # the read task will say what is wrong with it
            continue
    return None
