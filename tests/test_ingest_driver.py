"""The ingest driver without Ray: checkpoint validation at the CLI, the commit path (Committer) fed
with encoded batches as the pipeline delivers them, bounded quarantine records, one-line errors,
and the `check` / `--dry-run` vet mode (which reads files in-process, without Ray)."""

from __future__ import annotations

import json
import logging
import os
import shutil

import numpy as np
import pyarrow as pa
import pytest
from ingest_helpers import THEMIS, make_model

from pipeline.codes import store
from pipeline.ingest.commit import Committer
from pipeline.ingest.config import IngestConfig
from pipeline.ingest.plan import Plan
from pipeline.ingest.read import TIMINGS, FileTask
from pipeline.ingest.rows import RowKind
from pipeline.messages import clean_text, one_line
from pipeline.model.checkpoint import Checkpoint

GOOD = "20140310_0601_gill_themis19_full.pgm.gz"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("model") / "ckpt", size=32, bits=32, seed=0)


def _last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _tamper(src, dst, **changes):
    shutil.copytree(src, dst)
    p = os.path.join(dst, "config.json")
    with open(p) as f:
        cfg = json.load(f)
    for k, v in changes.items():
        if k.startswith("pre_"):
            cfg["preprocess"][k[4:]] = v
        else:
            cfg[k] = v
    with open(p, "w") as f:
        json.dump(cfg, f)
    return str(dst)


# --------------------------------------------------------------------- checkpoint validation


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(input_size=10**6, pre_size=10**6), "input_size = 1000000 is outside"),
        (dict(pre_size=64), "preprocess gives 1 x 64 x 64 inputs, the model takes 1 x 32"),
        (dict(bits=10**9), "bits = 1000000000 is outside"),
        (dict(preprocess=None), "lacks 'preprocess'"),
    ],
)
def test_bad_checkpoint_exits_2_and_writes_nothing(
    model_dir, tmp_path, capsys, changes, message, monkeypatch
):
    import pipeline.ingest.driver as ingest
    from jobs.cli import main

    def no_ray(*a, **k):
        raise AssertionError("Ray started for a bad checkpoint")

    monkeypatch.setattr(ingest, "_init_ray", no_ray)
    bad = _tamper(model_dir, tmp_path / "bad", **changes)
    out = tmp_path / "out"
    for job in (["ingest", "--out", str(out)], ["ingest", "--out", str(out), "--dry-run"]):
        rc = main(job + ["--source", str(THEMIS), "--model", bad])
        s = _last_json(capsys)
        assert rc == 2 and s["ok"] is False, s
        assert message in s["error"] and "\n" not in s["error"]
        assert not out.exists()  # nothing written, not even the folder
    rc = main(["check", "--source", str(THEMIS / GOOD), "--model", bad])
    assert rc == 2 and message in _last_json(capsys)["error"]


def test_model_id_names_the_output_and_changes_with_preprocessing(model_dir, tmp_path):
    from pipeline.model.checkpoint import open_model

    a = open_model(model_dir)
    assert a.id == a.config["model_id"] and a.id != a.weights_sha
    meta = store.ShardMeta.of(a)
    assert meta.model == a.id and meta.model12 == a.id[:12] and meta.nbits == a.nbits
    b = open_model(_tamper(model_dir, tmp_path / "log", pre_stretch="log"))
    assert b.weights_sha == a.weights_sha and b.id != a.id  # same weights, other codes
    assert open_model(model_dir).id == a.id  # deterministic


# ---------------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(batch_size=0), "--batch-size must be at least 1"),
        (dict(actors_per_gpu=0), "--actors-per-gpu must be at least 1"),
        (dict(rows_per_block=0), "--rows-per-block must be at least 1"),
        (dict(read_cpus=0.0), r"--read-cpus must be in \(0, 64\]"),
        (dict(read_cpus=float("nan")), "--read-cpus"),
        (dict(max_files=-1), "--max-files must be at least 0"),
        (dict(progress_interval=-1.0), "--progress-interval must be positive"),
        (dict(since="2014-02-30"), "--since '2014-02-30'"),
        (dict(out=""), "--out is required"),
        (dict(source=""), "--source is required"),
        (dict(commit_threads=0), "commit_threads must be at least 1"),
    ],
)
def test_ingest_config_refuses_bad_values_naming_the_option(changes, message):
    """Every caller (job, benchmark, test) gets the same checks: the config makes them."""
    from pipeline.errors import BadInput

    with pytest.raises(BadInput, match=message):
        IngestConfig(**{**dict(source="/archive", out="/codes", model="m"), **changes})


