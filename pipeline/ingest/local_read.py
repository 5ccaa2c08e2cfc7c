"""Archive frames read in process exactly as ingest reads them: training inputs and query images.

Why through ingest's own read task (`pipeline.ingest.read.read_file_rows`) and model-input step
(`pipeline.ingest.frame_rows.model_inputs`, on the CPU): a model only sees at training time what
it will see at ingestion when both take the same bytes through the same reader and the same
preprocessing. Frame i of an archive as a training input is then frame i as an ingest input
(tests/test_encode_parity.py), and the MAP that `train` and `evaluate` report is the MAP of the
codes ingest stores.

    frames = read_archive("s3://bucket/stream0/2024/01", preprocess_cfg, storage_options)
    frames.x (n, C, S, S) float32, frames.ids ("REL#FRAME", ingest's ids), frames.labels (n,)

Frames come in ingest's canonical order (relative path, then frame index); labels are the
frames' own label header (-1 where a frame has none). Which frames of a file count is what the
committer decides (`pipeline.ingest.rows.FileOutcome`), except that the frames read before a skip
or fail row are still taken (`skipped` counts the rows left out).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pipeline.errors import BadInput

if TYPE_CHECKING:
    from pipeline.ingest.read import FileTask
    from pipeline.model.preprocess import PreprocessConfig

log = logging.getLogger("aurorahash.datasets")

FILES_PER_JOB = 16
ROW_COLUMNS = ["kind", "seq", "frame", "label", "reason", "meta"]  # what file_rows keeps of a row


@dataclass
class ArchiveFrames:
    x: np.ndarray  # (n, C, S, S) float32 model inputs
    ids: np.ndarray  # (n,) object: "REL#FRAME", pipeline.codes.store.frame_id
    labels: np.ndarray  # (n,) int64, -1 = no label in the frame
    skipped: int = 0  # frames or files the readers rejected (ingest would quarantine them)


def file_rows(
    task: FileTask,
    cfg: PreprocessConfig,
    storage_options: dict,
    rows_per_block: int = 32,
    inputs: bool = True,
) -> Iterator[dict]:
    """One file's rows (dicts of ROW_COLUMNS, in `seq` order) as the committer receives them:
    through ingest's read task and the encoders' model-input step (CPU), a frame that
    preprocessing rejects turned into an error row. With `inputs`, a frame row's "x" holds its
    model input (C, S, S)."""
    from pipeline.ingest.frame_rows import model_inputs, with_errors
    from pipeline.ingest.read import read_file_rows

    for block in read_file_rows(task, storage_options, rows_per_block=rows_per_block):
        inp = model_inputs(block, cfg, "cpu")
        rows = with_errors(block, inp.errors).select(ROW_COLUMNS).to_pylist()
        if inputs:
            for i, x in zip(inp.rows.tolist(), inp.x.numpy(), strict=True):
                rows[i]["x"] = x
        yield from rows


def _read_files(job) -> ArchiveFrames:
    """Read one contiguous group of files through ingest's read task and model-input step."""
    from pipeline.codes.store import frame_id
    from pipeline.ingest.read import FileTask
    from pipeline.ingest.rows import reduce_file
    from pipeline.model.preprocess import PreprocessConfig

    files, pre, storage_options, shape = job
    cfg = PreprocessConfig.from_dict(dict(pre))
    xs, ids, labels, skipped = [], [], [], 0
    for uri, rel in files:
        outcome = reduce_file(file_rows(FileTask(uri=uri, rel=rel), cfg, storage_options))
        for r in outcome.frames:
            xs.append(r["x"])
            ids.append(frame_id(rel, r["frame"]))
            labels.append(-1 if r["label"] is None else int(r["label"]))
        left_out = [
            ("a row" if p.frame is None else f"frame {p.frame}", p.reason) for p in outcome.problems
        ]
        if outcome.stop is not None:  # a skip or fail row; the frames before it are kept
            left_out.append((f"{outcome.stop[0].value} row", outcome.stop[1]))
        for what, why in left_out:
            log.warning("%s: %s left out (%s)", uri, what, why)
        skipped += len(left_out)
    x = np.stack(xs) if xs else np.zeros((0, *shape), np.float32)
    return ArchiveFrames(x, np.asarray(ids, dtype=object), np.asarray(labels, np.int64), skipped)


def _map(fn, jobs: list, workers: int) -> list:
    """fn over jobs, in order; in spawned processes when workers > 1 and there is work to share."""
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=mp.get_context("spawn")) as ex:
            return list(ex.map(fn, jobs))
    return [fn(j) for j in jobs]


def concat(parts: list[ArchiveFrames], shape) -> ArchiveFrames:
    if not parts:
        return ArchiveFrames(
            np.zeros((0, *shape), np.float32), np.zeros(0, object), np.zeros(0, np.int64)
        )
    return ArchiveFrames(
        np.concatenate([p.x for p in parts]),
        np.concatenate([p.ids for p in parts]),
        np.concatenate([p.labels for p in parts]),
        sum(p.skipped for p in parts),
    )


def archive_files(root: str, storage_options: dict | None = None) -> list[tuple[str, str]]:
    """(uri, relative path) of the readable files under root, in ingest's canonical order."""
    from pipeline import storage
    from pipeline.readers import list_archive

    try:
        files = list_archive(root, storage_options or {})
    except FileNotFoundError:
        raise BadInput(f"{root}: no such archive") from None
    pairs = sorted((storage.relative_path(f, root), f) for f in files)
    return [(f, rel) for rel, f in pairs]


def read_archive(
    root: str, preprocess: dict, storage_options: dict | None = None, workers: int = 1
) -> ArchiveFrames:
    """Every readable frame under root as model inputs, in canonical order (see module doc)."""
    files = archive_files(root, storage_options)
    if not files:
        raise BadInput(f"{root}: no archive files a reader takes")
    shape = (int(preprocess["channels"]), int(preprocess["size"]), int(preprocess["size"]))
    groups = [files[i : i + FILES_PER_JOB] for i in range(0, len(files), FILES_PER_JOB)]
    jobs = [(g, dict(preprocess), dict(storage_options or {}), shape) for g in groups]
    out = concat(_map(_read_files, jobs, workers), shape)
    log.info("read %d frames from %d files under %s", len(out.ids), len(files), root)
    return out
