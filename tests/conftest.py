"""Shared pytest wiring: slow tests run with --runslow or whenever CI=true."""

import os

import pytest


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow") or os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow (CI=true runs it)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


from fixtures_ray import ray_cluster, ray_local  # noqa: E402, F401  (local Ray per test module)
from fixtures_s3 import s3, s3_server  # noqa: E402, F401  (ingest/store: moto S3 on loopback)
