"""Export a dataset of code shards as one index for downstream search systems.

Why: downstream teams load codes into their own engines (FAISS, NumPy, SQL over Parquet). They
want one file of codes in index order, one table mapping index -> frame id and metadata, and a
manifest saying what the codes are. The FAISS file is written byte for byte in FAISS's own
`IndexBinaryFlat` serialisation (so `faiss.read_index_binary` loads it) without needing FAISS here;
our packed layout already equals FAISS's binary code layout (DESIGN.md "Packed codes").

Output (every file committed atomically; the manifest last, so its presence means "complete"):
    OUT/codes.faissbin | OUT/codes.npy | OUT/codes.parquet    the codes, row i = index i
    OUT/ids.parquet                                          row, id, source, frame, site, time,
                                                             label, pred, score
    OUT/manifest.json                                        nbits, words, model, classes, layout,
                                                             count, shards, files (+ sha256)
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import struct
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import storage, store
from pipeline.errors import BadInput

FORMATS = ("faiss", "npy", "parquet")
METRIC_L2 = 1  # what FAISS stores for binary flat indexes (Hamming search ignores it)


def faiss_binary_flat_bytes(codes: np.ndarray) -> bytes:
    """FAISS `IndexBinaryFlat` serialisation of packed codes (n, words) uint64.

    Layout (faiss/impl/index_write.cpp): fourcc "IBxF", int32 d, int32 code_size, int64 ntotal,
    uint8 is_trained, int32 metric_type, then the code vector as uint64 size + bytes.
    """
    codes = np.ascontiguousarray(codes, dtype="<u8")
    n, words = codes.shape
    code_size = 8 * words
    header = struct.pack(
        "<4siiqBiq", b"IBxF", 8 * code_size, code_size, n, 1, METRIC_L2, n * code_size
    )
    return header + codes.tobytes()


def _npy_bytes(codes: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(codes, dtype="<u8").view(np.uint8), allow_pickle=False)
    return buf.getvalue()


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def export(
    shards: Sequence[str],
    out_uri: str,
    fmt: str = "faiss",
    storage_options: dict | None = None,
    out_storage_options: dict | None = None,
) -> dict:
    """Write the export of `shards` (one model's) under `out_uri`; returns the manifest."""
    if fmt not in FORMATS:
        raise BadInput(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not shards:
        raise BadInput("nothing to export: no code shards")
    out_so = storage_options if out_storage_options is None else out_storage_options
    tables, meta = [], None
    for uri in shards:
        t = store.read_shard(uri, storage_options)
        m = store.shard_meta(t)
        if meta is None:
            meta = m
        elif not meta.compatible(m):
            raise BadInput(f"{uri}: nbits/model/classes differ from {shards[0]}; export one model")
        tables.append(t.replace_schema_metadata(None))
    table = pa.concat_tables(tables)
    n = table.num_rows
    codes = store.codes_to_numpy(table.column("code"), meta.nbits)

    files = {}
    if fmt == "faiss":
        files["codes.faissbin"] = faiss_binary_flat_bytes(codes)
    elif fmt == "npy":
        files["codes.npy"] = _npy_bytes(codes)
    else:
        files["codes.parquet"] = _parquet_bytes(table.replace_schema_metadata(meta.to_kv()))
    ids = table.drop_columns(["code"])
    ids = ids.add_column(0, "row", pa.array(np.arange(n, dtype=np.int64)))
    files["ids.parquet"] = _parquet_bytes(ids)

    root = str(out_uri).rstrip("/")
    storage.makedirs(root, out_so)
    manifest = {
        "format": fmt,
        "nbits": meta.nbits,
        "words": meta.words,
        "code_bytes": 8 * meta.words,
        "layout": meta.layout,
        "model": meta.model,
        "classes": list(meta.classes),
        "count": n,
        "shards": len(shards),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "files": {},
    }
    for name, data in files.items():
        storage.atomic_write_bytes(f"{root}/{name}", data, out_so)
        manifest["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    storage.atomic_write_bytes(
        f"{root}/manifest.json", json.dumps(manifest, indent=2).encode(), out_so
    )
    return manifest