def test_check_config_shares_the_ingest_options_and_refuses_bad_ones():
    import dataclasses

    from pipeline.errors import BadInput
    from pipeline.ingest.config import CheckConfig

    cfg = IngestConfig(
        source="/a", out="/o", model="m", since="2014-03-10", max_files=3, check_workers=5
    )
    assert str(cfg.since) == "2014-03-10"  # the CLI's text, parsed once by the config
    check = CheckConfig.from_ingest(cfg)
    assert (check.source, check.model, check.out, check.since) == ("/a", "m", "/o", cfg.since)
    assert (check.max_files, check.workers, check.progress_interval) == (3, 5, 5.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.batch_size = 0  # frozen: a checked value stays checked
    for changes, message in [
        (dict(workers=0), "--workers must be at least 1"),
        (dict(max_listed=-1), "--max-listed must be at least 0"),
        (dict(out="/o"), "--out needs --model"),
    ]:
        with pytest.raises(BadInput, match=message):
            CheckConfig(source="/a", **changes)


def test_read_cpus_of_the_actors_on_a_cpu_only_cluster_exits_2_before_any_read(
    model_dir, tmp_path, capsys, monkeypatch
):
    import pipeline.ingest.driver as ingest
    import pipeline.ingest.resources as resources
    from jobs.cli import main

    monkeypatch.setattr(ingest, "_init_ray", lambda address: False)
    monkeypatch.setattr(resources, "cluster_nodes", lambda: [resources.Node(cpus=2)])
    out = tmp_path / "out"
    args = ["--source", str(THEMIS), "--out", str(out), "--model", model_dir]
    rc = main(["ingest", *args, "--read-cpus", "1"])
    s = _last_json(capsys)
    assert rc == 2 and s["ok"] is False
    assert "--read-cpus 1 on a CPU-only cluster" in s["error"] and "fuses" in s["error"]
    assert not out.exists()


# ------------------------------------------------------------------------------ commit path


def _model(tmp_path) -> Checkpoint:
    config = {"bits": 32, "classes": ["a", "b"], "preprocess": {}}
    return Checkpoint(uri="m", files={}, config=config, id="ab" * 32, weights_sha="cd" * 32)


def _batch(uri, rows):
    """Encoded rows as the pipeline delivers them (datasource rows + encoder columns)."""
    n = len(rows)
    col = {k: [r.get(k) for r in rows] for k in ("kind", "seq", "frame", "reason", "expected")}
    return pa.table(
        {
            "source": [uri] * n,
            "kind": pa.array(col["kind"], pa.string()),
            "seq": pa.array([-1 if s is None else s for s in col["seq"]], pa.int32()),
            "frame": pa.array([-1 if f is None else f for f in col["frame"]], pa.int32()),
            "site": pa.array([None] * n, pa.string()),
            "time_us": pa.array([None] * n, pa.int64()),
            "label": pa.array([None] * n, pa.int16()),
            "reason": pa.array(col["reason"], pa.string()),
            "expected": pa.array([-1 if e is None else e for e in col["expected"]], pa.int32()),
            "meta": pa.array([r.get("meta") for r in rows], pa.string()),
            "timings": pa.array([r.get("timings") for r in rows], TIMINGS),
            "code": pa.array([np.uint64(i).tobytes() for i in range(n)], pa.binary(8)),
            "pred": pa.array([0] * n, pa.int16()),
            "score": pa.array([0.5] * n, pa.float32()),
            "cost": pa.array([0.0] * n, pa.float64()),
        }
    )


def _committer(tmp_path, rels, cap=100):
    out = tmp_path / "out"
    tasks = [FileTask(uri=f"/archive/{r}", rel=r) for r in rels]
    plan = Plan(todo=tasks, seen=len(tasks), skipped=0, prefix=str(out / "abababababab"))
    cfg = IngestConfig(source="/archive", out=str(out), model="m", quarantine_per_file=cap)
    return Committer(cfg, plan, _model(tmp_path), {}), out


def test_quarantine_records_bounded_with_exact_count(tmp_path):
    """A file of 3 frames and 2,503 bad members: 100 records + one summary record, exact count."""
    c, out = _committer(tmp_path, ["many.tar"], cap=100)
    uri = "/archive/many.tar"
    rows = [dict(kind=RowKind.FRAME, seq=i, frame=i) for i in range(3)]
    rows += [
        dict(
            kind=RowKind.ERROR, seq=3 + i, frame=3 + i, reason=f"sample {i}: not an image" * (i % 2)
        )
        for i in range(2503)
    ]
    for k in range(0, len(rows), 500):
        c.consume(_batch(uri, rows[k : k + 500]))
    c.consume(_batch(uri, rows[600:700]))  # a retried task delivers some rows twice
    end = dict(kind=RowKind.END, expected=len(rows), timings={"read_s": 1.5})
    c.consume(_batch(uri, [end]))
    c.consume(_batch(uri, [end]))  # so is its end row: its read seconds count once
    c.finish()
    assert c.tally.counts["done"] == 1 and c.tally.counts["failed"] == 0
    assert c.tally.costs["read_s"] == 1.5
    assert c.tally.counts["frames"] == 3 and c.tally.counts["quarantined"] == 2503

    q = out / "_quarantine" / "abababababab" / "many.tar.jsonl"
    lines = [json.loads(x) for x in q.read_text().splitlines()]
    assert len(lines) == 101
    assert [r["frame"] for r in lines[:100]] == list(range(3, 103))
    last = lines[-1]
    assert last["frame"] is None and last["more"] == 2403
    assert sum(last["reasons"].values()) == 2403 and "2403 more problems" in last["reason"]
    assert all(r["file"] == uri and r["model"] == "abababababab" for r in lines)
    shard = store.read_shard(str(out / "abababababab" / "many.tar.parquet"))
    assert shard.column("frame").to_pylist() == [0, 1, 2]


def test_quarantine_under_the_cap_lists_every_problem(tmp_path):
    c, out = _committer(tmp_path, ["few.tar"], cap=100)
    uri = "/archive/few.tar"
    rows = [dict(kind=RowKind.ERROR, seq=i, frame=i, reason="bad") for i in range(100)]
    c.consume(_batch(uri, rows + [dict(kind=RowKind.END, expected=100)]))
    c.finish()
    lines = (out / "_quarantine" / "abababababab" / "few.tar.jsonl").read_text().splitlines()
    assert len(lines) == 100 and all(json.loads(x)["frame"] is not None for x in lines)
    assert c.tally.counts["quarantined"] == 100


def test_a_stopped_job_leaves_unfinished_files_for_the_next_run(tmp_path, caplog):
    """Ctrl-C or SIGTERM (`finish(stopped=True)`): files whose rows had not all arrived are not
    failures, only left to do; without the stop they count as failed."""
    for stopped, failed in ((True, 0), (False, 1)):
        c, _ = _committer(tmp_path / str(stopped), ["a.pgm", "b.pgm"])
        c.consume(_batch("/archive/a.pgm", [dict(kind=RowKind.FRAME, seq=0, frame=0)]))
        c.consume(_batch("/archive/b.pgm", [dict(kind=RowKind.END, expected=0)]))
        with caplog.at_level(logging.WARNING, logger="aurorahash.ingest"):
            c.finish(stopped=stopped)
        assert c.tally.counts["failed"] == failed and c.tally.counts["done"] == 1
    assert "ingest stopped: 1 file(s) not finished, for the next run" in caplog.text


def test_failed_file_reason_is_one_clean_line(tmp_path):
    c, _ = _committer(tmp_path, ["x.pgm"])
    trace = 'OSError: \x1b[31mboom\x1b[0m\nTraceback (most recent call last):\n  File "a.py"'
    c.consume(
        _batch(
            "/archive/x.pgm",
            [dict(kind=RowKind.FAIL, seq=0, reason=trace), dict(kind=RowKind.END, expected=1)],
        )
    )
    c.finish()
    assert c.tally.counts["failed"] == 1
    reason = c.tally.failed["/archive/x.pgm"]
    assert "\n" not in reason and "\x1b" not in reason and "boom" in reason


def test_commit_follows_each_file_verdict(tmp_path):
    """skip: recorded as not ingested, no shard; corrupt: the frames read before it in a shard,
    the file in its quarantine record, counted corrupt; a duplicate frame index: quarantined."""
    c, out = _committer(tmp_path, ["thumb.cdf", "cut.pgm", "dup.pgm"])
    rows = {
        "thumb.cdf": [dict(kind=RowKind.SKIP, seq=0, reason="thumbnail")],
        "cut.pgm": [
            dict(kind=RowKind.FRAME, seq=0, frame=0),
            dict(kind=RowKind.CORRUPT, seq=1, reason="truncated"),
        ],
        "dup.pgm": [dict(kind=RowKind.FRAME, seq=i, frame=0) for i in range(2)],
    }
    for rel, rs in rows.items():
        c.consume(_batch(f"/archive/{rel}", rs + [dict(kind=RowKind.END, expected=len(rs))]))
    c.finish()
    counts = c.tally.counts
    assert (counts["done"], counts["ignored"], counts["corrupt"], counts["failed"]) == (2, 1, 1, 0)
    assert (counts["frames"], counts["quarantined"]) == (2, 2)
    ignored = json.loads((out / "_ignored" / "abababababab" / "thumb.cdf.json").read_text())
    assert ignored["reason"] == "thumbnail"
    assert not (out / "abababababab" / "thumb.cdf.parquet").exists()
    q = out / "_quarantine" / "abababababab"
    (cut,) = [json.loads(x) for x in (q / "cut.pgm.jsonl").read_text().splitlines()]
    assert (cut["frame"], cut["reason"]) == (None, "truncated")
    (dup,) = [json.loads(x) for x in (q / "dup.pgm.jsonl").read_text().splitlines()]
    assert (dup["frame"], dup["reason"]) == (0, "duplicate frame index in file")
    for rel in ("cut.pgm", "dup.pgm"):
        shard = store.read_shard(str(out / "abababababab" / f"{rel}.parquet"))
        assert shard.column("frame").to_pylist() == [0]


def test_gaps_in_the_mode_sequence_number_are_counted_and_meta_is_kept(tmp_path):
    c, out = _committer(tmp_path, ["a.pgm", "b.pgm"])
    numbers = {"a.pgm": [5, 6, 9, 10], "b.pgm": [20, 21, 22, 23]}  # a: 7 and 8 dropped
    for rel, seqs in numbers.items():
        metas = [json.dumps({"sequence": n}) for n in seqs]
        rows = [dict(kind=RowKind.FRAME, seq=i, frame=i, meta=m) for i, m in enumerate(metas)]
        c.consume(_batch(f"/archive/{rel}", rows + [dict(kind=RowKind.END, expected=4)]))
    c.finish()
    assert c.tally.counts["done"] == 2 and c.tally.counts["frames"] == 8
    assert (c.tally.counts["sequence_gaps"], c.tally.counts["frames_dropped"]) == (1, 2)
    shard = store.read_shard(str(out / "abababababab" / "a.pgm.parquet"))
    assert [json.loads(m)["sequence"] for m in shard.column("meta").to_pylist()] == [5, 6, 9, 10]


# --------------------------------------------------------------------------------- messages


def test_one_line_unwraps_ray_task_errors_and_strips_colours():
    from ray.exceptions import RayTaskError

    try:
        raise MemoryError("Unable to allocate 3.64 TiB for an array")
    except MemoryError as cause:
        tb = (
            "\x1b[36mray::ReadArchive->MapBatches(HashEncoder)()\x1b[39m (pid=1, ip=10.0.0.1)\n"
            '  File "/x/pipeline/encoder.py", line 9, in __call__\n'
            "MemoryError: Unable to allocate 3.64 TiB for an array"
        )
        err = RayTaskError("ReadArchive", tb, cause).as_instanceof_cause()
    assert "\x1b" in str(err) and "\n" in str(err)  # what the summary used to carry
    assert one_line(err) == "MemoryError: Unable to allocate 3.64 TiB for an array"
    assert one_line(ValueError("a\nb")) == "ValueError: a b"
    assert one_line(KeyError()) == "KeyError"
    text = clean_text("\x1b[1;31mred\x1b[0m\tx\x00y" + "z" * 1000)
    assert text.startswith("red xy") and len(text) == 500 and text.endswith("...")


def test_cli_error_of_an_unexpected_exception_is_one_line(monkeypatch, capsys, tmp_path):
    from jobs import check
    from jobs.cli import main

    def boom(args):
        raise RuntimeError("\x1b[31mfirst\x1b[0m\nsecond")

    monkeypatch.setattr(check, "run", boom)
    rc = main(["check", "--source", str(tmp_path)])
    s = _last_json(capsys)
    assert rc == 1 and s["error"] == "RuntimeError: first second"


# ------------------------------------------------------------------------------ check / vet


@pytest.fixture
def night(tmp_path):
    """A small night: one good minute file, a truncated one, an empty one, a thumbnail."""
    root = tmp_path / "night"
    root.mkdir()
    data = (THEMIS / GOOD).read_bytes()
    (root / GOOD).write_bytes(data)
    (root / "20140310_0602_gill_themis19_full.pgm.gz").write_bytes(data[: len(data) * 6 // 10])
    (root / "20140310_0603_gill_themis19_full.pgm").write_bytes(b"")
    thumb = next(p for p in THEMIS.iterdir() if p.name.startswith("thg_l1_ast_"))
    (root / thumb.name).write_bytes(thumb.read_bytes())
    return root


def _by_file(summary):
    return {e["file"]: e for e in summary["files"]}


def test_check_reads_everything_and_writes_nothing(night, tmp_path, capsys):
    from jobs.cli import main

    before = sorted(os.listdir(tmp_path))
    rc = main(["check", "--source", str(night)])
    s = _last_json(capsys)
    assert rc == 0 and s["ok"] is True, s
    assert sorted(os.listdir(tmp_path)) == before and sorted(os.listdir(night)) == sorted(
        _by_file(s)
    )
    assert s["files_seen"] == s["files_checked"] == 4 and s["files_failed"] == 0
    assert (s["files_ok"], s["files_quarantine"], s["files_corrupt"], s["files_ignored"]) == (
        1,
        1,
        1,
        1,
    )
    f = _by_file(s)
    assert f[GOOD] == {
        "file": GOOD,
        "status": "ok",
        "frames": 20,
        "quarantined": 0,
        "sequence_gaps": 0,
        "frames_dropped": 0,
    }
    trunc = f["20140310_0602_gill_themis19_full.pgm.gz"]
    assert trunc["status"] == "quarantine" and 0 < trunc["frames"] < 20
    assert trunc["quarantined"] == sum(trunc["reasons"].values()) >= 1
    empty = f["20140310_0603_gill_themis19_full.pgm"]
    assert empty["status"] == "corrupt" and empty["frames"] == 0 and empty["reasons"]
    assert s["frames"] == 20 + trunc["frames"]
    assert s["quarantined"] == trunc["quarantined"] + 1
    assert [e["status"] for e in s["files"]][-1] == "ok"  # problems listed first
    assert s["model"] is None and s["preprocess"] == "default"


def test_check_counts_dropped_exposures_per_file(tmp_path, capsys):
    from jobs.cli import main
    from pipeline.synth import generate, write_pgm_minute

    frames, _ = generate(20, size=32, seed=0)
    night = str(tmp_path / "night")
    write_pgm_minute(night, frames, "2020-01-01T06:00", sequence=[*range(7), *range(9, 22)])
    write_pgm_minute(night, frames, "2020-01-01T06:01", sequence=range(22, 42))
    rc = main(["check", "--source", night])
    s = _last_json(capsys)
    assert rc == 0 and (s["sequence_gaps"], s["frames_dropped"]) == (1, 2)
    f = _by_file(s)
    gap, clean = (f[f"20200101_06{m}_synt_themis99_full.pgm.gz"] for m in ("00", "01"))
    assert (gap["sequence_gaps"], gap["frames_dropped"], gap["frames"]) == (1, 2, 20)
    assert (clean["sequence_gaps"], clean["frames_dropped"]) == (0, 0)


def test_dry_run_validates_the_model_and_reads_only_files_still_to_do(
    night, model_dir, tmp_path, capsys
):
    from jobs.cli import main

    out = tmp_path / "out"
    args = ["--source", str(night), "--model", model_dir, "--out", str(out)]
    rc = main(["ingest", "--dry-run", *args])
    s = _last_json(capsys)
    assert rc == 0 and s["dry_run"] is True and s["files_todo"] == 4 and s["files_checked"] == 4
    assert s["preprocess"] == "model" and len(s["model"]) == 12
    assert s["out"] == str(out / s["model"]) and not out.exists()
    assert _by_file(s)[GOOD]["frames"] == 20
    # a file already ingested for this model is not read again
    (out / s["model"]).mkdir(parents=True)
    store_meta = store.ShardMeta(nbits=32, model="0" * 64, classes=["a", "b"])
    empty = {
        "id": [],
        "source": [],
        "frame": [],
        "site": [],
        "time": [],
        "code": np.zeros((0, 1), np.uint64),
        "label": [],
        "pred": [],
        "score": np.zeros(0, np.float32),
    }
    store.write_shard(str(out / s["model"] / (GOOD + ".parquet")), empty, store_meta)
    rc = main(["check", *args])
    s2 = _last_json(capsys)
    assert rc == 0 and s2["files_skipped"] == 1 and s2["files_checked"] == 3
    assert GOOD not in _by_file(s2)


def test_check_usage_errors(tmp_path, capsys):
    from jobs.cli import main

    assert main(["check", "--source", str(tmp_path / "missing")]) == 2
    assert "not found" in _last_json(capsys)["error"]
    assert main(["check", "--source", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "--out needs --model" in _last_json(capsys)["error"]
    assert main(["check", "--source", str(tmp_path), "--workers", "0"]) == 2
    assert "--workers must be at least 1" in _last_json(capsys)["error"]
    assert main(["check", "--source", str(tmp_path), "--max-listed", "-1"]) == 2
    assert "--max-listed must be at least 0" in _last_json(capsys)["error"]
    assert main(["check", "--source", str(tmp_path), "--progress-interval", "0"]) == 2
    assert "--progress-interval must be positive" in _last_json(capsys)["error"]


def test_listing_is_the_readers_listing_with_sizes(tmp_path):
    from pipeline.ingest.plan import list_source
    from pipeline.readers import list_archive

    root = tmp_path / "a"
    (root / "sub").mkdir(parents=True)
    for name in ("x.pgm", "sub/y.png", "notes.txt", "_tmp/z.pgm", ".hidden.pgm", "sub/w.tar"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"1" * len(name))
    for src in (str(root), str(THEMIS), str(THEMIS / GOOD)):
        listing = list_source(src, None, {})
        listed = listing.entries.as_dict()
        assert {f: m for f, (m, _) in listed.items()} == list_archive(src, detail=True)
        assert all(size == os.path.getsize(f) for f, (_, size) in listed.items())


def test_read_order_is_smallest_first():
    from pipeline.ingest.plan import read_order

    tasks = [FileTask(f"/a/{n}", n) for n in ("big", "small", "unknown", "mid")]
    plan = Plan(todo=tasks, seen=4, skipped=0, prefix="p")
    plan.sizes = {"/a/big": 10**9, "/a/small": 10, "/a/unknown": None, "/a/mid": 10**5}
    assert [t.rel for t in read_order(plan)] == ["small", "mid", "big", "unknown"]
