"""Compaction that streams: units of whole nights, run in this process, in local worker
processes or as Ray tasks on every node, committed in bounded batches, each atomic.

Every check compares against the in-memory kernels on the concatenated codes in canonical order
(`code_archive`), and checks that every frame is read exactly once.
"""

from __future__ import annotations

import functools
import logging
import os

import pyarrow.parquet as pq
import pytest
from code_archive import Archive, assert_equals_kernels, assert_exactly_once
from test_compact import _compact_cmd, _run

from pipeline.codes import (
    catalogue,
    compact,
    compact_plan,
    compact_runners,
    compact_unit,
    segments,
    store,
)
from pipeline.codes.segments import SegmentTable
from pipeline.synth.codes import archive_relpaths


def _nights(n_files: int, nights: int) -> list[str]:
    """`n_files` minute files spread over `nights` day folders (groups)."""
    rels = archive_relpaths(n_files)
    return [r.replace("/10/", f"/{10 + i % nights}/") for i, r in enumerate(rels)]


@pytest.fixture
def arch(tmp_path):
    a = Archive(tmp_path / "codes")
    a.write(_nights(120, 6))  # 6 nights of 20 files x 20 rows = 400 rows each
    return a


def _versions_hold_each_frame_once(arch) -> list[int]:
    """For every table version: its segments hold no (file, frame) twice; the rows per version."""
    table = SegmentTable(arch.model_loc())
    rows = []
    for v in range(table.open().version() + 1):
        seen = set()
        for uri in table.open(v).file_uris():
            t = pq.read_table(uri, columns=["file", "frame"])
            pairs = set(zip(t["file"].to_pylist(), t["frame"].to_pylist(), strict=True))
            assert len(pairs) == t.num_rows and not (pairs & seen), f"version {v}"
            seen |= pairs
        rows.append(len(seen))
    return rows


def test_segments_are_committed_in_bounded_batches(arch):
    s = compact.compact(arch.root, target_rows=400, batch_rows=800)
    assert s["files"] == 120 and s["rows"] == 2400
    assert s["segments_written"] == 6  # one per night
    assert s["commits"] == 3  # 2 segments a batch: each commit holds <= 800 rows
    rows = _versions_hold_each_frame_once(arch)
    assert rows == [0, 800, 1600, 2400]  # version 0 is the empty table
    assert not arch.catalogue().shards
    assert_exactly_once(arch)
    assert_equals_kernels(arch)


def _units(arch, target=400):
    table = SegmentTable(arch.model_loc())
    seg = table.state(with_files=False)
    return list(compact_plan.Planner(arch.model_loc(), seg, target, 4).units())


def test_units_are_whole_nights_and_cut_like_the_rule(arch):
    units = _units(arch)
    assert len(units) == 6 and [len(u.shards) for u in units] == [20] * 6
    assert all(u.rows == 400 for u in units)  # estimated from sampled footers: exact here
    listed = set(store.list_shards(arch.root))
    for u in units:
        assert len({compact.group_key(rel, 4) for rel, _ in u.shards}) == 1
        # a unit holds relpaths; the URI a worker reads is the one listed
        assert {compact_unit.shard_at(arch.model_loc(), r) for r, _ in u.shards} <= listed
    # a later compaction that adds a file inside a night rewrites that night's segment in the
    # same unit as the new shard
    compact.compact(arch.root, target_rows=400)
    assert _units(arch) == []
    arch.write([_nights(130, 6)[125]], seed=7)
    (unit,) = _units(arch)
    assert len(unit.shards) == 1 and len(unit.rewrite) == 1
    s = compact.compact(arch.root, target_rows=400)
    assert s["segments_replaced"] == 1 and s["files"] == 1
    assert_exactly_once(arch)
    assert_equals_kernels(arch)


def test_groups_are_listed_one_at_a_time_in_canonical_order(tmp_path):
    a = Archive(tmp_path / "codes")
    day = "stream0/2014/03/10"  # site folders are the groups at depth 5; loose files between
    loose = [f"{day}/aaa_x.pgm", f"{day}/hhh_x.pgm", f"{day}/zzz_x.pgm", f"{day}-x/abc_q.pgm"]
    rels = _nights(40, 2) + loose
    a.write(rels)
    groups = list(compact_plan.shard_groups(a.model_loc(), 5))
    root = a.model_loc().uri
    listed = [sorted(catalogue.shard_relpath(u, root) for u in g) for g in groups]
    assert sorted(r for g in listed for r in g) == sorted(rels)
    assert len(listed) == 4 + 4  # 4 (night, site) folders, 4 runs of loose files
    for g in listed:  # each within one group
        assert len({compact.group_key(r, 5) for r in g}) == 1
    spans = [(g[0], g[-1]) for g in listed]
    assert all(spans[i][1] < spans[i + 1][0] for i in range(len(spans) - 1))  # in order
    compact.compact(a.root, target_rows=100, group_depth=5)
    assert not a.catalogue().shards
    assert_exactly_once(a)
    assert_equals_kernels(a)


def test_local_worker_processes_without_ray(arch):
    runner = compact_runners.LocalProcesses(2)
    s = compact.compact(arch.root, target_rows=400, runner=runner)
    assert s["runner"] == "local-processes" and s["workers"] == 2 and s["nodes"] == 1
    assert s["files"] == 120 and s["segments_written"] == 6
    import multiprocessing

    assert not multiprocessing.active_children()  # the pool is gone with the job
    assert_exactly_once(arch)
    assert_equals_kernels(arch)


