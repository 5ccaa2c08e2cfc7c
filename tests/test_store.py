"""pipeline.codes.store: the DESIGN.md code-shard schema, atomic writes and the shard reader;
datasets of shards read back through the catalogue, as search, benchmark and export read them."""

from __future__ import annotations

import datetime as dt
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from shard_fixtures import read_codes

from pipeline import storage
from pipeline.codes import catalogue, search, store
from pipeline.errors import BadInput

SHA = "0123456789abcdef" * 4
UTC = dt.timezone.utc


def _columns(n=4, words=1, rel="2014/a.pgm.gz", seed=0, label=True):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**63, size=(n, words), dtype=np.int64).astype(np.uint64)
    codes[0, 0] |= np.uint64(1) << np.uint64(63)  # the top bit must survive
    return {
        "id": [store.frame_id(rel, i) for i in range(n)],
        "source": [f"/archive/{rel}"] * n,
        "frame": np.arange(n, dtype=np.int64),
        "site": ["gill"] * (n - 1) + [None],
        "time": [dt.datetime(2014, 3, 10, 6, 0, 3 * i, 63119, tzinfo=UTC) for i in range(n - 1)]
        + [None],
        "code": codes,
        "label": ([1, None] * n)[:n] if label else [None] * n,
        "pred": np.arange(n) % 3,
        "score": np.linspace(0.25, 1.0, n),
    }


def _meta(nbits=64, model=SHA, classes=("arc", "hot_spot")):
    return store.ShardMeta(nbits=nbits, model=model, classes=classes)


def _load(where, model=None):
    """(codes, ids, labels, meta) of a dataset, through the catalogue (`search.load_all`)."""
    cat = catalogue.open_catalogue(where, model)
    codes, labels, ids = search.load_all(cat)
    return codes, ids, labels, cat.meta


def test_schema_is_the_design_one():
    s = store.shard_schema(48)
    assert [(f.name, str(f.type), f.nullable) for f in s] == [
        ("id", "string", False),
        ("source", "string", False),
        ("frame", "int32", False),
        ("site", "string", True),
        ("time", "timestamp[us, tz=UTC]", True),
        ("code", "fixed_size_binary[8]", False),
        ("label", "int16", True),
        ("pred", "int16", False),
        ("score", "float", False),
    ]
    assert store.shard_schema(64).field("code").type.byte_width == 8
    assert store.shard_schema(65).field("code").type.byte_width == 16
    assert store.shard_schema(128).field("code").type.byte_width == 16


def test_write_read_roundtrip_with_metadata(tmp_path):
    cols = _columns(n=5, words=2)
    meta = _meta(nbits=100)
    uri = store.shard_uri(str(tmp_path), "2014/a.pgm.gz", SHA)
    assert uri == f"{tmp_path}/{SHA[:12]}/2014/a.pgm.gz.parquet"
    store.write_shard(uri, cols, meta)

    # Read with plain pyarrow: the file is an ordinary Parquet file with the documented metadata.
    t = pq.read_table(uri)
    kv = {k.decode(): v.decode() for k, v in t.schema.metadata.items() if k.startswith(b"auror")}
    assert kv["aurorahash.nbits"] == "100"
    assert kv["aurorahash.model"] == SHA
    assert json.loads(kv["aurorahash.classes"]) == ["arc", "hot_spot"]
    assert kv["aurorahash.layout"] == store.LAYOUT
    dt.datetime.fromisoformat(kv["aurorahash.created"])
    assert t.schema.remove_metadata() == store.shard_schema(100)

    # Packed codes are little-endian uint64 bytes (DESIGN "Packed codes").
    raw = t.column("code").to_pylist()
    assert raw[0] == cols["code"][0].astype("<u8").tobytes()
    assert t.column("time").to_pylist()[0] == dt.datetime(2014, 3, 10, 6, 0, 0, 63119, tzinfo=UTC)
    assert t.column("site").to_pylist()[-1] is None
    assert t.column("label").to_pylist() == [1, None, 1, None, 1]

    codes, ids, labels, m = _load(str(tmp_path))
    np.testing.assert_array_equal(codes, cols["code"])
    assert codes.dtype == np.uint64 and codes.shape == (5, 2)
    assert list(ids) == cols["id"]
    assert labels.tolist() == [1, -1, 1, -1, 1]
    assert m.nbits == 100 and m.model == SHA and m.classes == ("arc", "hot_spot")


def test_code_inputs_bytes_and_uint8_agree(tmp_path):
    cols = _columns(n=3)
    meta = _meta()
    as_bytes = dict(cols, code=[c.astype("<u8").tobytes() for c in cols["code"]])
    as_u8 = dict(cols, code=cols["code"].astype("<u8").view(np.uint8).reshape(3, 8))
    a = store.build_table(cols, meta)
    assert a.column("code").equals(store.build_table(as_bytes, meta).column("code"))
    assert a.column("code").equals(store.build_table(as_u8, meta).column("code"))


