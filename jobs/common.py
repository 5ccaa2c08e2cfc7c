"""What every job shares: exit-code errors, the JSON summary line, progress, S3 and Ray options."""

from __future__ import annotations

import json
import logging
import os
import sys
from contextlib import contextmanager

from pipeline.errors import BadInput

log = logging.getLogger("aurorahash")


class UsageError(BadInput):
    """Bad usage or bad input: the job exits with code 2."""


class JobFailed(Exception):
    """The work itself failed (exit 1); `summary` is still printed so callers see what was done."""

    def __init__(self, message: str, summary: dict | None = None):
        super().__init__(message)
        self.summary = summary or {}


# The project's own loggers: --verbose turns these to DEBUG, never the libraries' (botocore's
# debug log prints request headers, which carry the access key id and the session token).
OWN_LOGGERS = ("aurorahash", "pipeline", "jobs", "kernels")


def setup_logging(verbose: bool = False) -> None:
    """Progress goes to stderr so that stdout carries only the JSON summary."""
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.NOTSET)


def emit_summary(summary: dict) -> None:
    print(json.dumps(summary, sort_keys=True, default=str), flush=True)


def add_s3_options(parser) -> None:
    parser.add_argument(
        "--s3-endpoint",
        default=None,
        help="S3-compatible endpoint URL for s3:// paths (default: $AWS_ENDPOINT_URL, else AWS). "
        "Credentials come from the usual AWS environment variables and are never logged.",
    )


def add_source_options(g, source_help: str) -> None:
    """--source, --since, --max-files and --progress-interval: what check and ingest share
    (`pipeline.ingest.config.SourceOptions`, which checks their values)."""
    g.add_argument("--source", required=True, help=source_help)
    g.add_argument(
        "--since",
        default=None,
        metavar="YYYY-MM-DD",
        help="only archive files from this date on: the date in the file name (YYYYMMDD...) "
        "or path (YYYY/MM/DD/), else the file's modification time",
    )
    g.add_argument(
        "--max-files",
        type=int,
        default=None,
        help="read at most this many of the files still to do (staging, smoke tests)",
    )
    g.add_argument(
        "--progress-interval",
        type=float,
        default=5.0,
        help="seconds between progress lines on stderr (default 5)",
    )


def config_of(cls, args, **extra):
    """The job's config `cls` from its parsed arguments (the options named as its fields) and
    `extra`; the config refuses bad values (BadInput: exit 2)."""
    from pipeline.ingest.config import options_from

    return cls(**{**options_from(cls, args), **extra})


def add_ray_options(parser) -> None:
    parser.add_argument(
        "--ray-address",
        default=None,
        help="address of an existing Ray cluster (default: $RAY_ADDRESS; without either, a local "
        "instance is started)",
    )


def add_codes_options(parser, codes_help: str) -> None:
    """--codes and --model: one model's codes in an ingest --out location (compact, export)."""
    parser.add_argument("--codes", required=True, help=codes_help)
    parser.add_argument(
        "--model", default=None, help="model sha256 (prefix) when --codes holds several"
    )


def add_executor_options(parser, no_ray_help: str) -> None:
    """--ray/--no-ray, the Ray and the S3 options: the jobs that run catalogue tasks (search,
    benchmark). Without either, `pipeline.codes.placement` decides."""
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--no-ray", action="store_true", help=no_ray_help)
    g.add_argument(
        "--ray",
        action="store_true",
        help="run the tasks on Ray even when the work is small (default: Ray when a cluster is "
        "named, else only when the catalogue is large enough that a local Ray instance pays "
        "for its start-up; the log says which and why)",
    )
    add_ray_options(parser)
    add_s3_options(parser)


@contextmanager
def catalogue_session(args, so: dict, prepare, catalogues, passes: int = 1):
    """Yield (`prepare()`, executor): the driver's part (catalogues, queries), and what runs the
    catalogue's tasks, Ray tasks or None (this process), as `pipeline.codes.placement` chooses
    from the options or from `catalogues(prepare())` read `passes` times. When the options
    decide, the driver's part runs while Ray starts; when the work decides, before."""
    from pipeline.codes import placement, search
    from pipeline.ray_runtime import session_with

    address = ray_address(args)
    choice = placement.forced(args.ray, args.no_ray, address)
    if choice is None:
        prepared = prepare()
        choice = placement.choose(catalogues(prepared), passes)
        prepare = lambda: prepared  # noqa: E731
    log.info("executor: %s", choice.reason)
    with session_with(prepare, address, ray_storage_env(so), choice.use_ray) as prepared:
        yield prepared, (search.RayExecutor() if choice.use_ray else None)


def executor_name(executor) -> str:
    """The summary's `executor`: "local" (this process) or "ray"."""
    return "local" if executor is None else "ray"


def write_report(report, folder_uri: str, so: dict | None) -> str:
    """--report: `report` into a new dated folder under folder_uri; returns its report.html."""
    from pipeline import reports

    folder = reports.write_report(report, folder_uri, so)
    path = f"{folder}/{reports.folder.HTML}"
    log.info("report: %s", path)
    return path


def storage_options(args) -> dict:
    """Storage options for the job's paths, from the one builder (`pipeline.storage`)."""
    from pipeline import storage

    values = list(vars(args).values())
    uris = [v for v in values if isinstance(v, str)]  # any s3:// path argument
    uris += [u for v in values if isinstance(v, list | tuple) for u in v if isinstance(u, str)]
    return storage.options_for(*uris, endpoint=getattr(args, "s3_endpoint", None))


def location(args, uri: str):
    """A path argument as a `pipeline.storage.Location`: made here, at the job's edge, with the
    options of the one builder (--s3-endpoint, else $AWS_ENDPOINT_URL; credentials)."""
    from pipeline import storage

    return storage.location(uri, endpoint=getattr(args, "s3_endpoint", None))


def ray_storage_env(so: dict) -> dict:
    """Environment for Ray workers: the S3 endpoint, so that they reach the same store."""
    from pipeline import storage

    return {"AWS_ENDPOINT_URL": storage.endpoint_of(so)}


def output_file(uri: str, default_name: str, so: dict | None = None) -> str:
    """Where `--out URI` writes its file: inside URI as `default_name` when URI is a folder
    (ends in / or exists as a folder or prefix), else URI itself."""
    from pipeline import storage

    if uri.endswith("/"):
        return f"{uri}{default_name}"
    return f"{uri}/{default_name}" if storage.location(uri, options=so or {}).isdir() else uri


def ray_address(args) -> str | None:
    return getattr(args, "ray_address", None) or os.environ.get("RAY_ADDRESS") or None
