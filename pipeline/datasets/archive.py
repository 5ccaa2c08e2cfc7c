"""Labelled frames of an archive, read exactly as ingest reads them.

Why through ingest's own read task (`pipeline.datasource.read_file_rows`) and model-input step
(`pipeline.frame_rows.model_inputs`, on the CPU): a model only sees at training time what it
will see at ingestion when both take the same bytes through the same reader and the same
preprocessing. Frame i of an archive as a training input is then frame i as
an ingest input (tests/test_encode_parity.py), and the MAP that `train` and `evaluate` report is
the MAP of the codes ingest stores.

    frames = read_archive("s3://bucket/stream0/2024/01", preprocess_cfg, storage_options)
    frames.x (n, C, S, S) float32, frames.ids ("REL#FRAME", ingest's ids), frames.labels (n,)

Frames come in ingest's canonical order (relative path, then frame index). Labels are the
frames' own label header (-1 where a frame has none) unless a catalogue table maps ids to
labels (`catalogue_labels`: CSV or Parquet with columns id,label).
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
    ids: np.ndarray  # (n,) object: "REL#FRAME", pipeline.store.frame_id
    labels: np.ndarray  # (n,) int64, -1 = no label in the frame
    skipped: int = 0  # frames or files the readers rejected (ingest would quarantine them)


def _read_files(job) -> ArchiveFrames:
    """Read one contiguous group of files through ingest's read task and model-input step."""
    from pipeline.datasource import FileTask, read_file_rows
    from pipeline.frame_rows import model_inputs
    from pipeline.preprocess import PreprocessConfig
    from pipeline.store import frame_id

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


def catalogue_labels(uri: str, storage_options: dict | None = None) -> dict[str, object]:
    """{frame id: label} from a CSV or Parquet table with columns `id` and `label`."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from pipeline import storage

    try:
        fs, path, _ = storage.split_uri(uri, storage_options)
        with fs.open(path, "rb") as fh:
            table = pacsv.read_csv(fh) if uri.lower().endswith(".csv") else pq.read_table(fh)
    except FileNotFoundError:
        raise BadInput(f"--labels {uri}: no such file") from None
    except Exception as exc:  # pyarrow's parse errors name the problem
        raise BadInput(f"--labels {uri}: not a readable CSV or Parquet table ({exc})") from None
    if not {"id", "label"} <= set(table.column_names):
        raise BadInput(f"--labels {uri}: needs columns id and label, has {table.column_names}")
    ids = table.column("id").to_pylist()
    labs = table.column("label").to_pylist()
    return {str(i): v for i, v in zip(ids, labs, strict=True) if i is not None and v is not None}


def apply_catalogue(frames: ArchiveFrames, table: dict, uri: str) -> tuple[np.ndarray, list]:
    """(labels int64 (-1 = not in the table), class names) of frames from a catalogue table.

    Integer labels name classes 0..K-1; text labels become classes in sorted order.
    """
    values = [table.get(i) for i in frames.ids]
    present = [v for v in values if v is not None]
    if not present:
        raise BadInput(f"--labels {uri}: no id of the archive's frames is in the table")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        if min(present) < 0:
            raise BadInput(f"--labels {uri}: integer labels must be >= 0")
        names = [str(i) for i in range(max(present) + 1)]
        return np.asarray([-1 if v is None else v for v in values], np.int64), names
    names = sorted({str(v) for v in present})
    index = {n: i for i, n in enumerate(names)}
    return np.asarray([-1 if v is None else index[str(v)] for v in values], np.int64), names