def test_readers_skip_hidden_and_non_parquet(tmp_path):
    meta = _meta()
    store.write_shard(f"{tmp_path}/m/a.parquet", _columns(rel="a"), meta)
    store.write_shard(f"{tmp_path}/m/_b.parquet", _columns(rel="b"), meta)
    store.write_shard(f"{tmp_path}/m/.c.parquet", _columns(rel="c"), meta)
    store.write_shard(f"{tmp_path}/_quarantine/d.parquet", _columns(rel="d"), meta)
    (tmp_path / "m" / "notes.txt").write_text("x")
    assert store.list_shards(str(tmp_path)) == [f"{tmp_path}/m/a.parquet"]
    cat = catalogue.open_catalogue(str(tmp_path))
    assert [p.uri for p in cat.parts] == [f"{tmp_path}/m/a.parquet"]
    assert read_codes(str(tmp_path)).num_rows == 4


def test_inconsistent_shards_are_bad_input(tmp_path):
    store.write_shard(f"{tmp_path}/x/a.parquet", _columns(rel="a"), _meta(nbits=64))
    store.write_shard(f"{tmp_path}/x/b.parquet", _columns(rel="b"), _meta(nbits=48))
    with pytest.raises(BadInput, match="nbits=48 .* differ"):
        _load(str(tmp_path))
    other = "f" * 64
    store.write_shard(f"{tmp_path}/y/a.parquet", _columns(rel="a"), _meta(model=other))
    assert _load(f"{tmp_path}/y")[3].model == other
    # A model filter picks one model's shards out of an output holding several (<model12>/).
    mixed = tmp_path / "out"
    store.write_shard(store.shard_uri(str(mixed), "a", SHA), _columns(rel="a"), _meta())
    store.write_shard(
        store.shard_uri(str(mixed), "b", other), _columns(rel="b"), _meta(model=other)
    )
    with pytest.raises(BadInput, match="several models"):
        _load(str(mixed))
    codes, ids, _, m = _load(str(mixed), model=other[:12])
    assert m.model == other and list(ids) == [store.frame_id("b", i) for i in range(4)]


def test_empty_shard_and_empty_dataset(tmp_path):
    cols = {k: [] for k in store.COLUMNS}
    cols["code"] = np.zeros((0, 1), dtype=np.uint64)
    store.write_shard(f"{tmp_path}/m/empty.parquet", cols, _meta())
    codes, ids, labels, _ = _load(str(tmp_path))
    assert codes.shape == (0, 1) and len(ids) == 0 and len(labels) == 0
    with pytest.raises(BadInput, match="no code shards"):
        _load(str(tmp_path / "nothing"))


def test_bad_columns_rejected(tmp_path):
    cols = _columns()
    with pytest.raises(BadInput, match="missing"):
        store.build_table({k: v for k, v in cols.items() if k != "pred"}, _meta())
    with pytest.raises(BadInput):
        store.build_table(dict(cols, code=np.zeros((4, 2), dtype=np.uint64)), _meta(nbits=64))
    with pytest.raises(BadInput, match="nulls"):
        store.build_table(dict(cols, id=["a", None, "c", "d"]), _meta())
    with pytest.raises(BadInput):
        store.shard_uri(str(tmp_path), "../escape.pgm", SHA)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(BadInput):
        store.read_shard(str(tmp_path / "junk.parquet"))


def test_atomic_write_leaves_no_temp_files(tmp_path):
    uri = store.shard_uri(str(tmp_path), "a/b.cdf", SHA)
    for seed in range(3):  # overwrite in place: readers see the old or the new file, whole
        store.write_shard(uri, _columns(seed=seed), _meta())
    files = [
        os.path.relpath(os.path.join(d, f), tmp_path) for d, _, fs in os.walk(tmp_path) for f in fs
    ]
    assert files == [f"{SHA[:12]}/a/b.cdf.parquet"]
    assert store.relpath_of_shard(uri, store.model_prefix(str(tmp_path), SHA)) == "a/b.cdf"


def test_s3_roundtrip(s3):
    bucket = s3.bucket("shards")
    out = storage.location(f"s3://{bucket}/codes", options=s3.storage_options)
    meta = _meta(nbits=32)
    cols = {"a.pgm": _columns(rel="a.pgm", seed=1), "d/b.pgm": _columns(rel="d/b.pgm", seed=2)}
    for rel, c in cols.items():
        c["code"] = c["code"] & np.uint64(0xFFFFFFFF)
        store.write_shard(out.at(store.shard_uri(out.uri, rel, SHA)), c, meta)
    assert s3.keys(bucket) == [
        f"codes/{SHA[:12]}/a.pgm.parquet",
        f"codes/{SHA[:12]}/d/b.pgm.parquet",
    ]
    codes, ids, labels, m = _load(out)
    assert list(ids) == cols["a.pgm"]["id"] + cols["d/b.pgm"]["id"]
    np.testing.assert_array_equal(codes, np.concatenate([c["code"] for c in cols.values()]))
    assert m.nbits == 32 and store.list_models(out) == [SHA[:12]]
    t = read_codes(out)
    assert t.num_rows == 8 and t.schema.field("code").type == pa.binary(8)


