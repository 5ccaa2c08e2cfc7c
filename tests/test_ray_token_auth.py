"""Ray token authentication (Ray >= 2.52): a node or driver without the cluster's token is refused.

A local multi-process cluster, set up as KubeRay's `authOptions: {mode: token}` sets up each pod:
`ray start --head` with RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (from the secret), then worker
nodes joining with `ray start --address`. A wrong token and no token are refused; the right token,
read from a file with a trailing newline (as infra/README.md makes it), joins.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]
RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """`ray start` processes, each in its own process group so that only they are stopped."""

    def __init__(self, root: Path):
        self.root = root
        self.procs: list[subprocess.Popen] = []
        self.address = f"127.0.0.1:{_free_port()}"
        (root / "home").mkdir()
        base = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "AWS_"))}
        # HOME: no ~/.ray/auth_token of this machine; RAY_TMPDIR: sessions and sockets in root
        self.base = dict(base, HOME=str(root / "home"), RAY_TMPDIR=str(root))
        self.base.update(RAY_USAGE_STATS_ENABLED="0", RAY_enable_metrics_collection="0")

    def env(self, **auth) -> dict:
        return dict(self.base, **auth)

    def start(self, args: list[str], env: dict, log: str) -> tuple[subprocess.Popen, Path]:
        path = self.root / log
        with open(path, "w") as out:
            p = subprocess.Popen(
                [RAY, "start", "--block", "--node-ip-address=127.0.0.1", *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(p)
        return p, path

    def join(self, env: dict, log: str, timeout: float = 120) -> tuple[int | None, str]:
        """A worker node's `ray start`: its exit code (None: still running, so it joined)."""
        p, path = self.start([f"--address={self.address}", "--num-cpus=1"], env, log)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, path.read_text()
        return p.returncode, path.read_text()

    def driver(self, env: dict, want_nodes: int | None = None, timeout: float = 120):
        """Connect as a driver; the alive nodes' count (after waiting for `want_nodes`)."""
        code = (
            "import json, sys, time, ray\n"
            f"ray.init(address={self.address!r}, log_to_driver=False)\n"
            f"t = time.time() + {timeout}\n"
            "while True:\n"
            "    n = sum(x['Alive'] for x in ray.nodes())\n"
            f"    if n == {want_nodes!r} or {want_nodes!r} is None or time.time() > t: break\n"
            "    time.sleep(1)\n"
            "print(json.dumps({'alive': n}))\n"
        )
        p = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout + 120,
        )
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
        return (json.loads(lines[-1])["alive"] if lines else None), p.stdout + p.stderr

    def stop(self) -> None:
        for p in self.procs:
            with_group(p, signal.SIGTERM)
        t_end = time.monotonic() + 10
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=max(0.1, t_end - time.monotonic()))
            with_group(p, signal.SIGKILL)  # the group's raylet, GCS, workers and all


def with_group(p: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(p.pid, sig)  # the group that start_new_session made for this process


@pytest.fixture
def cluster():
    root = Path(tempfile.mkdtemp(prefix="ta", dir="/tmp"))  # short: Ray's socket paths must fit
    c = LocalCluster(root)
    try:
        yield c
    finally:
        c.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_worker_without_the_token_is_refused(cluster):
    token = secrets.token_hex(32)
    head, log = cluster.start(
        [
            f"--port={cluster.address.split(':')[1]}",
            "--head",
            "--num-cpus=0",
            "--include-dashboard=false",
        ],
        cluster.env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token),
        "head.log",
    )
    t_end = time.monotonic() + 180
    while "Ray runtime started" not in log.read_text():
        assert head.poll() is None and time.monotonic() < t_end, log.read_text()[-3000:]
        time.sleep(1)
    fail_fast = {"RAY_gcs_server_port_wait_time_s": "5"}  # a refused node retries 5 s, not 20

    rc, out = cluster.join(
        cluster.env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="not-" + token, **fail_fast), "w1.log"
    )
    assert rc not in (None, 0) and "InvalidAuthToken" in out, out[-3000:]
    rc, out = cluster.join(cluster.env(RAY_AUTH_MODE="disabled", **fail_fast), "w2.log")
    assert rc not in (None, 0) and "InvalidAuthToken" in out, out[-3000:]
    alive, out = cluster.driver(cluster.env(RAY_AUTH_MODE="disabled", **fail_fast))
    assert alive is None and "InvalidAuthToken" in out, out[-3000:]  # a driver too
    good = cluster.env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    alive, out = cluster.driver(good, want_nodes=1, timeout=5)
    assert alive == 1, out[-3000:]  # the head alone: neither refused worker registered

    # the right token, from a file ending in a newline (openssl rand -hex 32 > auth_token)
    token_file = cluster.root / "auth_token"
    token_file.write_text(token + "\n")
    rc, out = cluster.join(
        cluster.env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file)), "w3.log", 20
    )
    assert rc is None, out[-3000:]  # still running: it joined
    alive, out = cluster.driver(good, want_nodes=2)
    assert alive == 2, out[-3000:]
