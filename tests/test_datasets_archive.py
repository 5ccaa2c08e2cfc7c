"""The `archive` dataset: a labelled archive read as ingest reads it, labels from the frames'
headers or from a catalogue table keyed by ingest's frame ids; an unlabelled one for a method
that needs no labels; and options a dataset does not use are refused."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import BadInput
from pipeline.synth import CLASSES, generate, write_archive
from pipeline.training.datasets import load_splits

N = 40


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    write_archive(str(root), N, seed=7, fmt="pgm")
    return str(root)


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory):
    root = tmp_path_factory.mktemp("unlabelled")
    write_archive(str(root), N, seed=7, fmt="pgm", labels=False)
    return str(root)


def _all_labels(s) -> dict:
    return {"query": s["query"][1].tolist(), "db": s["db"][1].tolist()}


def test_header_labels_and_the_holdout_split(archive):
    s = load_splits("archive", archive, None, 0, None, None, size=32, n_query=8)
    assert s["classes"] == list(CLASSES) and s["preprocess"]["size"] == 32
    assert s["preprocess"]["stretch"] == "asinh"  # 16-bit grey frames: aurora preprocessing
    assert len(s["query"][1]) == 8 and len(s["db"][1]) == N - 8
    _, truth = generate(N, seed=7)
    assert sorted(s["query"][1].tolist() + s["db"][1].tolist()) == sorted(truth.tolist())
    assert s["info"]["dataset"] == "archive" and s["info"]["protocol"] == "holdout"


def test_catalogue_csv_labels_by_frame_id(unlabelled, tmp_path):
    from pipeline.ingest.local_read import archive_files

    files = archive_files(unlabelled)
    ids = [f"{rel}#{i}" for _, rel in files for i in range(20)]
    names = ["quiet" if i % 3 else "arc" for i in range(N)]
    csv = tmp_path / "labels.csv"
    csv.write_text("id,label\n" + "".join(f"{i},{n}\n" for i, n in zip(ids, names, strict=True)))
    s = load_splits("archive", unlabelled, None, 0, None, None, size=32, labels=str(csv), n_query=4)
    assert s["classes"] == ["arc", "quiet"]
    got = sorted(s["query"][1].tolist() + s["db"][1].tolist())
    assert got == sorted(0 if n == "arc" else 1 for n in names)


def test_catalogue_parquet_leaves_out_frames_it_does_not_name(unlabelled, tmp_path):
    from pipeline.ingest.local_read import archive_files

    (_, rel), *_ = archive_files(unlabelled)
    table = pa.table({"id": [f"{rel}#{i}" for i in range(12)], "label": [i % 2 for i in range(12)]})
    pq.write_table(table, tmp_path / "labels.parquet")
    s = load_splits(
        "archive", unlabelled, None, 0, None, None, size=32,
        labels=str(tmp_path / "labels.parquet"), n_query=3,
    )  # fmt: skip
    assert len(s["query"][1]) + len(s["db"][1]) == 12 and s["classes"] == ["0", "1"]


def test_unlabelled_archive_and_bad_catalogues_are_clear_errors(unlabelled, tmp_path):
    with pytest.raises(BadInput, match="no labelled frames.*--method cibhash trains without"):
        load_splits("archive", unlabelled, None, 0, None, None, size=32)
    (tmp_path / "bad.csv").write_text("frame,class\nx,1\n")
    with pytest.raises(BadInput, match="needs columns id and label"):
        load_splits("archive", unlabelled, None, 0, None, None, labels=str(tmp_path / "bad.csv"))
    (tmp_path / "other.csv").write_text("id,label\nnope#0,1\n")
    with pytest.raises(BadInput, match="no id of the archive"):
        load_splits("archive", unlabelled, None, 0, None, None, labels=str(tmp_path / "other.csv"))
    with pytest.raises(BadInput, match="no such file"):
        load_splits("archive", unlabelled, None, 0, None, None, labels=str(tmp_path / "none.csv"))
    with pytest.raises(BadInput, match="no such archive|no archive files"):
        load_splits("archive", str(tmp_path / "empty"), None, 0, None, None)


def test_a_method_without_labels_takes_an_unlabelled_archive(unlabelled):
    s = load_splits("archive", unlabelled, None, 0, None, None, size=32, need_labels=False)
    assert s["classes"] == [] and s["preprocess"]["size"] == 32
    n = {k: len(s[k][1]) for k in ("train", "query", "db")}
    assert n["query"] + n["db"] == N and n["train"] == n["db"]
    assert all((s[k][1] == -1).all() for k in ("train", "query", "db"))
    again = load_splits("archive", unlabelled, None, 0, None, None, size=32, need_labels=False)
    np.testing.assert_array_equal(s["train"][0], again["train"][0])  # the same seeded split


def test_a_method_without_labels_trains_on_the_unlabelled_frames_too(unlabelled, tmp_path):
    """A partly labelled archive: queries and database are the labelled frames (MAP is scored
    on them), and the unlabelled ones join the training set, for a label-free method only."""
    from pipeline.ingest.local_read import archive_files

    (_, rel), *_ = archive_files(unlabelled)  # the first minute file: 20 of the 40 frames
    table = pa.table({"id": [f"{rel}#{i}" for i in range(20)], "label": [i % 2 for i in range(20)]})
    pq.write_table(table, tmp_path / "half.parquet")
    opts = dict(size=32, labels=str(tmp_path / "half.parquet"), n_query=4)
    free = load_splits("archive", unlabelled, None, 0, None, None, need_labels=False, **opts)
    supervised = load_splits("archive", unlabelled, None, 0, None, None, **opts)
    assert len(free["query"][1]) + len(free["db"][1]) == 20 and free["classes"] == ["0", "1"]
    np.testing.assert_array_equal(free["db"][1], supervised["db"][1])
    assert len(free["train"][1]) == len(supervised["train"][1]) + 20
    assert (free["train"][1] == -1).sum() == 20 and (supervised["train"][1] >= 0).all()
    capped = load_splits("archive", unlabelled, None, 0, 18, None, need_labels=False, **opts)
    assert len(capped["train"][1]) == 18  # --limit caps the training set, unlabelled included


@pytest.mark.parametrize(
    "dataset, option",
    [("cifar10", "size"), ("synthetic-aurora", "labels"), ("folder", "n_database")],
)
def test_options_a_dataset_does_not_use_are_refused(dataset, option, tmp_path):
    flag = "--" + option.replace("_", "-")
    with pytest.raises(BadInput, match=f"{flag} does not apply to dataset {dataset}"):
        load_splits(dataset, str(tmp_path), None, 0, None, None, **{option: 32})


def test_frames_and_order_equal_whatever_the_worker_count(archive, monkeypatch):
    from pipeline.ingest import local_read as mod
    from pipeline.model.preprocess import PreprocessConfig

    pre = PreprocessConfig.aurora(16).to_dict()
    one = mod.read_archive(archive, pre, workers=1)
    monkeypatch.setattr(mod, "FILES_PER_JOB", 1)  # one file per job: two processes share them
    two = mod.read_archive(archive, pre, workers=2)
    assert one.x.shape == (N, 1, 16, 16) and one.skipped == 0
    np.testing.assert_array_equal(one.x, two.x)
    assert one.ids.tolist() == two.ids.tolist() and one.labels.tolist() == two.labels.tolist()


@pytest.mark.integration
def test_archive_on_s3_with_a_catalogue_on_s3_equals_the_local_read(archive, s3, tmp_path):
    from pipeline.ingest.local_read import archive_files

    bucket = s3.bucket("labelled")
    s3.upload_dir(archive, bucket, "nights")
    rel = [r for _, r in archive_files(archive)]
    csv = tmp_path / "labels.csv"
    csv.write_text("id,label\n" + "".join(f"{r}#{i},{i % 2}\n" for r in rel for i in range(20)))
    s3.upload_dir(str(tmp_path), bucket, "catalogue")
    so = s3.storage_options
    remote = load_splits(
        "archive", f"s3://{bucket}/nights", None, 0, None, so, size=16, n_query=5,
        labels=f"s3://{bucket}/catalogue/labels.csv",
    )  # fmt: skip
    opts = dict(size=16, n_query=5, labels=str(csv))
    local = load_splits("archive", archive, None, 0, None, None, **opts)
    for part in ("query", "db"):
        np.testing.assert_array_equal(remote[part][0], local[part][0])
        assert remote[part][1].tolist() == local[part][1].tolist()
