"""A real S3 server for tests: moto's standalone server on 127.0.0.1 (never in-process mocks).

Import into conftest.py:  from tests.fixtures_s3 import s3_server, s3  # noqa: F401

`s3_server` (session) starts one server process on a free loopback port and sets dummy AWS
credentials in the environment (before any Ray instance a test starts, so local Ray workers
inherit them).
`s3` (function) gives a helper with fresh, uniquely named buckets for one test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

_CRED_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """Endpoint URL of a moto S3 server on 127.0.0.1 for the whole session.

    The server runs in its own process (as s3fs's tests run it): delta-rs holds the GIL while it
    waits for S3, so a server thread inside the test process could never answer it.
    """
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    _wait_until_up(endpoint, proc)
    saved = {k: os.environ.get(k) for k in _CRED_ENV}
    os.environ.update(_CRED_ENV)
    try:
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _wait_until_up(endpoint: str, proc, timeout: float = 60.0) -> None:
    import urllib.request

    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto server at {endpoint} did not start in {timeout:.0f} s")


class S3Helper:
    def __init__(self, endpoint: str):
        import boto3

        self.endpoint = endpoint
        self.storage_options = {
            "client_kwargs": {"endpoint_url": endpoint},
            "use_listings_cache": False,
        }
        self.client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")

    def bucket(self, prefix: str = "b") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=name)
        return name

    def upload_dir(self, local: str | Path, bucket: str, prefix: str = "") -> list[str]:
        """Upload every file under `local` to s3://bucket/prefix/..., keeping relative paths."""
        local = Path(local)
        keys = []
        for p in sorted(local.rglob("*")):
            if p.is_file():
                key = "/".join(filter(None, [prefix.strip("/"), p.relative_to(local).as_posix()]))
                self.client.upload_file(str(p), bucket, key)
                keys.append(key)
        return keys

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix
        ):
            out.extend(o["Key"] for o in page.get("Contents", []))
        return sorted(out)

    def get(self, bucket: str, key: str) -> bytes:
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()


@pytest.fixture
def s3(s3_server):
    return S3Helper(s3_server)
