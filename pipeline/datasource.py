"""Ray Data source for archive files: one read task per file, one row per frame, preprocessed.

Each read task opens one archive file with `pipeline.readers.read_frames`, runs the shared
`pipeline.preprocess.preprocess` on every frame (so only the small model input travels through
the object store, not the raw 16-bit frame) and yields Arrow blocks of `ROW_SCHEMA`:

    kind="frame"  a readable frame; `x` holds its preprocessed float32 (C, S, S) array as bytes
    kind="error"  a frame the reader or preprocessing rejected (`reason`): quarantined downstream
    kind="corrupt" nothing in the file could be read (CorruptFile)
    kind="skip"   the file is deliberately not ingested (SkipFile, e.g. THEMIS thumbnails)
    kind="fail"   reading failed for a reason that is not the input's fault (I/O, bug): the file
                  is not committed, the job reports it and a re-run retries it
    kind="end"    the last row of a file: `expected` = how many rows of this file (all kinds
                  except "end") precede it, so the consumer knows when a file is complete

A frame row's `meta` holds the header values that go into the shard's optional `meta` column
(`pipeline.frame_meta`: JSON text, null when the frame has none).

`seq` numbers the rows of one file 0, 1, 2, ...; a consumer that keys rows by (source, seq)
tolerates a read task that Ray retried after a worker died and that emits some rows twice.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from pipeline.storage import safe_text

log = logging.getLogger("aurorahash.ingest")

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
        ("x", pa.binary()),
    ]
)

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


@dataclass(frozen=True)
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
    """Accumulates rows of one file and cuts them into blocks."""

    def __init__(self, task: FileTask, rows_per_block: int):
        self.task = task
        self.rows_per_block = rows_per_block
        self.cols = {f.name: [] for f in ROW_SCHEMA}
        self.seq = 0

    def add(
        self, kind, frame=None, site=None, time_us=None, label=None, reason=None, meta=None, x=None
    ):
        # every text field as safe text: an exception message or tar member name may hold
        # surrogate-escaped bytes, which Arrow cannot encode (and would fail the whole task)
        site = None if site is None else safe_text(site)
        reason = None if reason is None else safe_text(reason)
        c = self.cols
        c["source"].append(self.task.uri)
        c["rel"].append(self.task.rel)
        c["kind"].append(kind)
        c["seq"].append(self.seq if kind != "end" else -1)
        c["frame"].append(-1 if frame is None else int(frame))
        c["site"].append(site)
        c["time_us"].append(time_us)
        c["label"].append(label)
        c["reason"].append(reason)
        c["expected"].append(self.seq if kind == "end" else -1)
        c["meta"].append(meta)
        c["x"].append(b"" if x is None else x)
        if kind != "end":
            self.seq += 1

    def full(self) -> bool:
        return len(self.cols["kind"]) >= self.rows_per_block

    def take(self) -> pa.Table | None:
        if not self.cols["kind"]:
            return None
        t = pa.Table.from_pydict(self.cols, schema=ROW_SCHEMA)
        self.cols = {f.name: [] for f in ROW_SCHEMA}
        return t


def _label(v) -> int | None:
    if v is None:
        return None
    v = int(v)
    return v if -(2**15) <= v < 2**15 else None


def read_file_rows(
    task: FileTask,
    preprocess_cfg: dict,
    storage_options: dict | None = None,
    rows_per_block: int = 32,
) -> Iterator[pa.Table]:
    """The body of one read task (also usable without Ray): blocks of ROW_SCHEMA rows.

    Whatever the file holds, the task ends with its "end" row: an exception from the reader is
    classified by pipeline.readers.base.classify_error (the file's fault -> "corrupt", with the
    frames already read kept; infrastructure -> "fail"), and one frame whose conversion to a
    row fails is an "error" row for that frame.
    """
    from pipeline import frame_meta
    from pipeline.preprocess import PreprocessConfig, preprocess
    from pipeline.readers import FrameError, read_frames
    from pipeline.readers.base import classify_error

    cfg = PreprocessConfig.from_dict(dict(preprocess_cfg))
    rows = _Rows(task, rows_per_block)
    t_read = t_prep = 0.0
    try:
        t0 = time.perf_counter()
        it = iter(read_frames(task.path, storage_options=storage_options or {}))
        t_read += time.perf_counter() - t0
        while True:
            t0 = time.perf_counter()
            item = next(it, None)
            t1 = time.perf_counter()
            t_read += t1 - t0
            if item is None:
                break
            if isinstance(item, FrameError):
                rows.add("error", frame=item.index, reason=str(item.reason))
            else:
                try:
                    x = np.ascontiguousarray(preprocess(item.pixels, cfg), dtype=np.float32)
                    if not np.all(np.isfinite(x)):
                        raise ValueError("non-finite values after preprocessing")
                except Exception as exc:  # the frame's content, not the job, is at fault
                    rows.add("error", frame=item.index, reason=f"preprocess: {exc}")
                else:
                    dt_prep = time.perf_counter() - t1
                    t_prep += dt_prep
                    try:
                        fields = dict(
                            site=None if item.site is None else str(item.site),
                            time_us=time_to_us(item.time),
                            label=_label(item.label),
                            meta=frame_meta.to_json(item.meta),
                        )
                    except Exception as exc:  # metadata that no row can hold
                        rows.add("error", frame=item.index, reason=f"metadata: {exc}")
                    else:
                        rows.add("frame", frame=item.index, x=x.tobytes(), **fields)
            if rows.full():
                yield rows.take()
    except Exception as exc:
        kind, reason = classify_error(exc)
        if kind == "fail":  # I/O trouble or a lost node: not committed, retried next run
            log.warning("reading %s failed: %s", task.uri, safe_text(reason))
        rows.add(kind, reason=reason)
    # the end row carries the file's read and preprocessing seconds (reported, not used)
    rows.add("end", reason=json.dumps({"read_s": t_read, "preprocess_s": t_prep}))
    yield rows.take()


class ArchiveDatasource(Datasource):
    """One ReadTask per archive file; rows as described in the module docstring."""

    def __init__(
        self,
        files: list[FileTask],
        preprocess_cfg: dict,
        storage_options: dict | None = None,
        rows_per_block: int = 32,
    ):
        super().__init__()
        self.files = list(files)
        self.preprocess_cfg = dict(preprocess_cfg)
        self.storage_options = storage_options or {}
        self.rows_per_block = int(rows_per_block)

    def get_name(self) -> str:
        return "ArchiveRead"

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
        tasks = []
        for f in self.files:
            args = (f, self.preprocess_cfg, self.storage_options, self.rows_per_block)
            meta = BlockMetadata(
                num_rows=None, size_bytes=None, exec_stats=None, input_files=[f.uri]
            )
            tasks.append(ReadTask(_ReadFn(*args), meta, schema=ROW_SCHEMA))
        return tasks


class _ReadFn:
    """A picklable read function (a closure over loop variables would bind the last file)."""

    def __init__(self, *args):
        self.args = args

    def __call__(self):
        return read_file_rows(*self.args)
