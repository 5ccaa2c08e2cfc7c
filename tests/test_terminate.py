"""SIGTERM (how a scheduler stops a job) unwinds the job like Ctrl-C: its `finally` blocks run,
the command prints a summary with ok false and exits 143 (`pipeline.lifecycle.terminate`).

The fast test runs the command with a job that blocks (a module put into `jobs.cli.JOBS`);
the integration test stops a real `ingest` while its Ray encoder actors run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from fixtures_ray import REPO, worker_env

from pipeline import storage
from pipeline.codes import store
from pipeline.lifecycle import terminate

BLOCKING_JOB = """
    import signal, sys, time, types
    from jobs import cli
    from pipeline.lifecycle import terminate

    job = types.ModuleType("blockjob")
    job.HELP = "blocks until stopped"
    job.add_arguments = lambda parser: None

    def run(args):
        with terminate.kept():  # as around ray.init, which sets a handler of its own
            signal.signal(signal.SIGTERM, lambda *a: sys.exit(15))
        try:
            print("ready", file=sys.stderr, flush=True)
            time.sleep(120)
        finally:
            open({marker!r}, "w").write("cleaned up")
        return {{}}

    job.run = run
    sys.modules["blockjob"] = job
    cli.JOBS["block"] = "blockjob"
    sys.argv = ["aurorahash", "block"]
    cli.cli()
"""


def test_sigterm_unwinds_the_job_and_exits_143(tmp_path):
    marker = tmp_path / "finally"
    code = textwrap.dedent(BLOCKING_JOB.format(marker=str(marker)))
    env = {**os.environ, **worker_env()}
    p = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert p.stderr.readline().strip() == b"ready"
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
        p.wait()
    assert p.returncode == terminate.EXIT_CODE == 143, err.decode()[-2000:]
    summary = json.loads(out.decode().splitlines()[-1])
    assert summary == {"job": "block", "ok": False, "error": "terminated (SIGTERM)"}
    assert "terminated (SIGTERM)" in err.decode()
    assert marker.read_text() == "cleaned up"  # the job's finally ran


def test_the_handler_is_scoped_to_the_job():
    before = signal.getsignal(signal.SIGTERM)
    with terminate.raising():
        assert signal.getsignal(signal.SIGTERM) is not before
        assert not terminate.received()
    assert signal.getsignal(signal.SIGTERM) is before


# ---------------------------------------------------------------------- ingest with Ray


COPIES = 8  # x 6 real PGM minute files = 48 archive files, 960 frames


def _visible(root) -> list[str]:
    """Files a reader or a listing would take for data: no path component hidden (_ or .)."""
    out = []
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not storage.is_hidden(d)]
        out += [os.path.join(dirpath, f) for f in files if not storage.is_hidden(f)]
    return sorted(out)


@pytest.mark.integration
@pytest.mark.slow
def test_sigterm_stops_ingest_with_ray_clean_and_a_rerun_completes(tmp_path):
    """SIGTERM while the encoder actors run and some shards are committed: exit 143, no process
    of the job left, every visible file a whole shard; a re-run does the rest, every frame
    exactly once."""
    import pyarrow.parquet as pq
    from ingest_helpers import make_model, themis_copies
    from shard_fixtures import read_codes
    from test_leftovers import Watch

    archive, codes = tmp_path / "archive", tmp_path / "codes"
    ids = themis_copies(archive, COPIES)
    model = make_model(tmp_path / "model", size=32)
    argv = ["ingest", "--source", archive, "--out", codes, "--model", model, "--batch-size", 16]

    def encoding_and_committed(w) -> bool:
        encoding = any("HashEncoder" in n for n in w.ray_workers())
        return encoding and bool(store.list_shards(str(codes)))

    stopped = Watch(*argv, sigterm_when=encoding_and_committed)
    assert stopped.sigterm_sent, stopped.seen
    stopped.assert_clean(rc=143)  # and no process of the job outlived it
    assert stopped.summary == {"job": "ingest", "ok": False, "error": "terminated (SIGTERM)"}
    assert "terminated (SIGTERM)" in stopped.stderr
    assert "file(s) not finished, for the next run" in stopped.stderr
    assert "incomplete:" not in stopped.stderr  # unfinished is not failed
    shards = store.list_shards(str(codes))
    assert 0 < len(shards) < 6 * COPIES, "stopped before the end"
    assert [f for f in _visible(codes) if not f.endswith(store.SHARD_SUFFIX)] == []
    for uri in shards:  # whole Parquet files, 20 frames each
        assert pq.read_metadata(uri).num_rows == 20, uri

    again = Watch(*argv)
    again.assert_clean()
    assert again.summary["files_skipped"] == len(shards)
    read = read_codes(str(codes)).column("id").to_pylist()
    assert len(read) == len(set(read)) == len(ids) and set(read) == ids
