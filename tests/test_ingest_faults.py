"""Fault tolerance of ingestion on a real multi-node Ray cluster (ray.cluster_utils.Cluster).

- a worker node dies while the job runs: the job still completes, every frame exactly once;
- the driver is SIGKILLed after some shards were committed: a re-run does only what is missing
  (files_skipped == shards committed before the kill), every frame exactly once.

The job runs as `python -m jobs.cli ingest --ray-address ...` in a subprocess, as in production.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from fixtures_ray import REPO, worker_env
from ingest_helpers import make_model, themis_copies
from shard_fixtures import read_codes

from pipeline import storage
from pipeline.codes import catalogue, store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COPIES = 8  # x 6 real PGM minute files = 48 archive files, 960 frames


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("fault_model") / "ckpt", size=32, bits=32)


def _start(address: str, src, out, model_dir, *extra) -> subprocess.Popen:
    env = dict(os.environ, **worker_env(), RAY_ADDRESS=address)
    cmd = [sys.executable, "-m", "jobs.cli", "ingest", "--source", str(src), "--out", str(out)]
    cmd += ["--model", model_dir, "--progress-interval", "2", "--batch-size", "16", *extra]
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for_shards(proc, out, n, timeout=240) -> int:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        k = len(store.list_shards(str(out)))
        if k >= n or proc.poll() is not None:
            return k
        time.sleep(0.1)
    raise AssertionError(f"fewer than {n} shards after {timeout}s")


def _finish(proc, timeout=600) -> tuple[int, dict, str]:
    stdout, stderr = proc.communicate(timeout=timeout)
    lines = [ln for ln in stdout.strip().splitlines() if ln.startswith("{")]
    return proc.returncode, (json.loads(lines[-1]) if lines else {}), stderr


def _assert_exactly_once(out, expected_ids):
    table = read_codes(str(out))
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)), "a frame appears twice"
    assert set(ids) == expected_ids, "frames missing or unexpected"
    assert len(store.list_shards(str(out))) == len({i.split("#")[0] for i in expected_ids})


def test_driver_killed_mid_run_then_rerun_completes_only_the_rest(ray_cluster, model_dir, tmp_path):
    c, _ = ray_cluster
    expected = themis_copies(tmp_path / "archive", COPIES)
    n_files = len({i.split("#")[0] for i in expected})
    out = tmp_path / "out"
    proc = _start(c.address, tmp_path / "archive", out, model_dir)
    k = _wait_for_shards(proc, out, 4)
    assert proc.poll() is None, "the job finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    written = len(store.list_shards(str(out)))  # whole shards only: writes are atomic
    assert k <= written < n_files
    # done: the shards with a pending mark (written in batches after them, docs/INTERFACES.md
    # "Pending marks"); a shard whose mark the kill prevented is redone, not lost or doubled
    (root,) = catalogue.model_roots(storage.location(str(out)))
    committed = len(catalogue.committed_files(root))
    assert committed <= written

    rc, summary, err = _finish(_start(c.address, tmp_path / "archive", out, model_dir))
    assert rc == 0, err[-3000:]
    assert summary["files_skipped"] == committed
    assert summary["files_done"] == n_files - committed
    assert summary["frames"] == 20 * (n_files - committed)
    _assert_exactly_once(out, expected)


def test_worker_node_lost_mid_run_job_still_completes(ray_cluster, model_dir, tmp_path):
    c, workers = ray_cluster
    expected = themis_copies(tmp_path / "archive", COPIES)
    n_files = len({i.split("#")[0] for i in expected})
    out = tmp_path / "out"
    proc = _start(c.address, tmp_path / "archive", out, model_dir)
    _wait_for_shards(proc, out, 3)
    assert proc.poll() is None, "the job finished before a node could be killed"
    c.remove_node(workers[0], allow_graceful=False)  # hard kill: raylet and its workers
    rc, summary, err = _finish(proc)
    assert rc == 0, err[-3000:]
    assert summary["files_done"] == n_files and summary["files_failed"] == 0
    assert summary["frames"] == len(expected)
    _assert_exactly_once(out, expected)
