"""Export one model's codes for downstream search systems, one part per search segment.

Why: downstream teams load codes into their own engines (FAISS, NumPy, SQL over Parquet). They
want codes in index order, a table mapping index -> frame id and metadata, and a manifest saying
what the codes are. FAISS files are written byte for byte in FAISS's own `IndexBinaryFlat`
serialisation (so `faiss.read_index_binary` loads them) without needing FAISS here; our packed
layout already equals FAISS's binary code layout (DESIGN.md "Packed codes").

Output (every file committed atomically; the manifest last, so its presence means "complete"):
    OUT/parts/<part>.faissbin | .npy | .parquet   the codes of one segment (or of the shards not
                                                  yet compacted), in canonical (file, frame) order
    OUT/parts/<part>.ids.parquet                  id, source, frame, site, time, label, pred, score,
                                                  meta (per-frame header values as JSON, or null)
    OUT/manifest.json                             nbits, words, model, classes, layout, count, the
                                                  segments covered and the table version, and the
                                                  parts in order: name, rows, offset (the global
                                                  index of its first row), files (+ sha256)

Loading everything as one FAISS index: read the parts in manifest order and `add` each one's
codes (or use `faiss.IndexBinaryFlat.merge_from`). Re-exports add files (see `export`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import struct

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.codes import catalogue, store
from pipeline.errors import BadInput
from pipeline.progress import Progress
from pipeline.storage import Location

FORMATS = ("faiss", "npy", "parquet")
EXT = {"faiss": "faissbin", "npy": "npy", "parquet": "parquet"}
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


def _units(cat: catalogue.Catalogue) -> list[tuple[str, str, list]]:
    """(name, kind, parts) in canonical order: one unit per segment (immutable: a rewritten
    segment gets a new name) and one for the shards not yet compacted, named by their listing."""
    units, seen = [], {}
    for p in cat.segments:
        if p.name not in seen:
            seen[p.name] = []
            units.append((p.name, "segment", seen[p.name]))
        seen[p.name].append(p)
    if cat.shards:
        key = json.dumps(sorted((s.name, cat.pending[s.uri][1]) for s in cat.shards))
        name = "pending-" + hashlib.sha256(key.encode()).hexdigest()[:16]
        units.append((name, "shards", cat.shards))
    units.sort(key=lambda u: min(p.lo for p in u[2]))
    return units


def _unit_files(name: str, parts: list, cat, fmt: str) -> dict[str, bytes]:
    task = catalogue.Task(tuple(parts), sum(p.rows for p in parts), len(parts) > 1)
    cols = store.all_columns()  # `meta`: null where shards lack it
    table = catalogue.read_task(task, cat.meta, cat.loc, cols)
    codes = store.codes_to_numpy(table.column("code"), cat.meta.nbits)
    if fmt == "faiss":
        data = faiss_binary_flat_bytes(codes)
    elif fmt == "npy":
        data = _npy_bytes(codes)
    else:
        data = _parquet_bytes(table.replace_schema_metadata(cat.meta.to_kv()))
    ids = table.drop_columns(["code"])
    return {f"parts/{name}.{EXT[fmt]}": data, f"parts/{name}.ids.parquet": _parquet_bytes(ids)}


def _previous(out: Location, fmt: str, meta) -> dict:
    """The parts of an earlier export to the same place, if it is of the same codes."""
    try:
        old = json.loads(out.child("manifest.json").read_bytes())
    except (FileNotFoundError, ValueError):
        return {}
    if old.get("format") != fmt or old.get("model") != meta.model or "parts" not in old:
        return {}
    return {p["name"]: p for p in old["parts"]}


def export(cat: catalogue.Catalogue, where: Location | str, fmt: str = "faiss") -> dict:
    """Export the catalogue under `where`, one part per segment; returns the manifest.

    A re-export adds files: parts of segments that an earlier export to the same place already
    wrote are kept as they are (segments never change in place), new segments and the shards not
    yet compacted get new parts, and parts no manifest names any more are deleted after the new
    manifest is committed.
    """
    if fmt not in FORMATS:
        raise BadInput(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = storage.location(where)
    out.makedirs()
    old = _previous(out, fmt, cat.meta)
    units = _units(cat)
    progress = Progress("export", len(units), unit="parts")
    parts, offset, written = [], 0, 0
    for name, kind, members in units:
        entry = old.get(name)
        if entry is None:
            files = _unit_files(name, members, cat, fmt)
            rows = pq.read_metadata(pa.BufferReader(files[f"parts/{name}.ids.parquet"])).num_rows
            for rel, data in files.items():
                out.child(rel).write_atomic(data)
            entry = {
                "name": name,
                "kind": kind,
                "rows": rows,
                "files": {rel: _digest(data) for rel, data in files.items()},
            }
            written += 1
        parts.append({**entry, "offset": offset})
        offset += entry["rows"]
        progress.advance(1, entry["rows"])
    progress.done()
    manifest = _manifest(cat, fmt, parts, offset)
    manifest["parts_written"], manifest["parts_kept"] = written, len(parts) - written
    out.child("manifest.json").write_atomic(json.dumps(manifest, indent=2).encode())
    keep = {rel for p in parts for rel in p["files"]}
    stale = [rel for p in old.values() for rel in p["files"] if rel not in keep]
    for rel in stale:
        out.child(rel).remove()
    manifest["parts_removed"] = len({r.rsplit(".", 2)[0] for r in stale})
    return manifest


def _digest(data: bytes) -> dict:
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _manifest(cat, fmt: str, parts: list, count: int) -> dict:
    meta = cat.meta
    return {
        "format": fmt,
        "nbits": meta.nbits,
        "words": meta.words,
        "code_bytes": 8 * meta.words,
        "layout": meta.layout,
        "model": meta.model,
        "classes": list(meta.classes),
        "count": count,
        "segments_table_version": cat.table_version,
        "segments": [p["name"] for p in parts if p["kind"] == "segment"],
        "shards": len(cat.shards),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "parts": parts,
    }
