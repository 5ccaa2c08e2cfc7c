"""A real local Ray instance for tests, one per test module (start-up costs seconds).

Import into conftest.py:  from fixtures_ray import ray_local  # noqa: F401

Small object store, no dashboard, 2 logical CPUs (actors take one, read tasks the other), and
the repository on the workers' PYTHONPATH so that they import this checkout's packages.
"""

from __future__ import annotations

import os
import pathlib

import pytest

REPO = str(pathlib.Path(__file__).resolve().parents[1])


def worker_env() -> dict:
    """Environment for Ray worker processes: this checkout importable first."""
    path = os.environ.get("PYTHONPATH", "")
    parts = [p for p in path.split(os.pathsep) if p]
    if REPO not in parts:
        parts.insert(0, REPO)
    return {"PYTHONPATH": os.pathsep.join(parts)}


@pytest.fixture(scope="module")
def ray_local():
    """ray.init() for the whole test module; shut down after it."""
    import ray

    if ray.is_initialized():  # another module's instance left running: start clean
        ray.shutdown()
    os.environ.update(worker_env())  # the local raylet and its workers inherit it
    # address="local": a new instance of our own, even while another Ray runs on this machine
    # (without it ray.init() joins that one and refuses num_cpus)
    ray.init(
        address="local",
        num_cpus=2,
        num_gpus=0,
        object_store_memory=150 * 1024 * 1024,
        include_dashboard=False,
        configure_logging=False,
        log_to_driver=False,
    )
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def ray_cluster():
    """A multi-node Ray cluster in this machine for fault tests: a head without CPUs (so that
    work lands on workers) and two worker nodes of 2 CPUs; yields (cluster, worker nodes)."""
    import ray
    from ray.cluster_utils import Cluster

    mb = 1024 * 1024
    if ray.is_initialized():
        ray.shutdown()
    os.environ.update(worker_env())
    c = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": 80 * mb}
    )
    workers = [c.add_node(num_cpus=2, object_store_memory=80 * mb) for _ in range(2)]
    c.wait_for_nodes()
    try:
        yield c, workers
    finally:
        c.shutdown()