def _pid(job, unit):
    return os.getpid()


@pytest.mark.parametrize(
    "rows, pool",
    [
        ([10], False),  # one night: in this process, no start-up
        ([10, 10], True),  # a second unit: the workers
        ([100], True),  # a full unit: more is pending, workers at once (the next one not planned)
    ],
)
def test_local_processes_start_workers_only_for_several_units(rows, pool):
    from types import SimpleNamespace as NS

    planned = []

    def calls():
        for i, n in enumerate(rows):
            planned.append(i)
            yield NS(target=100), NS(rows=n)

    runner = compact_runners.LocalProcesses(2)
    it = runner.run(_pid, calls())
    first = next(it)
    if rows == [100]:
        assert planned == [0]  # started before planning on
    assert (first != os.getpid()) is pool
    assert all((p != os.getpid()) is pool for p in it)
    import multiprocessing

    assert not multiprocessing.active_children()


@pytest.mark.integration
def test_killed_after_a_batch_keeps_it_and_the_rerun_does_the_rest(arch):
    cmd = _compact_cmd(arch.root, "--no-vacuum", "--batch-rows", "800", "--workers", "2")
    rc, _, err = _run(cmd, {"AURORAHASH_FAULT": "compact:after-commit"})
    assert rc == 137, err[-2000:]
    cat = arch.catalogue()
    assert cat.table_version == 1  # the empty table, then the first batch
    done = 120 - len(cat.shards)
    assert 0 < done < 120  # killed mid-run: the committed batch is there
    assert_exactly_once(arch)
    rc, s, err = _run(cmd)
    assert rc == 0, err[-2000:]
    assert s["files"] == 120 - done and s["commits"] >= 1
    assert not arch.catalogue().shards
    assert _versions_hold_each_frame_once(arch)[-1] == 2400
    assert_exactly_once(arch)
    assert_equals_kernels(arch)


@pytest.mark.integration
@pytest.mark.slow
def test_units_run_on_every_node_of_a_cluster(arch, ray_cluster):
    import ray

    cluster, workers = ray_cluster
    ray.init(address=cluster.address)
    try:
        s = compact.compact(arch.root, target_rows=400, runner=compact_runners.RayTasks())
    finally:
        ray.shutdown()
    assert s["runner"] == "ray" and s["nodes"] == len(workers) == 2
    assert s["files"] == 120 and s["segments_written"] == 6
    for p in arch.catalogue().segments:  # each written by its node, readable here
        assert segments.read_parquet(arch.loc.at(p.uri), columns=["file"]).num_rows == 400
    assert_exactly_once(arch)
    assert_equals_kernels(arch)


def test_worker_exits_when_its_driver_is_gone(tmp_path):
    """A killed driver's worker processes do not outlive it (the parent watch)."""
    import subprocess
    import sys
    import time

    code = (
        "import os, sys, time\n"
        "from pipeline.codes import compact_runners\n"
        "parent = os.getpid()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.close(1); compact_runners._watch_parent(parent); time.sleep(30); sys.exit(0)\n"
        "print(pid, flush=True); os._exit(0)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    child = int(out.stdout.split()[0])
    for _ in range(40):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.25)
    os.kill(child, 9)
    pytest.fail("the worker outlived its driver")


def test_progress_shows_the_shards_planned_so_far(arch, monkeypatch, caplog):
    """The plan streams, so the total grows: a line says how many shards are planned so far
    (never "/0"), and the last one, once the plan is complete, the plain total."""
    monkeypatch.setattr(compact, "Progress", functools.partial(compact.Progress, interval=0))
    with caplog.at_level(logging.INFO, logger="aurorahash.progress"):
        compact.compact(arch.root, target_rows=400)
    lines = [r.getMessage() for r in caplog.records if r.name == "aurorahash.progress"]
    assert lines[0].startswith("compact: 20/20+ shards planned so far, 400 rows")
    assert lines[-2].startswith("compact: 120/120+ shards planned so far, 2400 rows")
    assert lines[-1].startswith("compact: 120/120 shards, 2400 rows")
    assert not any("/0 " in line for line in lines)


@pytest.mark.integration
@pytest.mark.slow
def test_the_job_picks_ray_or_local_processes_as_the_options_say(arch):
    """`compact --no-ray` stays on local processes even where a cluster is named; `--ray`
    without one starts a local instance and runs the units as Ray tasks."""
    no_cluster = {"RAY_ADDRESS": "127.0.0.1:1"}  # nothing listens: joining it would fail
    rc, s, err = _run(_compact_cmd(arch.root, "--no-ray", "--batch-rows", "800"), no_cluster)
    assert rc == 0 and s["runner"] == "local-processes", err[-2000:]
    arch.write([_nights(130, 6)[125]], seed=7)  # something new for the second run
    rc, s, err = _run(_compact_cmd(arch.root, "--ray"), {"RAY_ADDRESS": ""})  # no cluster
    assert rc == 0 and s["runner"] == "ray" and s["files"] == 1, err[-2000:]
    assert "units run as Ray tasks on a local instance (--ray)" in err
    assert_exactly_once(arch)
