"""No job's process outlives it (issue 20): ingest and search run as the CLI runs them, with a
local Ray, and no process of theirs may be alive once they have exited.

A job's processes are found by a variable in its environment, which Ray's raylet and every
worker it starts inherit: never by name, since other Ray instances run on the same machine. A
monitor notes them while the job runs, so the test also proves that Ray did run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import uuid

import pytest
from fixtures_ray import REPO, worker_env
from ingest_helpers import make_model

from jobs.cli import main
from pipeline.lifecycle import leftovers

TAG = "AURORAHASH_TEST_JOB_TAG"


# ------------------------------------------------------------------------------ the helpers


def _sleeper(env: dict | None = None, ignore_term: bool = False) -> subprocess.Popen:
    code = "import signal, time\n"
    if ignore_term:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    code += "print('ready', flush=True)\ntime.sleep(600)\n"
    p = subprocess.Popen(
        [sys.executable, "-c", code], env={**os.environ, **(env or {})}, stdout=subprocess.PIPE
    )
    assert p.stdout.readline().strip() == b"ready"
    return p


def test_processes_are_found_by_environment_and_killed():
    tag = uuid.uuid4().hex
    p = _sleeper({TAG: tag})
    try:
        found = leftovers.with_env(TAG, tag)
        assert [q.pid for q in found] == [p.pid]
        assert p.pid in [q.pid for q in leftovers.descendants(os.getpid())]
        assert leftovers.wait_gone(found, 0.3) == found  # it sleeps: still alive
        assert not leftovers.alive(leftovers.Proc(p.pid, found[0].start + 1))  # a reused pid
        assert leftovers.kill(found) == found
        p.wait(timeout=10)
        assert not leftovers.alive(found[0]) and leftovers.with_env(TAG, tag) == []
        assert leftovers.kill(found) == []  # nothing left to kill
    finally:
        p.kill()
        p.wait()


def test_orphans_of_a_session_are_reaped_by_the_job_not_left_to_pid_1():
    """A worker whose parent (the raylet) ends first: inside `adopting_orphans` it becomes the
    job's child, and once it has ended it is reaped, so no zombie of it is left."""
    code = "import subprocess; q = subprocess.Popen(['sleep', '0.5']); print(q.pid, flush=True)"
    with leftovers.adopting_orphans():
        parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
        orphan = leftovers.proc(int(parent.stdout.readline()))
        parent.wait()  # the orphan's parent is gone: it is ours now, still sleeping
        assert leftovers._stat(orphan.pid)[1] == os.getpid()
        assert leftovers.wait_gone([orphan], 10) == []  # ended: a zombie of ours
        assert leftovers.proc(orphan.pid) == orphan
    assert leftovers.proc(orphan.pid) is None  # reaped on leaving
    assert leftovers.reap([orphan]) == 0


def test_quick_exit_waits_for_the_resource_tracker_of_a_spawn_pool():
    """A spawn pool starts multiprocessing's resource tracker, which ends when its pipe closes:
    after `os._exit` that was a moment after the job, as pid 1's orphan (seen in the demo)."""
    code = textwrap.dedent(
        """
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import resource_tracker
        from pipeline.lifecycle.quick_exit import quick_exit
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
            ex.submit(int).result()
        print(resource_tracker._resource_tracker._pid, flush=True)
        quick_exit(0)
        """
    )
    p = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 0
    assert leftovers._stat(int(out)) is None  # not running, not a zombie: waited for


def test_actor_exit_skips_teardown_only_in_a_ray_worker(tmp_path):
    from pipeline.ingest import actor_exit

    assert actor_exit.exit_without_teardown() is False  # pytest is no Ray worker
    # A Ray worker's exit, simulated: a callback registered before ours (as Ray's own shutdown
    # and torch's are) and a finaliser must not run; the log line must reach the file.
    log = tmp_path / "actor.log"
    code = f"""
        import atexit, logging, sys, weakref
        from pipeline.ingest import actor_exit
        atexit.register(print, "teardown ran")
        class Held: pass
        held = Held(); weakref.finalize(held, print, "finaliser ran")
        actor_exit._in_ray_worker = lambda: True
        assert actor_exit.exit_without_teardown() and actor_exit.exit_without_teardown()
        logging.basicConfig(filename={str(log)!r}, level=logging.INFO)
        logging.getLogger("x").info("encoded")
        print("done")
        sys.exit(0)
    """
    env = {**os.environ, **worker_env()}
    p = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env, capture_output=True
    )
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    assert p.stdout.decode().split() == ["done"]
    assert "encoded" in log.read_text()


@pytest.mark.integration
def test_shutdown_kills_a_worker_that_left_the_raylet():
    """A process that carries the session's RAY_RAYLET_PID and ignores SIGTERM (an actor stuck
    in its teardown) is killed by `shutdown_ray`, and nothing of the session is left."""
    import ray

    from pipeline.ray_runtime import _own_node, init_ray, shutdown_ray

    if ray.is_initialized():
        ray.shutdown()
    assert init_ray()
    raylet, own = _own_node()
    assert raylet is not None and own
    stuck = _sleeper({"RAY_RAYLET_PID": str(raylet)}, ignore_term=True)
    try:
        session = own + leftovers.descendants(raylet)
        killed = shutdown_ray(grace=1.0)
        assert [k.pid for k in killed] == [stuck.pid]
        assert stuck.wait(timeout=10) == -9
        assert not [p for p in session if leftovers.alive(p)]
    finally:
        stuck.kill()
        stuck.wait()


# ------------------------------------------------------------------------------- the jobs


