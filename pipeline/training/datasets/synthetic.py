"""The `synthetic-aurora` sets, rendered as the archive holds them and read as ingest reads them.

Why not render at the model size directly: the model must see at training time what ingest feeds
it. Synthetic frames are therefore written by the archive writer (`pipeline.synth.write_archive`:
256 px, 16 bit, the THEMIS optics, stream0 PGM minute files) into a scratch folder and read back
through ingest's read task and preprocessing (`pipeline.ingest.local_read.read_archive`), in chunks,
in parallel processes when there are many. The split itself is `pipeline.synth.split_indices`:
the database is frames 0..n_database-1 of the seeded stream, the training set its head, the
queries a later range.
"""

from __future__ import annotations

import os
import tempfile

from pipeline.errors import BadInput
from pipeline.ingest.local_read import ArchiveFrames, _map, concat, read_archive

RENDER_SIZE = 256  # px, the archive writer's frames (pipeline.synth.write_archive)
CHUNK = 200  # frames per scratch archive (10 minute files)


def _render_chunk(job) -> ArchiveFrames:
    from pipeline.synth import write_archive

    seed, start, n, pre = job
    with tempfile.TemporaryDirectory(prefix="aurorahash-synth-") as d:
        write_archive(d, n, seed=seed, fmt="pgm", size=RENDER_SIZE, start=start)
        return read_archive(d, pre)


def render_frames(seed: int, start: int, n: int, pre: dict, workers: int = 1) -> ArchiveFrames:
    """Frames start..start+n-1 of the seeded stream as ingest would give them to the model."""
    jobs = [(seed, start + i, min(CHUNK, n - i), pre) for i in range(0, n, CHUNK)]
    shape = (int(pre["channels"]), int(pre["size"]), int(pre["size"]))
    return concat(_map(_render_chunk, jobs, workers), shape)


def synthetic_splits(
    data_seed: int,
    limit: int | None,
    size: int | None = None,
    n_train: int | None = None,
    n_query: int | None = None,
    n_database: int | None = None,
    preprocess: dict | None = None,
    workers: int | None = None,
) -> dict:
    """Training, query and database sets of synthetic aurora (see the module docstring)."""
    from pipeline.model.preprocess import PreprocessConfig
    from pipeline.synth import CLASSES, split_indices
    from pipeline.synth.split import DEFAULT_SIZES

    if preprocess is not None:
        pcfg = PreprocessConfig.from_dict(preprocess)
    else:
        pcfg = PreprocessConfig.aurora(int(size or 64))
    if pcfg.size < 16:
        raise BadInput("synthetic-aurora --size must be at least 16")
    n_train = int(n_train if n_train is not None else DEFAULT_SIZES["train"])
    n_query = int(n_query if n_query is not None else DEFAULT_SIZES["query"])
    n_database = int(n_database if n_database is not None else DEFAULT_SIZES["database"])
    if limit is not None:
        n_train = min(n_train, int(limit))
    n_database = max(n_database, n_train)
    try:
        idx = split_indices(n_train, n_query, n_database, train_in_database=True)
    except ValueError as exc:
        raise BadInput(f"synthetic-aurora split: {exc}") from None
    if workers is None:
        workers = min(os.cpu_count() or 1, 16) if n_database + n_query > 2 * CHUNK else 1
    pre = pcfg.to_dict()
    db = render_frames(data_seed, 0, n_database, pre, workers)
    q0 = int(idx["query"][0]) if n_query else 0
    query = render_frames(data_seed, q0, n_query, pre, workers)
    return {
        "db": (db.x, db.labels),
        "query": (query.x, query.labels),
        # the training set is the head of the database: share the arrays
        "train": (db.x[:n_train], db.labels[:n_train]),
        "classes": list(CLASSES),
        "preprocess": pre,
    }
