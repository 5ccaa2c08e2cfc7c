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
frames' own label header (-1 where a frame has none).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from pipeline.errors import BadInput

log = logging.getLogger("aurorahash.datasets")

FILES_PER_JOB = 16


@dataclass
class ArchiveFrames:
    x: np.ndarray  # (n, C, S, S) float32 model inputs
    ids: np.ndarray  # (n,) object: "REL#FRAME", pipeline.codes.store.frame_id
    labels: np.ndarray  # (n,) int64, -1 = no label in the frame
    skipped: int = 0  # frames or files the readers rejected (ingest would quarantine them)


def _read_files(job) -> ArchiveFrames:
    """Read one contiguous group of files through ingest's read task and model-input step."""
    from pipeline.codes.store import frame_id
    from pipeline.ingest.frame_rows import model_inputs
    from pipeline.ingest.read import FileTask, read_file_rows
    from pipeline.model.preprocess import PreprocessConfig

    files, pre, storage_options, shape = job
    cfg = PreprocessConfig.from_dict(dict(pre))
    xs, ids, labels, skipped = [], [], [], 0
    for uri, rel in files:
        for t in read_file_rows(FileTask(uri=uri, rel=rel), storage_options):
            inp = model_inputs(t, cfg, "cpu")
            x = dict(zip(inp.rows.tolist(), inp.x.numpy(), strict=True))
            rows = t.select(["kind", "frame", "label", "reason"]).to_pylist()
            for i, r in enumerate(rows):
                if i in x:
                    xs.append(x[i])
                    ids.append(frame_id(rel, r["frame"]))
                    labels.append(-1 if r["label"] is None else int(r["label"]))
                elif r["kind"] != "end":
                    skipped += 1
                    why = inp.errors.get(i, r["reason"])
                    log.warning("%s: %s row left out (%s)", uri, r["kind"], why)
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
