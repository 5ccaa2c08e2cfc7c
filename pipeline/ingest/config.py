"""What an ingest run is asked to do: its options, and the error that carries a failed run's
summary."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from pipeline.errors import BadInput


class IngestFailed(Exception):
    """Some files could not be processed; `summary` says what was done."""

    def __init__(self, message: str, summary: dict):
        super().__init__(message)
        self.summary = summary


@dataclass
class IngestConfig:
    source: str
    out: str
    model: str
    since: _dt.date | None = None
    ray_address: str | None = None
    batch_size: int | None = None  # frames per model call (default 256 with GPUs, else 64)
    s3_endpoint: str | None = None
    actors: int | None = None  # encoder actors (default: pipeline.ingest.resources)
    actors_per_gpu: int | None = None  # actors sharing one GPU (default 2 for small models)
    encoder_threads: int | None = (
        None  # torch threads per actor (default: pipeline.ingest.resources)
    )
    rows_per_block: int | None = None  # rows per read block = per encoder call (batch_size)
    read_cpus: float | None = None  # CPU slots per read task (default 1 with GPUs, else 0.75;
    # on CPUs not the actors' 1.0, or Ray Data fuses the read into the encoder actor)
    read_tasks: int | None = None  # read tasks at once at most (default: as the CPUs allow)
    commit_threads: int = 8  # shard/quarantine writes in flight
    progress_interval: float = 5.0  # seconds between progress lines
    dry_run: bool = False
    ray_progress_bars: bool = False
    max_files: int | None = None  # take only the first N files still to do (testing, staging)
    quarantine_per_file: int = 100  # records listed per file; the rest summed up in one record
    check_workers: int = 2  # dry run: files read at once


def parse_since(value: str | None) -> _dt.date | None:
    if value in (None, ""):
        return None
    try:
        return _dt.date.fromisoformat(str(value))
    except ValueError:
        raise BadInput(f"--since {value!r}: expected a date YYYY-MM-DD") from None
