"""Compaction into search segments: incremental, exactly once, one canonical order, atomic.

Every check compares against the in-memory kernels on the concatenated codes in canonical
(archive relative path, frame) order, on 12-bit codes of 3 classes (many ties at every distance).
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from code_archive import (
    CLASSES,
    MODEL,
    NBITS,
    Archive,
    assert_equals_kernels,
    assert_exactly_once,
)
from fixtures_ray import REPO, worker_env

from pipeline import storage
from pipeline.codes import catalogue, compact, segments, store, vacuum
from pipeline.codes.segments import SegmentTable
from pipeline.errors import BadInput
from pipeline.synth.codes import archive_relpaths, make_codes, write_code_shards


@pytest.fixture
def arch(tmp_path):
    a = Archive(tmp_path / "codes")
    a.write(archive_relpaths(120))
    return a


def test_compact_keeps_results_and_is_incremental(arch):
    before = assert_equals_kernels(arch)
    s = compact.compact(arch.root, target_rows=500)
    assert s["files"] == 120 and s["rows"] == 2400 and s["segments_written"] >= 3
    cat = arch.catalogue()
    assert not cat.shards and len({p.name for p in cat.segments}) == s["segments_written"]
    after = assert_equals_kernels(arch)
    np.testing.assert_array_equal(before[0].indices, after[0].indices)
    assert before[1].map == pytest.approx(after[1].map, abs=1e-12)
    assert compact.compact(arch.root, target_rows=500)["files"] == 0  # nothing new: no commit
    # New minutes of every site: they sort in between the compacted ones (site folders).
    arch.write(archive_relpaths(150)[120:], seed=1)
    assert_equals_kernels(arch)  # segments + pending shards, merged into canonical order
    s = compact.compact(arch.root, target_rows=500)
    assert s["files"] == 30 and s["segments_replaced"] >= 1  # only the new shards were read
    assert not arch.catalogue().shards
    assert_equals_kernels(arch)
    assert_exactly_once(arch)


@pytest.mark.parametrize("task_rows", [11, 37, 400, None])
def test_one_order_for_any_grouping(arch, task_rows):
    compact.compact(arch.root, target_rows=300)
    arch.write(archive_relpaths(130)[120:], seed=2)  # pending shards inside segment ranges
    res, m = assert_equals_kernels(arch, task_rows=task_rows)
    assert res.tasks >= (2 if task_rows in (11, 37) else 1)


def test_segments_cut_at_nights(tmp_path):
    a = Archive(tmp_path / "codes")
    rels = [r.replace("/10/", f"/{10 + i % 3}/") for i, r in enumerate(archive_relpaths(90))]
    a.write(rels)  # three nights of 30 files = 600 codes each
    compact.compact(a.root, target_rows=500)
    nights = collections.defaultdict(set)
    for p in a.catalogue().segments:
        t = segments.read_parquet(a.loc.at(p.uri), columns=["file"])
        for f in set(t.column("file").to_pylist()):
            nights[compact.group_key(f, compact.DEFAULT_GROUP_DEPTH)].add(p.name)
    assert len(nights) == 3 and all(len(s) == 1 for s in nights.values())
    assert compact.cut_segments(["a/x", "a/y", "b/x"], [5, 5, 5], 5, 1) == [0, 2]
    assert compact.cut_segments(["a/x", "a/y", "a/z"], [5, 5, 5], 4, 1) == [0, 2]


def test_reingested_file_replaces_its_rows_exactly_once(arch):
    compact.compact(arch.root, target_rows=700)
    rel = sorted(arch.rows)[41]
    codes, labels = make_codes(7, NBITS, CLASSES, seed=9)  # now 7 frames, not 20
    time.sleep(0.02)  # a later modification time than the compacted shard's
    write_code_shards(
        arch.root, [rel], 7, NBITS, CLASSES, model=MODEL, codes_labels=(codes, labels)
    )
    arch.rows[rel] = (codes, labels)
    cat = arch.catalogue()
    assert [p.name for p in cat.shards] == [rel]
    assert sum(1 for p in cat.segments if rel in p.drop) == 1  # its old rows are masked
    assert_equals_kernels(arch)
    assert_exactly_once(arch)
    s = compact.compact(arch.root, target_rows=700)
    assert s["files"] == 1 and s["segments_replaced"] == 1
    assert not arch.catalogue().shards
    assert_equals_kernels(arch)
    assert_exactly_once(arch)
    # --query-id reads the one segment that holds the file
    found = catalogue.lookup_ids(arch.catalogue(), [f"{rel}#6", f"{rel}#7"])
    assert found.column("id").to_pylist() == [f"{rel}#6"]


def test_vacuum_removes_superseded_files_only(arch, tmp_path):
    compact.compact(arch.root, target_rows=700)
    arch.write(archive_relpaths(140)[120:], seed=3)
    compact.compact(arch.root, target_rows=700)
    root = arch.model_root()
    tmp = os.path.join(root, "stream0", ".tmp-0123-x.parquet")
    open(tmp, "wb").close()
    os.utime(tmp, (time.time() - 7200, time.time() - 7200))
    kept = vacuum.vacuum(root, grace_hours=6)  # everything is younger than 6 h
    assert kept == {"segment_files_removed": 0, "shards_removed": 0, "temp_files_removed": 0}
    out = vacuum.vacuum(arch.model_loc(), grace_hours=0)
    assert out["shards_removed"] == 140 and out["temp_files_removed"] == 1
    assert out["segment_files_removed"] >= 1 and not os.path.exists(tmp)
    assert not store.list_shards(root)
    files = {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}
    live = {os.path.relpath(p.uri, root) for p in arch.catalogue().segments}
    assert {f for f in files if f.endswith(".parquet")} == live
    assert_equals_kernels(arch)
    # ingest still knows every file as done (from the segments), with its shard's mtime
    done = catalogue.committed_files(root)
    assert set(done) == set(arch.rows) and all(isinstance(m, float) for m in done.values())


# ------------------------------------------------------------------------ killed and concurrent


def _compact_cmd(root, *extra):
    cmd = [sys.executable, "-m", "jobs.cli", "compact", "--codes", str(root)]
    return [*cmd, "--target-rows", "400", "--grace-hours", "0", *extra]


def _run(cmd, env=None, timeout=300):
    env = dict(os.environ, **worker_env(), **(env or {}))
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    return p.returncode, (json.loads(lines[-1]) if lines else {}), p.stderr


def _run_two_at_once(cmd, env=None) -> list[dict]:
    """Start `cmd` twice at the same moment; both must succeed; their JSON summaries."""
    env = dict(os.environ, **worker_env(), **(env or {}))
    pipes = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, **pipes) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    return [json.loads(o[0].strip().splitlines()[-1]) for o in outs]


@pytest.mark.integration
@pytest.mark.parametrize("point", ["compact:before-commit", "compact:after-commit"])
def test_compaction_killed_at_commit_then_rerun(arch, point):
    compact.compact(arch.root, target_rows=400)
    arch.write(archive_relpaths(160)[120:], seed=4)
    version = arch.catalogue().table_version
    rc, _, err = _run(_compact_cmd(arch.root), {"AURORAHASH_FAULT": point})
    assert rc == 137, err[-2000:]
    cat = arch.catalogue()
    assert cat.table_version == (version if point.endswith("before-commit") else version + 1)
    assert_exactly_once(arch)  # readers see the old or the new state, never a mix
    rc, s, err = _run(_compact_cmd(arch.root))
    assert rc == 0, err[-2000:]
    assert s["files"] == (40 if point.endswith("before-commit") else 0)
    assert not arch.catalogue().shards
    assert_exactly_once(arch)
    assert_equals_kernels(arch)


@pytest.mark.integration
@pytest.mark.slow
def test_compaction_sigkilled_at_random_moments(tmp_path):
    a = Archive(tmp_path / "codes")
    a.write(archive_relpaths(400))
    env = dict(os.environ, **worker_env())
    for delay in (0.8, 1.6, 2.4, 3.2):
        proc = subprocess.Popen(
            _compact_cmd(a.root, "--no-vacuum"),
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        assert_exactly_once(a)
        a.write(archive_relpaths(400 + int(delay * 10))[400:], seed=int(delay * 10))
    rc, s, err = _run(_compact_cmd(a.root))
    assert rc == 0, err[-2000:]
    assert not a.catalogue().shards
    assert_exactly_once(a)
    assert_equals_kernels(a)


@pytest.mark.integration
def test_concurrent_compactions_commit_each_frame_once(arch):
    summaries = _run_two_at_once(_compact_cmd(arch.root, "--no-vacuum"))
    files = [sm["files"] for sm in summaries]
    assert sorted(files) in ([0, 120], [120, 120])  # the loser re-planned: nothing or all left
    assert not arch.catalogue().shards
    assert_exactly_once(arch)
    assert_equals_kernels(arch)


# ------------------------------------------------------------------------ S3


@pytest.mark.integration
def test_compaction_through_s3(s3):
    bucket = s3.bucket("codes")
    a = Archive(f"s3://{bucket}/out", s3.storage_options)
    a.write(archive_relpaths(60))
    env = {"AWS_ENDPOINT_URL": s3.endpoint}
    rc, _, err = _run(_compact_cmd(a.root), {**env, "AURORAHASH_FAULT": "compact:before-commit"})
    assert rc == 137, err[-2000:]
    assert not a.catalogue().segments and len(a.catalogue().shards) == 60
    rc, s, err = _run(_compact_cmd(a.root), env)
    assert rc == 0 and s["files"] == 60, err[-2000:]
    assert s["vacuum"]["shards_removed"] == 60
    assert s["vacuum"]["segment_files_removed"] >= 1  # the killed run's orphan segment file
    assert not a.catalogue().shards and a.catalogue().table_version >= 1  # 0: created empty
    assert_exactly_once(a)
    assert_equals_kernels(a)
    a.write(archive_relpaths(80)[60:], seed=5)
    _run_two_at_once(_compact_cmd(a.root, "--no-vacuum"), env)
    assert_exactly_once(a)
    assert_equals_kernels(a)


@pytest.mark.parametrize("row_range", [(0, 50), (3, 4), (6, 8), (7, 21), (13, 50), (49, 50)])
def test_read_rows_spans_row_groups(tmp_path, row_range):
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pa.table({"x": list(range(50))})
    pq.write_table(t, tmp_path / "f.parquet", row_group_size=7)
    got = segments.read_rows(storage.location(str(tmp_path / "f.parquet")), ["x"], row_range)
    assert got.column("x").to_pylist() == list(range(*row_range))


def test_compact_job_summary_and_bad_usage(arch, capsys):
    from jobs.cli import main

    rc = main(["compact", "--codes", str(arch.root), "--target-rows", "1000", "--grace-hours", "0"])
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and s["files"] == 120 and s["rows"] == 2400
    assert s["vacuum"]["shards_removed"] == 120
    rc = main(["compact", "--codes", str(arch.root) + "/nope"])
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 2 and "not found" in s["error"]
    rc = main(["compact", "--codes", str(arch.root), "--target-rows", "0"])
    assert rc == 2


def test_a_shard_without_a_required_column_is_bad_input_naming_it(arch):
    bad = sorted(arch.rows)[5]
    uri = store.shard_uri(str(arch.root), bad, MODEL)
    pq.write_table(store.read_shard(uri).drop_columns(["pred"]), uri)  # keeps its metadata
    with pytest.raises(BadInput, match=f"{bad}.*no column 'pred'"):
        compact.compact(arch.root, target_rows=500)
    assert SegmentTable(arch.loc).state(with_files=False).version in (None, 0)
    assert len(arch.catalogue().shards) == 120  # nothing compacted, nothing lost


def test_segment_files_are_stored_in_canonical_order(tmp_path):
    import pyarrow.parquet as pq

    a = Archive(tmp_path / "codes")
    a.write(archive_relpaths(2100), rows=3)  # read in chunks of 1,000 shards
    compact.compact(a.root, target_rows=4000)
    expected = list(a.reference()[2])
    got = []
    for p in a.catalogue().segments:  # each file on its own, as plain Parquet
        got += pq.read_table(p.uri, columns=["id"]).column("id").to_pylist()
    assert got == expected


def _add_meta(arch, rels):
    """Rewrite these shards with the optional `meta` column, as ingest now writes them."""
    import pyarrow as pa

    texts = {}
    for rel in rels:
        uri = store.shard_uri(arch.root, rel, MODEL)
        t = store.read_shard(uri)
        col = [json.dumps({"sequence": 100 + j}) for j in range(t.num_rows)]
        store.write_shard(uri, t.append_column("meta", pa.array(col, pa.string())))
        texts[rel] = col
    return texts


def test_meta_column_is_carried_into_segments_and_added_to_old_tables(arch, monkeypatch):
    # the release before `meta`: no optional column, in shards, segment schema or reads
    monkeypatch.setattr(store, "OPTIONAL_COLUMNS", {})
    assert "meta" not in segments.segment_schema().names
    compact.compact(arch.root, target_rows=500)
    monkeypatch.undo()
    table = SegmentTable(arch.model_loc())
    assert "meta" not in {f.name for f in table.open().schema().fields}
    assert all("meta" not in pq.read_schema(p.uri).names for p in arch.catalogue().segments)
    assert _meta_by_file(arch) == {rel: [None] * 20 for rel in arch.rows}  # readable: null

    # new shards with meta (they sort after the old ones), and one old file re-ingested with it
    new = archive_relpaths(130)[120:]
    arch.write(new, seed=3)
    time.sleep(0.02)  # a later modification time than the compacted shard's
    texts = _add_meta(arch, [*new, sorted(arch.rows)[0]])
    s = compact.compact(arch.root, target_rows=500)
    assert s["files"] == 11
    assert "meta" in {f.name for f in table.open().schema().fields}
    assert not arch.catalogue().shards
    got = _meta_by_file(arch)
    assert len(got) == 130 and sum(map(len, got.values())) == 2600
    assert got == {rel: texts.get(rel, [None] * 20) for rel in arch.rows}
    assert_exactly_once(arch)
    assert_equals_kernels(arch)


def _meta_by_file(arch) -> dict:
    cat = arch.catalogue()
    (task,) = catalogue.plan_tasks(cat.parts, target_rows=10**6)
    t = catalogue.read_task(task, cat.meta, cat.loc, ("file", "frame", "meta"))
    got = collections.defaultdict(list)
    for f, m in zip(t.column("file").to_pylist(), t.column("meta").to_pylist(), strict=True):
        got[f].append(m)
    return dict(got)


def test_segment_schema_is_the_shard_schema_plus_the_segment_columns(arch):
    """One schema: the segment table's is derived from the shard schema, and is the one the
    released segment tables have (DESIGN.md columns, `code` as binary, all nullable)."""
    import pyarrow as pa

    expected = pa.schema(
        [
            ("segment", pa.string()),
            ("file", pa.string()),
            ("id", pa.string()),
            ("source", pa.string()),
            ("frame", pa.int32()),
            ("site", pa.string()),
            ("time", pa.timestamp("us", tz="UTC")),
            ("code", pa.binary()),
            ("label", pa.int16()),
            ("pred", pa.int16()),
            ("score", pa.float32()),
            ("meta", pa.string()),
            ("shard_mtime", pa.float64()),
        ]
    )
    assert segments.segment_schema() == expected
    assert segments.file_schema() == expected.remove(0)
    shard = store.shard_schema(NBITS, store.OPTIONAL_COLUMNS)
    assert segments.segment_schema().names[2:-1] == shard.names
    compact.compact(arch.root, target_rows=1000)
    for p in arch.catalogue().segments:  # the files on disk, as plain Parquet
        assert pq.read_schema(p.uri).remove_metadata() == expected.remove(0)
    fields = SegmentTable(arch.model_loc()).open().schema().fields
    assert [f.name for f in fields] == expected.names