def test_mtime_of_reads_every_store_flavour():
    import datetime as dt

    from pipeline.storage import mtime_of

    t = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.timezone.utc)
    assert mtime_of({"mtime": 1.5}) == 1.5  # local
    assert mtime_of({"LastModified": t}) == t.timestamp()  # s3fs
    assert mtime_of({"LastModified": t.replace(tzinfo=None)}) == t.timestamp()  # naive = UTC
    assert mtime_of({"updated": "2026-11-26T12:00:00Z"}) == t.timestamp()  # gcsfs-style string
    assert mtime_of({"created": "not a time"}) is None and mtime_of({}) is None
    assert mtime_of(None) is None


def test_meta_column_is_optional_and_null_where_a_shard_lacks_it(tmp_path):
    """Shards written before the `meta` column existed stay readable beside newer ones."""
    old = store.shard_uri(str(tmp_path), "2014/a.pgm.gz", SHA)
    store.write_shard(old, _columns(n=3), _meta())
    new = store.shard_uri(str(tmp_path), "2014/b.pgm.gz", SHA)
    texts = ['{"sequence":5}', None, '{"sequence":7}']
    written = store.write_shard(new, dict(_columns(n=3, rel="2014/b.pgm.gz"), meta=texts), _meta())
    assert "meta" not in pq.read_schema(old).names
    assert written.schema.remove_metadata() == store.shard_schema(64, ["meta"])
    assert store.shard_schema(64, ["meta"]).field("meta").type == pa.string()

    t = store.read_shard(old, columns=["meta", "id"])
    assert t.column_names == ["meta", "id"] and t.column("meta").to_pylist() == [None] * 3
    assert store.shard_meta(t).model == SHA  # the metadata survives the added column
    assert store.read_shard(new, columns=["id", "meta"]).column("meta").to_pylist() == texts
    with pytest.raises(BadInput, match="no column 'nope'"):
        store.read_shard(old, columns=["id", "nope"])

    both = read_codes(str(tmp_path))
    assert both.column("meta").to_pylist() == [None] * 3 + texts
    again = store.shard_uri(str(tmp_path / "copy"), "2014/b.pgm.gz", SHA)
    store.write_shard(again, store.read_shard(new))  # a table keeps its optional column
    assert store.read_shard(again).column("meta").to_pylist() == texts


def test_location_normalises_and_carries_its_options(tmp_path, monkeypatch):
    """storage.Location: one value for a URI and the options that reach it (credentials never
    printed, the same settings for delta-rs), small to pickle for Ray tasks."""
    import pickle

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSECRETVALUE")
    loc = storage.location("s3a://bucket/out/", endpoint="http://127.0.0.1:9")
    assert loc.uri == "s3://bucket/out" and loc.path == "bucket/out" and not loc.is_local
    assert loc.options["client_kwargs"] == {"endpoint_url": "http://127.0.0.1:9"}
    assert loc.delta_options["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"
    assert "AKIDSECRETVALUE" not in repr(loc) and "AKIDSECRETVALUE" not in str(loc.child("x"))
    assert loc.child("m", "a.parquet/").uri == "s3://bucket/out/m/a.parquet"
    assert loc.child("m").options == loc.options and storage.location(loc) is loc
    assert pickle.loads(pickle.dumps(loc)) == loc
    monkeypatch.chdir(tmp_path)
    here = storage.location("d/")
    assert here.uri == f"{tmp_path}/d" and here.is_local and here.options == {}
    assert storage.location(f"file://{tmp_path}/d") == here and here.delta_uri == here.path
    here.child("e", "f.bin").write_atomic(b"x")
    assert here.list_entries(detail=False) == {f"{tmp_path}/d/e/f.bin": None}
    assert here.child("e", "f.bin").read_bytes() == b"x" and here.subfolders() == ["e"]
    here.remove_files([f"{tmp_path}/d/e/f.bin"])
    assert not here.child("e", "f.bin").exists()
    here.child("e", "g.bin").write_atomic(b"y")  # one already gone (a concurrent retire): no error
    here.remove_files([f"{tmp_path}/d/e/f.bin", f"{tmp_path}/d/e/g.bin"])
    assert not here.child("e", "g.bin").exists()


@pytest.mark.parametrize("base", ["LOCAL", "s3://bucket/out"])
def test_at_equals_a_fresh_location_for_every_uri_form(tmp_path, base):
    """`Location.at` skips fsspec's parsing for URIs already normal below it: every form it
    could be handed must give the Location the constructor gives."""
    root = storage.location(str(tmp_path) if base == "LOCAL" else base)
    u = root.uri
    for uri in [
        f"{u}/m/a.parquet",
        f"{u}/m/a.parquet/",
        f"{u}/m//a.parquet",
        f"{u}/m/./a.parquet",
        f"{u}/m/../a.parquet",
        f"{u}/m/..",
        f"{u}/m/.",
        f"{u}x/a.parquet",  # a sibling whose name starts with the root's
        "/elsewhere/a.parquet" if root.is_local else "s3://other/a.parquet",
    ]:
        got, want = root.at(uri), storage.Location(uri, root.options)
        assert (got.uri, got.options) == (want.uri, want.options), uri