class Watch:
    """Run `aurorahash ARGV` as a subprocess with a tag; note every tagged process meanwhile.
    With `sigterm_when`, send the job SIGTERM once `sigterm_when(self)` holds (as a scheduler
    stops a job); `self.sigterm_sent` says whether it did."""

    def __init__(self, *argv, timeout: float = 600, sigterm_when=None):
        self.tag, self.sigterm_when, self.sigterm_sent = uuid.uuid4().hex, sigterm_when, False
        env = {**os.environ, **worker_env(), TAG: self.tag}
        env.pop("RAY_ADDRESS", None)  # a local Ray of its own, as a job on a bare machine
        cmd = [sys.executable, "-m", "jobs.cli", *map(str, argv)]
        self.seen: dict[leftovers.Proc, set[str]] = {}  # a worker's title changes as it starts
        stop = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(stop,), daemon=True)
        p = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._proc = p
        watcher.start()
        try:
            out, err = p.communicate(timeout=timeout)
        finally:
            stop.set()
            watcher.join()
            if p.poll() is None:  # timed out: end the job and all of its processes
                leftovers.kill(leftovers.with_env(TAG, self.tag))
                p.wait()
        self.rc, self.stderr = p.returncode, err.decode(errors="replace")
        lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
        self.summary = json.loads(lines[-1]) if lines else {}
        found = {*self.seen, *leftovers.with_env(TAG, self.tag)}
        # in the process table at all: a zombie of pid 1 (its parent gone) counts as left too
        self.left = [q for q in found if leftovers.proc(q.pid) == q]
        self.left_states = {q: (leftovers._stat(q.pid) or ("gone", 0, 0))[:2] for q in self.left}
        leftovers.kill(self.left)  # a failing test leaves nothing behind either

    def _watch(self, stop: threading.Event) -> None:
        while not stop.wait(0.2):
            for q in leftovers.with_env(TAG, self.tag):
                self.seen.setdefault(q, set()).add(leftovers.describe(q))
            if self.sigterm_when and not self.sigterm_sent and self.sigterm_when(self):
                self._proc.send_signal(signal.SIGTERM)
                self.sigterm_sent = True

    def ray_workers(self) -> list[str]:
        return [name for names in self.seen.values() for name in names if "ray::" in name]

    def assert_clean(self, rc: int = 0) -> None:
        assert self.rc == rc, self.stderr[-3000:]
        names = [
            (self.seen.get(q) or {leftovers.describe(q)}, self.left_states[q]) for q in self.left
        ]
        assert not self.left, f"outlived the job: {names}"


def _synth(capsys, out, frames: int, seed: int) -> None:
    argv = ["synth", "--out", str(out), "--frames", str(frames), "--seed", str(seed)]
    assert main([*argv, "--format", "pgm.gz", "--size", "64"]) == 0
    capsys.readouterr()


def _ray_flag() -> list[str]:
    """`--ray` where search has it (it may choose to run in-process for small work)."""
    from jobs.cli import build_parser

    parser, _ = build_parser("search")
    sub = next(a for a in parser._actions if a.dest == "job").choices["search"]
    return ["--ray"] if "--ray" in sub._option_string_actions else []


@pytest.mark.integration
@pytest.mark.slow
def test_ingest_and_search_with_ray_leave_no_process(tmp_path, capsys):
    archive, codes = tmp_path / "archive", tmp_path / "codes"
    _synth(capsys, archive, 40, 0)
    model = make_model(tmp_path / "model", size=32)
    ingest = Watch("ingest", "--source", archive, "--out", codes, "--model", model)
    ingest.assert_clean()
    assert ingest.summary["frames"] == 40 and ingest.summary["files_failed"] == 0
    assert any("HashEncoder" in n for n in ingest.ray_workers()), ingest.seen
    search = Watch("search", "--codes", codes, "--queries", codes, "--n-queries", "2", *_ray_flag())
    search.assert_clean()
    assert len(search.summary["neighbors"]) == 2
    assert search.ray_workers(), search.seen  # the search ran Ray tasks


@pytest.mark.integration
@pytest.mark.slow
def test_demo_leaves_no_process(tmp_path):
    """The demo (train, then two ingests, compaction and benchmark in one Ray session) is where
    an encoder actor was orphaned: it was still tearing down when the session was shut down."""
    demo = Watch(
        "demo", "--workdir", tmp_path / "demo", "--frames", 60, "--query-frames", 20,
        "--n-train", 60, "--epochs", 1, "--size", 32, "--bits", 16, timeout=2400,
    )  # fmt: skip
    demo.assert_clean()
    assert demo.summary["ingest_archive"]["frames"] == 60
    assert sum("HashEncoder" in n for n in demo.ray_workers()) >= 1


def test_the_command_leaves_without_teardown_and_delivers_its_summary(tmp_path):
    """`cli` ends the process with the job's code through `exit_now`: the summary and the log
    are out, and no teardown ran (an atexit callback stands for it)."""
    code = f"""
        import atexit, sys
        atexit.register(print, "teardown ran")
        sys.argv = ["aurorahash", "compact", "--codes", {str(tmp_path / "none")!r}]
        from jobs.cli import cli
        cli()
    """
    env = {**os.environ, **worker_env()}
    p = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env, capture_output=True
    )
    out = p.stdout.decode().splitlines()
    assert p.returncode == 2, p.stderr.decode()[-2000:]  # bad input: not found
    assert json.loads(out[-1])["ok"] is False and "teardown ran" not in out
    assert "not found" in p.stderr.decode()  # the log line, flushed
