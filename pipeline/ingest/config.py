"""What an ingest or check run is asked to do, and the error that carries a failed run's summary.

The configs are frozen and refuse a bad value when they are made (BadInput, naming the option as
the CLI spells it: exit 2), so that the jobs only parse arguments and every caller (jobs,
benchmarks, tests) gets the same checks. What check and ingest share is defined once
(`SourceOptions`); a dry run's check config is made from the ingest config (`from_ingest`).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, fields

from pipeline.errors import BadInput


class IngestFailed(Exception):
    """Some files could not be processed; `summary` says what was done."""

    def __init__(self, message: str, summary: dict):
        super().__init__(message)
        self.summary = summary


def parse_since(value: str | None) -> _dt.date | None:
    if value in (None, ""):
        return None
    try:
        return _dt.date.fromisoformat(str(value))
    except ValueError:
        raise BadInput(f"--since {value!r}: expected a date YYYY-MM-DD") from None


def options_from(cls, values) -> dict:
    """The fields of dataclass `cls` that `values` (a config, or a job's parsed arguments)
    has, by name: one place that knows which options a config takes."""
    return {f.name: getattr(values, f.name) for f in fields(cls) if hasattr(values, f.name)}


def _at_least(cfg, low: int, names: tuple[str, ...], cli: bool = True) -> None:
    for name in names:
        v = getattr(cfg, name)
        if v is not None and v < low:
            what = "--" + name.replace("_", "-") if cli else name
            raise BadInput(f"{what} must be at least {low}, not {v}")


@dataclass(frozen=True, kw_only=True)
class SourceOptions:
    """What to read: the options check and ingest share (one definition, one validation)."""

    source: str  # archive root: local path, file:// or s3://
    model: str | None = None  # checkpoint directory
    out: str | None = None  # code shards' location (with model: files already done are skipped)
    since: _dt.date | None = None  # only archive files from this date on (or its YYYY-MM-DD)
    s3_endpoint: str | None = None
    max_files: int | None = None  # take only the first N files still to do (testing, staging)
    progress_interval: float = 5.0  # seconds between progress lines

    def __post_init__(self) -> None:
        if not self.source:
            raise BadInput("--source is required")
        if isinstance(self.since, str):  # the CLI's text: parsed once, here
            object.__setattr__(self, "since", parse_since(self.since))
        _at_least(self, 0, ("max_files",))
        if not self.progress_interval > 0:
            raise BadInput(f"--progress-interval must be positive, not {self.progress_interval}")


@dataclass(frozen=True, kw_only=True)
class EncodingOptions:
    """How an ingest spreads its work; None: chosen from the cluster
    (`pipeline.ingest.resources.plan_encoders`, which says when it cannot take a value)."""

    batch_size: int | None = None  # frames per model call (default 256 with GPUs, else 64)
    actors: int | None = None  # encoder actors
    actors_per_gpu: int | None = None  # actors sharing one GPU (default 2 for small models)
    encoder_threads: int | None = None  # torch threads per actor
    rows_per_block: int | None = None  # rows per read block = per encoder call (batch_size)
    read_cpus: float | None = None  # CPU slots per read task (default 1 with GPUs, else 0.75)
    read_tasks: int | None = None  # read tasks at once at most (default: as the CPUs allow)

    def __post_init__(self) -> None:
        names = ("batch_size", "actors", "actors_per_gpu", "encoder_threads", "rows_per_block")
        _at_least(self, 1, (*names, "read_tasks"))
        if self.read_cpus is not None and not 0 < self.read_cpus <= 64:
            raise BadInput(f"--read-cpus must be in (0, 64], not {self.read_cpus}")
        if self.batch_size and self.rows_per_block and self.rows_per_block > self.batch_size:
            raise BadInput(
                f"--rows-per-block {self.rows_per_block} must be at most --batch-size "
                f"{self.batch_size}: a block is one encoder call"
            )


@dataclass(frozen=True, kw_only=True)
class IngestConfig(SourceOptions, EncodingOptions):
    """An ingest run (`pipeline.ingest.driver.run_ingest`); --out and --model are required."""

    ray_address: str | None = None
    commit_threads: int = 8  # shard/quarantine writes in flight
    dry_run: bool = False
    ray_progress_bars: bool = False
    quarantine_per_file: int = 100  # records listed per file; the rest summed up in one record
    check_workers: int = 2  # dry run: files read at once

    def __post_init__(self) -> None:
        SourceOptions.__post_init__(self)
        EncodingOptions.__post_init__(self)
        for name in ("out", "model"):
            if not getattr(self, name):
                raise BadInput(f"--{name} is required")
        _at_least(self, 1, ("commit_threads", "check_workers"), cli=False)
        _at_least(self, 0, ("quarantine_per_file",), cli=False)


@dataclass(frozen=True, kw_only=True)
class CheckConfig(SourceOptions):
    """A check run, or an ingest's dry run (`pipeline.ingest.vet.check_archive`)."""

    workers: int = 2  # files read at once
    max_reasons: int = 5  # distinct reasons listed per file
    max_listed: int = 1000  # file entries in the summary

    def __post_init__(self) -> None:
        super().__post_init__()
        _at_least(self, 1, ("workers",))
        _at_least(self, 0, ("max_listed",))
        _at_least(self, 1, ("max_reasons",), cli=False)
        if self.out and not self.model:
            raise BadInput("--out needs --model (done files are per model)")

    @classmethod
    def from_ingest(cls, cfg: IngestConfig) -> CheckConfig:
        """What `ingest --dry-run` reads: the ingest's own source options."""
        return cls(**options_from(SourceOptions, cfg), workers=cfg.check_workers)
