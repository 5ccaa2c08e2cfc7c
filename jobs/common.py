"""What every job shares: exit-code errors, the JSON summary line, progress, S3 and Ray options."""

from __future__ import annotations

import json
import logging
import os
import sys

from pipeline.errors import BadInput

log = logging.getLogger("aurorahash")


class UsageError(BadInput):
    """Bad usage or bad input: the job exits with code 2."""


class JobFailed(Exception):
    """The work itself failed (exit 1); `summary` is still printed so callers see what was done."""

    def __init__(self, message: str, summary: dict | None = None):
        super().__init__(message)
        self.summary = summary or {}


def setup_logging(verbose: bool = False) -> None:
    """Progress goes to stderr so that stdout carries only the JSON summary."""
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def emit_summary(summary: dict) -> None:
    print(json.dumps(summary, sort_keys=True, default=str), flush=True)


def add_s3_options(parser) -> None:
    parser.add_argument(
        "--s3-endpoint",
        default=None,
        help="S3-compatible endpoint URL for s3:// paths (default: $AWS_ENDPOINT_URL, else AWS). "
        "Credentials come from the usual AWS environment variables and are never logged.",
    )


def add_ray_options(parser) -> None:
    parser.add_argument(
        "--ray-address",
        default=None,
        help="address of an existing Ray cluster (default: $RAY_ADDRESS; without either, a local "
        "instance is started)",
    )


def storage_options(args) -> dict:
    """fsspec storage options for s3:// paths; empty for local ones."""
    endpoint = getattr(args, "s3_endpoint", None) or os.environ.get("AWS_ENDPOINT_URL")
    return {"client_kwargs": {"endpoint_url": endpoint}} if endpoint else {}


def ray_address(args) -> str | None:
    return getattr(args, "ray_address", None) or os.environ.get("RAY_ADDRESS") or None
