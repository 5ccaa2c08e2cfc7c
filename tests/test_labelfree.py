"""Label-free, end to end, through the `aurorahash` jobs on real local Ray: a tiny THEMIS-style
archive whose frames carry no label header trains `--method cibhash` (1 epoch, 32 px), and its
codes go through ingest, compact, search by id, search --image, export and benchmark --report.
The model has no class head and no classes (`classes: []`), so the shards hold pred -1 and
score NaN and name no classes. MAP needs ground truth: the benchmark scores the same frames,
ingested from the archive's labelled twin (same seed, same pixels, label headers on), while the
loss saw none of them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jobs.cli import main

pytestmark = pytest.mark.integration  # ~40 s on a 2-core machine

FRAMES, SEED = 120, 5
TRAIN = [
    "--method", "cibhash", "--dataset", "archive", "--size", "32", "--bits", "16",
    "--epochs", "1", "--widths", "8,16,16", "--threads", "1",
]  # fmt: skip


def _job(capsys, *argv) -> tuple[int, dict]:
    rc = main([str(a) for a in argv])
    return rc, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _synth(capsys, out: Path, *extra) -> None:
    args = ("synth", "--out", out, "--frames", FRAMES, "--format", "pgm.gz", "--size", 64)
    rc, s = _job(capsys, *args, "--seed", SEED, *extra)
    assert rc == 0 and s["frames"] == FRAMES, s


def _shards(codes: Path) -> list[Path]:
    return sorted(
        p
        for p in codes.rglob("*.parquet")
        if not any(part[0] in "_." for part in p.parts[len(codes.parts) :])
    )


def test_train_without_labels_then_ingest_search_export_and_benchmark(ray_local, tmp_path, capsys):
    night, twin, model = tmp_path / "night", tmp_path / "labelled", tmp_path / "model"
    _synth(capsys, night, "--no-labels")
    _synth(capsys, twin)

    rc, s = _job(
        capsys, "train", *TRAIN, "--data", night, "--out", model, "--report", tmp_path / "tr"
    )
    assert rc == 0, s
    assert "map" not in s and s["evaluation"].startswith("skipped: the queries and database")
    config = json.loads((model / "config.json").read_text())
    assert config["classes"] == [] and config["model_options"]["classifier"] == "none"
    assert config["augment"]["policy"] == "allsky"
    report = json.loads(Path(s["report"]).with_name("report.json").read_text())
    assert report["kind"] == "train" and report["metrics"] is None

    codes = tmp_path / "codes"
    rc, s = _job(capsys, "ingest", "--source", night, "--out", codes, "--model", model)
    assert rc == 0 and s["frames"] == FRAMES and s["files_failed"] == 0, s
    shards = _shards(codes)
    assert len(shards) == FRAMES // 20
    table = pq.read_table(shards[0])
    meta = table.schema.metadata
    assert json.loads(meta[b"aurorahash.classes"]) == []
    model12 = meta[b"aurorahash.model"].decode()[:12]
    assert set(table.column("pred").to_pylist()) == {-1}
    assert all(math.isnan(v) for v in table.column("score").to_pylist())
    assert set(table.column("label").to_pylist()) == {None}

    rc, s = _job(capsys, "compact", "--codes", codes)
    assert rc == 0, s
    frame = table.column("id")[3].as_py()
    rc, s = _job(capsys, "search", "--codes", codes, "--query-id", frame, "--k", "5")
    assert rc == 0 and dict(s["neighbors"][frame])[frame] == 0, s

    source = table.column("source")[3].as_py()
    image = f"{source}#3"
    search = ("search", "--codes", codes, "--model", model, "--image", image, "--k", FRAMES)
    rc, s = _job(capsys, *search, "--report", tmp_path / "sr")
    assert rc == 0, s
    assert dict(s["neighbors"][image])[frame] == 0  # the frame ingest stored, at distance 0
    page = json.loads(Path(s["report"]).with_name("report.json").read_text())
    assert page["kind"] == "search"

    rc, s = _job(
        capsys, "export", "--codes", codes, "--out", tmp_path / "export", "--format", "faiss"
    )
    assert rc == 0, s
    manifest = json.loads(next((tmp_path / "export").rglob("manifest.json")).read_text())
    assert manifest["classes"] == [] and manifest["count"] == FRAMES

    labelled = tmp_path / "labelled-codes"
    rc, s = _job(capsys, "ingest", "--source", twin, "--out", labelled, "--model", model)
    assert rc == 0 and s["frames"] == FRAMES, s
    twin_table = pq.read_table(_shards(labelled)[0])
    assert twin_table.column("code").equals(table.column("code"))  # the same frames, same codes
    reports = tmp_path / "bench"
    rc, s = _job(
        capsys, "benchmark", "--database", labelled, "--queries", labelled, "--report", reports
    )
    assert rc == 0 and 0 < s["map"] <= 1 and s["n_queries"] == FRAMES, s
    (folder,) = reports.iterdir()
    bench = json.loads((folder / "report.json").read_text())
    (record,) = bench["models"]
    assert record["classes"] == [] and record["model12"] == model12
    assert {c["name"] for c in record["per_class"]} == {"0", "1", "2", "3"}

    # the unlabelled codes have no ground truth to score: a clear refusal, not a crash
    rc, s = _job(capsys, "benchmark", "--database", codes, "--queries", codes)
    assert rc == 2 and "no labelled queries" in s["error"], s
