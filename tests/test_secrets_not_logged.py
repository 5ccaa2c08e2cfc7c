"""S3 credentials never appear in a job's stdout, stderr, summary or Ray logs.

Real jobs, as the manifests run them: the `aurorahash` CLI in a subprocess, credentials in the
AWS environment variables (as the Kubernetes secrets provide them), debug logging on (-v),
against the moto S3 server on 127.0.0.1: an ingest on a local Ray instance, a search, and a
search that fails. The secrets are unique random strings, so that any hit is a leak.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import string
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from fixtures_ray import REPO, worker_env
from ingest_helpers import THEMIS, make_model

pytestmark = pytest.mark.integration


def _random(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


@pytest.fixture(scope="module")
def creds() -> dict:
    return {
        "AWS_ACCESS_KEY_ID": "AKIA" + _random(16, string.ascii_uppercase + string.digits),
        "AWS_SECRET_ACCESS_KEY": _random(40),
        "AWS_SESSION_TOKEN": _random(64),
    }


@pytest.fixture
def ray_tmp():
    """Ray's temp dir for the job's own local instance (short: Ray's socket paths must fit)."""
    d = tempfile.mkdtemp(prefix="rs", dir="/tmp")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def _job(args: list[str], creds: dict, endpoint: str, ray_tmp: Path) -> tuple[int, str, str]:
    env = dict(os.environ, **worker_env(), **creds)
    env.pop("RAY_ADDRESS", None)
    env.update(AWS_ENDPOINT_URL=endpoint, RAY_TMPDIR=str(ray_tmp))
    cmd = [sys.executable, "-m", "jobs.cli", "-v", *args]
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    return p.returncode, p.stdout, p.stderr


def _assert_no_secret(creds: dict, **texts: str) -> None:
    for where, text in texts.items():
        for name, value in creds.items():
            assert value not in text, f"{name} appears in {where}"


def _ray_logs(ray_tmp: Path) -> str:
    parts = []
    for p in ray_tmp.rglob("*"):
        if p.is_file() and not p.is_symlink() and p.stat().st_size < 50_000_000:
            parts.append(p.read_bytes().decode("utf-8", "replace"))
    return "\n".join(parts)


def _summary(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_credentials_stay_out_of_ingest_and_search_output(s3, creds, ray_tmp, tmp_path):
    src, dst = s3.bucket("archive"), s3.bucket("codes")
    for name in (
        "20140310_0600_gill_themis19_full.pgm.gz",
        "20140310_0601_gill_themis19_full.pgm.gz",
    ):
        s3.client.upload_file(str(THEMIS / name), src, f"themis/{name}")
    s3.upload_dir(make_model(tmp_path / "ckpt", size=32, bits=32), src, "models/tiny")
    codes = f"s3://{dst}/codes"

    rc, out, err = _job(
        [
            "ingest",
            "--source",
            f"s3://{src}/themis",
            "--out",
            codes,
            "--model",
            f"s3://{src}/models/tiny",
            "--s3-endpoint",
            s3.endpoint,
            "--actors",
            "1",
        ],
        creds,
        s3.endpoint,
        ray_tmp,
    )
    summary = _summary(out)
    assert rc == 0 and summary["files_done"] == 2, err[-3000:]
    logs = _ray_logs(ray_tmp)
    assert "session_" in logs or any(ray_tmp.rglob("session_*"))  # Ray did write its logs here
    assert "DEBUG aurorahash.ingest: committed" in err  # -v was on
    _assert_no_secret(creds, stdout=out, stderr=err, summary=json.dumps(summary), ray_logs=logs)

    query = f"{name}#0"  # a frame of the last file ingested
    rc, out, err = _job(
        ["search", "--codes", codes, "--query-id", query, "--k", "3", "--no-ray"],
        creds,
        s3.endpoint,
        ray_tmp,
    )
    summary = _summary(out)
    assert rc == 0 and query in out, err[-3000:]
    _assert_no_secret(creds, stdout=out, stderr=err, summary=json.dumps(summary))


def test_credentials_stay_out_of_a_failed_job(s3, creds, ray_tmp):
    rc, out, err = _job(
        [
            "search",
            "--codes",
            f"s3://no-such-bucket-{_random(8).lower()}/codes",
            "--query-id",
            "x#0",
            "--no-ray",
            "--s3-endpoint",
            s3.endpoint,
        ],
        creds,
        s3.endpoint,
        ray_tmp,
    )
    summary = _summary(out)
    assert rc in (1, 2) and summary["ok"] is False and summary["error"]
    _assert_no_secret(creds, stdout=out, stderr=err, summary=json.dumps(summary))


def test_verbose_is_debug_for_this_project_only():
    """-v must not turn on botocore's debug log: it prints the signed request headers
    (Credential=<access key id>, x-amz-security-token), which the ingest test above caught."""
    import logging

    from jobs.common import setup_logging

    try:
        setup_logging(verbose=True)
        assert logging.getLogger("aurorahash.ingest").isEnabledFor(logging.DEBUG)
        assert logging.getLogger("pipeline.codes.search").isEnabledFor(logging.DEBUG)
        for lib in ("botocore.endpoint", "aiobotocore", "s3fs", "urllib3", "fsspec"):
            assert not logging.getLogger(lib).isEnabledFor(logging.DEBUG), lib
        setup_logging(verbose=False)
        assert not logging.getLogger("aurorahash.ingest").isEnabledFor(logging.DEBUG)
    finally:
        setup_logging(verbose=False)
