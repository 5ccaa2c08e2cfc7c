"""`aurorahash benchmark --report`: the numbers in the report equal the kernels on the whole
database, one new dated folder per run, and --out writes inside a folder."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from report_fixtures import write_models

import kernels
from jobs.cli import main
from pipeline.codes import catalogue, search


def _read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def _run(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr().out.strip().splitlines()
    return rc, json.loads(out[-1])


def _reference(root, model):
    cat = catalogue.open_catalogue(root, model)
    return search.load_all(cat)[:2]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    models = write_models(root / "db", root / "q", bits=(16, 40), db_files=12, query_files=2)
    return root, models


def test_report_numbers_equal_the_kernels(archive, tmp_path, capsys):
    root, models = archive
    args = ["--database", str(root / "db"), "--queries", str(root / "q"), "--no-ray"]
    rc, s = _run(capsys, "benchmark", *args, "--topk", "30", "--report", str(tmp_path / "r"))
    assert rc == 0 and s["ok"], s
    folder = os.path.dirname(s["report"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d{6}Z-benchmark", os.path.basename(folder))
    assert sorted(os.listdir(folder)) == [
        "map_vs_bits.png",
        "per_class_ap.png",
        "pr_curves.png",
        "precision_at_k.png",
        "report.html",
        "report.json",
    ]
    doc = json.loads(_read(os.path.join(folder, "report.json")))
    assert [m["nbits"] for m in doc["models"]] == [16, 40]
    assert doc["run"]["topk"] == 30 and doc["run"]["seconds"] > 0
    for rec in doc["models"]:
        nbits = rec["nbits"]
        assert rec["model"] == models[nbits] and s["models"][rec["model12"]]["map"] == rec["map"]
        db, db_labels = _reference(str(root / "db"), rec["model"])
        q, q_labels = _reference(str(root / "q"), rec["model"])
        assert rec["n_queries"] == len(q) == 40 and rec["n_database"] == len(db) == 240
        # PR per Hamming radius 0..nbits, no padding to 64 * words
        assert rec["pr_radius"] == list(range(nbits + 1)) and len(rec["pr_precision"]) == nbits + 1
        ks = rec["precision_at_k"]["k"]
        assert ks[0] == 1 and 30 in ks and ks[-1] == 240
        want = [
            kernels.precision_at_k(q, db, q_labels, db_labels, k, ties="aware").mean() for k in ks
        ]
        np.testing.assert_allclose(rec["precision_at_k"]["precision"], want, atol=1e-6)
        aps = kernels.average_precision(q, db, q_labels, db_labels)
        classes = [c["label"] for c in rec["per_class"]]
        assert classes == sorted(set(q_labels.tolist()))
        for c in rec["per_class"]:
            assert c["name"] == rec["classes"][c["label"]]
            assert c["queries"] == int((q_labels == c["label"]).sum())
            assert c["ap"] == pytest.approx(aps[q_labels == c["label"]].mean(), abs=1e-6)
        assert rec["map"] == pytest.approx(aps.mean(), abs=1e-6)
    page = _read(os.path.join(folder, "report.html"))
    assert page.count('src="data:image/png;base64,') == 4 and "MAP@30" in page


def test_each_run_writes_a_new_folder_and_out_goes_inside_a_folder(archive, tmp_path, capsys):
    root, models = archive
    sha16 = models[16][:8]
    args = ["--database", str(root / "db"), "--queries", str(root / "q"), "--no-ray"]
    (tmp_path / "out").mkdir()
    rc, s1 = _run(
        capsys,
        "benchmark",
        "-v",
        *args,
        "--model",
        sha16,
        "--report",
        str(tmp_path / "r"),
        "--out",
        str(tmp_path / "out"),
    )
    assert rc == 0 and s1["out"] == str(tmp_path / "out" / "benchmark.json")
    (entry,) = json.loads((tmp_path / "out" / "benchmark.json").read_text()).values()
    assert entry["nbits"] == 16 and len(entry["pr_precision"]) == 17
    first = _read(s1["report"])
    rc, s2 = _run(capsys, "benchmark", *args, "--model", sha16, "--report", str(tmp_path / "r"))
    assert rc == 0 and s2["report"] != s1["report"] and _read(s1["report"]) == first
    assert len(os.listdir(tmp_path / "r")) == 2
    doc = json.loads(_read(os.path.join(os.path.dirname(s2["report"]), "report.json")))
    assert "map_vs_bits.png" not in doc["figures"]  # one code length: no MAP-vs-bits plot
