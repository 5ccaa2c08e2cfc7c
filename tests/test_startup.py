"""Jobs that do not encode start without torch (and --help without Ray): each runs in a fresh
interpreter, which then reports the heavy modules it imported. `check` reads and preprocesses
frames as ingest does: it needs torch (preprocessing is torch code), with or without a model,
but no Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from shard_fixtures import write_dataset

from jobs.cli import JOBS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = (
    "torch",
    "torchvision",
    "ray",
    "numba",
    "pyarrow",
    "numpy",
    "deltalake",
    "PIL",
    "pandas",
    "scipy",
)

# Imports the modules named after the two JSON arguments, then runs each argv (a JSON list of
# lists) through jobs.cli.main in this one interpreter (each after `prepare_process`, as the
# console script does) and prints, after each, which of HEAVY are imported by then:
# {"argv": ..., "rc": ..., "heavy": [...]}; then leaves as the console script does
# (`jobs.cli.exit_now`).
RUNNER = """
import importlib, json, sys
from jobs.cli import exit_now, main, prepare_process
for name in sys.argv[3:]:
    importlib.import_module(name)
for argv in json.loads(sys.argv[1]):
    prepare_process(argv)
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    heavy = [m for m in json.loads(sys.argv[2]) if m in sys.modules]
    print("@@" + json.dumps({"argv": argv, "rc": rc, "heavy": heavy}), flush=True)
exit_now(0)  # as the console script leaves: no teardown, where delta-rs's threads can abort
"""


def _imports(*argvs, preload=()) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    env.pop("RAY_ADDRESS", None)
    p = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(argvs), json.dumps(HEAVY), *preload],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    out = [json.loads(line[2:]) for line in p.stdout.splitlines() if line.startswith("@@")]
    assert p.returncode == 0 and len(out) == len(argvs), p.stderr[-3000:]
    return out


def test_help_of_the_cli_and_of_every_job_imports_no_torch():
    top, *jobs = _imports(["--help"], *[[job, "--help"] for job in JOBS])
    assert top["rc"] == 0 and top["heavy"] == []  # the job list: nothing heavy at all
    for r in jobs:
        assert r["rc"] == 0
        assert "torch" not in r["heavy"] and "ray" not in r["heavy"], r


def test_jobs_that_do_not_encode_import_no_torch(tmp_path):
    _, _, ids, _ = write_dataset(tmp_path / "db", sizes=(10, 12), seed=5)
    write_dataset(tmp_path / "q", sizes=(4,), seed=6)
    db, q = str(tmp_path / "db"), str(tmp_path / "q")
    runs = _imports(
        ["search", "--codes", db, "--query-id", ids[3], "--k", "3"],
        ["search", "--codes", db, "--model", "aaaa", "--query-id", ids[3]],  # a model id prefix
        ["benchmark", "--database", db, "--queries", q],
        ["export", "--codes", db, "--out", str(tmp_path / "x"), "--format", "npy"],
        ["compact", "--codes", db, "--grace-hours", "0"],
        ["search", "--codes", db, "--query-id", ids[3], "--k", "3"],  # over the segment
    )
    assert [r["rc"] for r in runs] == [0] * len(runs)
    for r in runs:
        assert "torch" not in r["heavy"] and "pandas" not in r["heavy"], r
    # one query over a few codes: the NumPy scan, so neither numba nor SciPy (which numba
    # imports) is loaded; the benchmark's MAP is compiled code and loads them
    assert not {"numba", "scipy"} & set(runs[0]["heavy"]), runs[0]
    assert "numba" in runs[2]["heavy"]
    # small work, no cluster: search and benchmark ran here, without starting Ray
    assert "ray" not in runs[2]["heavy"]


@pytest.mark.slow  # imports torch: seconds, more on a loaded machine
def test_the_guard_sees_torch_when_something_imports_it():
    (r,) = _imports(["--help"], preload=["pipeline.model.precision"])
    assert r["rc"] == 0 and "torch" in r["heavy"]


@pytest.mark.slow  # check preprocesses frames, so it imports torch: seconds
def test_check_imports_no_ray(tmp_path):
    from ingest_helpers import THEMIS

    (tmp_path / "night").mkdir()
    name = "20140310_0600_gill_themis19_full.pgm.gz"
    os.symlink(THEMIS / name, tmp_path / "night" / name)
    (r,) = _imports(["check", "--source", str(tmp_path / "night")])
    assert r["rc"] == 0
    assert "ray" not in r["heavy"] and "torch" in r["heavy"], r
