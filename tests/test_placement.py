"""In this process or on Ray: the rule (`pipeline.codes.placement`), its log line and the
forcing options of search and benchmark."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from shard_fixtures import write_dataset

from jobs.cli import main
from pipeline.codes import placement


def _cat(shards: int, rows: int):
    return SimpleNamespace(shards=[None] * shards, n_rows=rows)


def test_small_work_stays_in_this_process_large_work_starts_ray():
    small = placement.choose([_cat(3, 1_000_000)], passes=1, cpus=2)
    assert not small.use_ray and "~1,000,000 codes" in small.reason and "--ray" in small.reason
    # 50,000 minute shards not compacted: ~50 s of reading, ~25 s saved on 2 CPUs
    many = placement.choose([_cat(50_000, 1_000_000)], passes=1, cpus=2)
    assert many.use_ray and "50,000 pending shards" in many.reason
    # 10M compacted codes: 2.5 s a pass; benchmark --topk's three passes (7.5 s) stay here on
    # 2 CPUs (3.75 s saved) and go to Ray on 16 (7 s saved)
    assert not placement.choose([_cat(0, 10_000_000)], passes=3, cpus=2).use_ray
    assert placement.choose([_cat(0, 10_000_000)], passes=3, cpus=16).use_ray
    # one CPU: a local Ray cannot read faster than this process
    assert not placement.choose([_cat(10**6, 10**9)], passes=3, cpus=1).use_ray
    # the catalogues of several models add up
    assert placement.choose([_cat(3_000, 0), _cat(3_000, 0)], passes=2, cpus=2).use_ray


def test_options_decide_before_the_work():
    assert placement.forced(False, True, "ray://head:10001").use_ray is False  # --no-ray wins
    assert placement.forced(True, False, None).use_ray is True
    assert "head" in placement.forced(False, False, "head:6379").reason
    assert placement.forced(False, False, None) is None


def _run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, json.loads(out.strip().splitlines()[-1]), err


def test_jobs_log_the_choice_and_honour_no_ray(tmp_path, capsys, monkeypatch):
    _, _, ids, _ = write_dataset(tmp_path / "db", sizes=(10, 12), seed=5)
    write_dataset(tmp_path / "q", sizes=(4,), seed=6)
    db, q = str(tmp_path / "db"), str(tmp_path / "q")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    rc, s, err = _run(capsys, "search", "--codes", db, "--query-id", ids[3], "--k", "3")
    assert rc == 0 and s["executor"] == "local"
    assert "executor: this process (~" in err and "2 pending shards, 1 pass(es)" in err
    rc, s, err = _run(capsys, "benchmark", "--database", db, "--queries", q, "--topk", "5")
    assert rc == 0 and s["executor"] == "local" and "3 pass(es)" in err
    # a named cluster means Ray, unless --no-ray (nothing listens there: it is never joined)
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")
    rc, s, err = _run(capsys, "search", "--codes", db, "--query-id", ids[3], "--no-ray")
    assert rc == 0 and s["executor"] == "local" and "executor: this process (--no-ray)" in err


def test_ray_and_no_ray_together_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["search", "--codes", str(tmp_path), "--query-id", "x#0", "--ray", "--no-ray"])
    assert e.value.code == 2 and "not allowed with" in capsys.readouterr().err
