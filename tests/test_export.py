"""pipeline.codes.export and the search/benchmark/export jobs on small shard datasets."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from shard_fixtures import popcount_distances, reference_ap, write_dataset

from jobs.cli import main
from pipeline.codes import catalogue, export


def _run(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr().out.strip().splitlines()
    return rc, json.loads(out[-1])


def _part(root, manifest, suffix):
    (part,) = manifest["parts"]
    ids = suffix == ".ids.parquet"
    (name,) = [f for f in part["files"] if f.endswith(suffix) and f.endswith(".ids.parquet") == ids]
    return root / name


@pytest.mark.parametrize("nbits", [12, 64, 100])
def test_faiss_file_loads_and_searches_the_same(tmp_path, nbits):
    faiss = pytest.importorskip("faiss")
    codes, labels, ids, uris = write_dataset(tmp_path / "codes", sizes=(9, 4, 11), nbits=nbits)
    cat = catalogue.open_catalogue(str(tmp_path / "codes"))
    manifest = export.export(cat, str(tmp_path / "exp"), "faiss")
    assert manifest["count"] == 24 and manifest["nbits"] == nbits
    index = faiss.read_index_binary(str(_part(tmp_path / "exp", manifest, ".faissbin")))
    assert index.ntotal == 24 and index.d == 64 * codes.shape[1]
    xb = codes.astype("<u8").view(np.uint8)
    D, _ = index.search(xb[:5], 24)
    ref = np.sort(popcount_distances(codes[:5], codes), axis=1)
    np.testing.assert_array_equal(D, ref)
    table = pq.read_table(_part(tmp_path / "exp", manifest, ".ids.parquet"))
    assert table.column("id").to_pylist() == list(ids)


def test_npy_and_parquet_exports(tmp_path):
    codes, labels, ids, uris = write_dataset(tmp_path / "codes", sizes=(3, 5), nbits=48)
    cat = catalogue.open_catalogue(str(tmp_path / "codes"))
    m = export.export(cat, str(tmp_path / "n"), "npy")
    arr = np.load(_part(tmp_path / "n", m, ".npy"), allow_pickle=False)
    assert arr.dtype == np.uint8 and arr.shape == (8, 8)
    np.testing.assert_array_equal(arr.view("<u8"), codes)
    m = export.export(cat, str(tmp_path / "p"), "parquet")
    t = pq.read_table(_part(tmp_path / "p", m, ".parquet"))
    assert t.num_rows == 8 and t.schema.metadata[b"aurorahash.nbits"] == b"48"
    on_disk = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert on_disk["parts"] == m["parts"] and m["count"] == 8


def test_export_job_and_bad_usage(tmp_path, capsys):
    write_dataset(tmp_path / "codes", sizes=(3, 5))
    rc, s = _run(capsys, "export", "--codes", str(tmp_path / "codes"), "--out", str(tmp_path / "x"))
    assert rc == 0 and s["ok"] and s["count"] == 8 and s["format"] == "faiss"
    assert s["parts"] == 1 and s["shards"] == 2 and s["segments"] == 0
    rc, s = _run(capsys, "export", "--codes", str(tmp_path / "none"), "--out", str(tmp_path / "y"))
    assert rc == 2 and not s["ok"] and "no code shards" in s["error"]
    with pytest.raises(SystemExit) as e:
        main(["export", "--codes", str(tmp_path), "--out", "x", "--format", "bogus"])
    assert e.value.code == 2


def test_search_job_by_query_id(tmp_path, capsys):
    codes, labels, ids, uris = write_dataset(tmp_path / "codes", sizes=(6, 7), nbits=24)
    rc, s = _run(
        capsys,
        "search",
        "--codes",
        str(tmp_path / "codes"),
        "--query-id",
        ids[8],
        "--k",
        "4",
        "--no-ray",
    )
    assert rc == 0 and s["n_database"] == 13 and s["k"] == 4
    got = s["neighbors"][ids[8]]
    d = popcount_distances(codes[8:9], codes)[0]
    order = np.argsort(d, kind="stable")[:4]
    assert [g[0] for g in got] == list(ids[order])
    assert [g[1] for g in got] == list(d[order])
    rc, s = _run(
        capsys, "search", "--codes", str(tmp_path / "codes"), "--query-id", "nope#1", "--no-ray"
    )
    assert rc == 2 and "nope#1" in s["error"]
    out = tmp_path / "nn.parquet"
    rc, s = _run(
        capsys,
        "search",
        "--codes",
        str(tmp_path / "codes"),
        "--queries",
        str(tmp_path / "codes"),
        "--k",
        "3",
        "--no-ray",
        "--out",
        str(out),
    )
    assert rc == 0 and pq.read_table(out).num_rows == 13 * 3


def test_benchmark_job(tmp_path, capsys):
    codes, labels, ids, uris = write_dataset(tmp_path / "db", sizes=(10, 12), seed=5)
    qc, ql, qids, _ = write_dataset(tmp_path / "q", sizes=(4,), seed=6)
    rc, s = _run(
        capsys,
        "benchmark",
        "--database",
        str(tmp_path / "db"),
        "--queries",
        str(tmp_path / "q"),
        "--topk",
        "5",
        "--no-ray",
        "--out",
        str(tmp_path / "report.json"),
    )
    assert rc == 0 and s["n_queries"] == 4 and s["n_database"] == 22
    d = popcount_distances(qc, codes)
    ref = np.mean([reference_ap(d[i], labels == ql[i]) for i in range(4)])
    assert s["map"] == pytest.approx(ref, abs=1e-6)
    report = json.loads((tmp_path / "report.json").read_text())
    (entry,) = report.values()
    assert len(entry["pr_precision"]) == len(entry["pr_recall"]) > 0


def test_reexport_adds_parts_for_new_segments_and_keeps_the_rest(tmp_path, capsys):
    from code_archive import Archive

    from pipeline.codes import compact
    from pipeline.synth.codes import archive_relpaths

    a = Archive(tmp_path / "codes")
    night = lambda d, n: [r.replace("/10/", f"/{d}/") for r in archive_relpaths(n)]  # noqa: E731
    a.write(night(10, 40))
    compact.compact(a.root, target_rows=800)
    out = str(tmp_path / "exp") + "/"
    rc, s = _run(capsys, "export", "--codes", a.root, "--out", out, "--format", "npy")
    assert rc == 0 and (s["parts"], s["parts_written"], s["segments"]) == (1, 1, 1)
    first = json.loads((tmp_path / "exp" / "manifest.json").read_text())
    part0 = first["parts"][0]
    mtime0 = {f: (tmp_path / "exp" / f).stat().st_mtime_ns for f in part0["files"]}
    # a new night: its own segment; one pending shard of a third night
    a.write(night(11, 40), seed=1)
    compact.compact(a.root, target_rows=800)
    a.write(night(12, 1), seed=2)
    rc, s = _run(capsys, "export", "--codes", a.root, "--out", out, "--format", "npy")
    assert rc == 0 and (s["parts"], s["parts_written"], s["parts_kept"]) == (3, 2, 1)
    m = json.loads((tmp_path / "exp" / "manifest.json").read_text())
    assert m["parts"][0]["name"] == part0["name"] and m["shards"] == 1
    assert m["segments"] == [p["name"] for p in m["parts"][:2]]
    assert {f: (tmp_path / "exp" / f).stat().st_mtime_ns for f in part0["files"]} == mtime0
    # the parts in manifest order are the catalogue in canonical order, offsets included
    codes, _, ids = a.reference()
    got = np.concatenate(
        [np.load(tmp_path / "exp" / f"parts/{p['name']}.npy") for p in m["parts"]]
    ).view("<u8")
    np.testing.assert_array_equal(got, codes)
    got_ids = sum(
        (
            pq.read_table(tmp_path / "exp" / f"parts/{p['name']}.ids.parquet")["id"].to_pylist()
            for p in m["parts"]
        ),
        [],
    )
    assert got_ids == list(ids)
    assert [p["offset"] for p in m["parts"]] == [0, 800, 1600] and m["count"] == 1620
    # once compacted, the pending shard is a segment of its own: the pending part goes
    compact.compact(a.root, target_rows=800)
    rc, s = _run(capsys, "export", "--codes", a.root, "--out", out, "--format", "npy")
    assert rc == 0 and (s["parts"], s["parts_written"], s["parts_kept"]) == (3, 1, 2)
    assert s["parts_removed"] == 1 and s["segments"] == 3 and s["shards"] == 0
    files = {str(p.relative_to(tmp_path / "exp")) for p in (tmp_path / "exp").rglob("*.*")}
    m = json.loads((tmp_path / "exp" / "manifest.json").read_text())
    assert files == {"manifest.json"} | {f for p in m["parts"] for f in p["files"]}


def test_query_id_reads_only_the_part_that_holds_the_file(tmp_path, capsys, monkeypatch):
    from code_archive import Archive

    from pipeline.codes import catalogue, compact, segments
    from pipeline.synth.codes import archive_relpaths

    a = Archive(tmp_path / "codes")
    a.write([r.replace("/10/", f"/1{i % 3}/") for i, r in enumerate(archive_relpaths(60))])
    compact.compact(a.root, target_rows=300)
    codes, _, ids = a.reference()
    reads = []
    real = segments.read_parquet
    monkeypatch.setattr(
        segments, "read_parquet", lambda loc, *x, **kw: reads.append(loc.uri) or real(loc, *x, **kw)
    )
    cat = a.catalogue()
    reads.clear()
    found = catalogue.lookup_ids(cat, [ids[777]])
    assert found.column("id").to_pylist() == [ids[777]] and len(set(reads)) == 1
    assert len(cat.segments) >= 3


@pytest.mark.integration
def test_search_and_benchmark_jobs_start_their_own_ray(tmp_path, capsys, monkeypatch):
    from pipeline.codes import placement

    codes, labels, ids, uris = write_dataset(tmp_path / "db", sizes=(10, 12, 7), seed=5)
    qc, ql, qids, _ = write_dataset(tmp_path / "q", sizes=(4,), seed=6)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    args = ["--database", str(tmp_path / "db"), "--queries", str(tmp_path / "q")]
    rc, ray_s = _run(capsys, "benchmark", *args, "--ray", "--out", str(tmp_path) + "/")
    assert rc == 0 and (tmp_path / "benchmark.json").exists() and ray_s["executor"] == "ray"
    rc, local_s = _run(capsys, "benchmark", *args, "--no-ray")
    assert ray_s["map"] == local_s["map"] and ray_s["map_tie_aware"] == local_s["map_tie_aware"]
    assert local_s["executor"] == "local"
    monkeypatch.setattr(placement, "RAY_START_S", -1.0)  # any work is worth a Ray now
    rc, s = _run(
        capsys, "search", "--codes", str(tmp_path / "db"), "--query-id", ids[3], "--k", "5"
    )
    d = popcount_distances(codes[3:4], codes)[0]
    assert rc == 0 and s["executor"] == "ray"  # chosen, not forced
    assert [g[0] for g in s["neighbors"][ids[3]]] == list(ids[np.argsort(d, kind="stable")[:5]])


def test_ids_carry_the_meta_column_null_where_shards_lack_it(tmp_path):
    import pyarrow as pa

    from pipeline.codes import compact, store

    _, _, ids, uris = write_dataset(tmp_path / "codes", sizes=(3, 5), nbits=12)
    texts = [json.dumps({"sequence": 40 + k}) for k in range(5)]
    t = store.read_shard(uris[1])
    store.write_shard(uris[1], t.append_column("meta", pa.array(texts, pa.string())))
    for step in ("shards", "segments"):
        if step == "segments":
            compact.compact(str(tmp_path / "codes"))
        cat = catalogue.open_catalogue(str(tmp_path / "codes"))
        m = export.export(cat, str(tmp_path / step), "npy")
        table = pq.read_table(_part(tmp_path / step, m, ".ids.parquet"))
        assert table.column("id").to_pylist() == list(ids), step
        assert table.column("meta").to_pylist() == [None] * 3 + texts, step
