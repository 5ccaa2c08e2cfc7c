"""Code shards: the Parquet files that ingestion writes and search/evaluate/export read.

Schema and metadata are fixed by DESIGN.md ("Code shards"), plus one optional column, `meta`
(string, JSON of per-frame header values, `pipeline.ingest.frame_meta`), written by ingest since the
THEMIS conventions of issue 8; shards written before it lack the column and every reader here
gives null for it. This module is the only place that knows them:

    meta = ShardMeta(nbits=64, model=sha256_hex, classes=["arc", ...])
    write_shard(location, {"id": [...], "source": [...], ..., "code": packed_uint64}, meta)
    table = read_shard(location, columns=["id", "code"])

Where: a `pipeline.storage.Location` (a plain path or URI stands for one without options).
Readers of many shards go through the catalogue (`pipeline.codes.catalogue`: segments + shards
not yet compacted, in one canonical order), never shard by shard from here.

Layout of a dataset written by `aurorahash ingest --out OUT`:

    OUT/<model12>/<archive relative path>.parquet       one shard per archive file
    OUT/_quarantine/<model12>/<archive relative path>.jsonl   problems met in that file
    OUT/_ignored/<model12>/<archive relative path>.json       files readers skip on purpose

`<model12>` is the first 12 hex digits of the model id (`pipeline.model.checkpoint.model_id`:
weights,
preprocessing and encode settings), so a different model writes its own set of shards next to
the first. The shard path mirrors the archive file's path relative to
`--source` (plus `.parquet`), which makes it deterministic, collision-free and readable; a re-run
finds it by name. Readers ignore every path component that starts with `_` or `.` (temporary
files, quarantine).

Commit protocol: a shard is serialised in memory and written with
`pipeline.storage.atomic_write_bytes` (temp file + rename locally; one whole-object PUT on S3), so
a shard is either absent or complete. With its folder's pending mark (written after it,
`pipeline.codes.pending`) or its record in the segments it means "this archive file is done for
this model".
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.errors import BadInput
from pipeline.storage import Location

LAYOUT = "1"  # DESIGN.md "Packed codes": little-endian uint64 words, bit j -> word j//64, bit j%64
META_PREFIX = "aurorahash."
SHARD_SUFFIX = ".parquet"
QUARANTINE_DIR = "_quarantine"
IGNORED_DIR = "_ignored"
MODEL_PREFIX_LEN = 12

COLUMNS = ("id", "source", "frame", "site", "time", "code", "label", "pred", "score")
OPTIONAL_COLUMNS = {"meta": pa.string()}  # may be absent from a shard (older ones): null then


def all_columns() -> tuple[str, ...]:
    """The shard columns, optional ones included (readers fill those in as null)."""
    return (*COLUMNS, *OPTIONAL_COLUMNS)


def words_for(nbits: int) -> int:
    return max(1, math.ceil(int(nbits) / 64))


def shard_schema(nbits: int, optional: Iterable[str] = ()) -> pa.Schema:
    """The DESIGN.md shard schema for codes of `nbits` bits (without key-value metadata), plus
    the `optional` columns named (OPTIONAL_COLUMNS, in that order)."""
    extra = [pa.field(c, t) for c, t in OPTIONAL_COLUMNS.items() if c in set(optional)]
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("frame", pa.int32(), nullable=False),
            pa.field("site", pa.string()),
            pa.field("time", pa.timestamp("us", tz="UTC")),
            pa.field("code", pa.binary(8 * words_for(nbits)), nullable=False),
            pa.field("label", pa.int16()),
            pa.field("pred", pa.int16(), nullable=False),
            pa.field("score", pa.float32(), nullable=False),
            *extra,
        ]
    )


@dataclass(frozen=True)
class ShardMeta:
    """The Parquet key-value metadata of a shard (`aurorahash.*`)."""

    nbits: int
    model: str  # the model id (pipeline.model.checkpoint.model_id)
    classes: tuple = field(default_factory=tuple)
    layout: str = LAYOUT
    created: str | None = None  # ISO-8601 UTC; set when written

    def __post_init__(self):
        object.__setattr__(self, "nbits", int(self.nbits))
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))

    @classmethod
    def of(cls, checkpoint) -> ShardMeta:
        """The metadata of the shards a checkpoint (`pipeline.model.checkpoint.Checkpoint`)
        writes."""
        return cls(nbits=checkpoint.nbits, model=checkpoint.id, classes=checkpoint.classes)

    @property
    def words(self) -> int:
        return words_for(self.nbits)

    @property
    def model12(self) -> str:
        return self.model[:MODEL_PREFIX_LEN]

    def to_kv(self) -> dict[bytes, bytes]:
        created = self.created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        kv = {
            "nbits": str(self.nbits),
            "model": self.model,
            "classes": json.dumps(list(self.classes)),
            "layout": self.layout,
            "created": created,
        }
        return {(META_PREFIX + k).encode(): v.encode() for k, v in kv.items()}

    @classmethod
    def from_kv(cls, kv: Mapping | None, where: str = "shard") -> ShardMeta:
        kv = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in (kv or {}).items()
        }
        try:
            return cls(
                nbits=int(kv[META_PREFIX + "nbits"]),
                model=kv[META_PREFIX + "model"],
                classes=tuple(json.loads(kv.get(META_PREFIX + "classes", "[]"))),
                layout=kv.get(META_PREFIX + "layout", LAYOUT),
                created=kv.get(META_PREFIX + "created"),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise BadInput(f"{where}: not an aurorahash code shard ({exc})") from None

    def compatible(self, other: ShardMeta) -> bool:
        return (self.nbits, self.model, self.layout, self.classes) == (
            other.nbits,
            other.model,
            other.layout,
            other.classes,
        )


# --------------------------------------------------------------------------------------- naming


def model_prefix(out_uri: str, model_sha: str) -> str:
    """Where one model's shards live under an output location."""
    return f"{str(out_uri).rstrip('/')}/{model_sha[:MODEL_PREFIX_LEN]}"


def _check_relpath(relpath: str) -> str:
    rel = str(relpath).replace("\\", "/").strip("/")
    parts = rel.split("/")
    if not rel or any(p in ("", ".", "..") for p in parts):
        raise BadInput(f"unusable archive relative path {relpath!r}")
    return rel


def shard_uri(out_uri: str, relpath: str, model_sha: str) -> str:
    """Deterministic shard location for archive file `relpath` (relative to the source root)."""
    return f"{model_prefix(out_uri, model_sha)}/{_check_relpath(relpath)}{SHARD_SUFFIX}"


def quarantine_uri(out_uri: str, relpath: str, model_sha: str) -> str:
    """Deterministic quarantine record file (JSON lines) for one archive file."""
    return (
        f"{str(out_uri).rstrip('/')}/{QUARANTINE_DIR}/{model_sha[:MODEL_PREFIX_LEN]}/"
        f"{_check_relpath(relpath)}.jsonl"
    )


def ignored_uri(out_uri: str, relpath: str, model_sha: str) -> str:
    """Marker for an archive file the readers deliberately skip (e.g. THEMIS thumbnails)."""
    return (
        f"{str(out_uri).rstrip('/')}/{IGNORED_DIR}/{model_sha[:MODEL_PREFIX_LEN]}/"
        f"{_check_relpath(relpath)}.json"
    )


def relpath_of_shard(shard: str, prefix: str) -> str:
    """Inverse of `shard_uri` for a shard URI listed under `prefix` (= model_prefix(...))."""
    a, b = str(shard), str(prefix).rstrip("/")
    if not a.startswith(b + "/") or not a.endswith(SHARD_SUFFIX):
        raise ValueError(f"{shard} is not a shard under {prefix}")
    return a[len(b) + 1 : -len(SHARD_SUFFIX)]


def frame_id(relpath: str, index: int) -> str:
    return f"{relpath}#{int(index)}"


# -------------------------------------------------------------------------------------- writing


def _codes_array(code, n: int, width: int) -> pa.Array:
    if isinstance(code, pa.ChunkedArray):
        code = code.combine_chunks()
    if isinstance(code, pa.Array):
        if code.type != pa.binary(width):
            raise BadInput(f"code column has type {code.type}, expected fixed_size_binary({width})")
        return code
    if isinstance(code, np.ndarray) and code.dtype != object:
        arr = np.ascontiguousarray(code)
        if arr.dtype == np.uint64:
            buf = arr.astype("<u8", copy=False).tobytes()
        elif arr.dtype == np.uint8:
            buf = arr.tobytes()
        else:
            raise BadInput(f"code array of dtype {arr.dtype}: expected packed uint64 words")
        if arr.ndim != 2 or arr.shape[0] != n or len(buf) != n * width:
            raise BadInput(f"code array of shape {arr.shape}: need {n} rows of {width} bytes")
        return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, pa.py_buffer(buf)])
    return pa.array(list(code), type=pa.binary(width))


def _time_array(values, n: int) -> pa.Array:
    t = pa.timestamp("us", tz="UTC")
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values.cast(t)
    if isinstance(values, np.ndarray) and values.dtype.kind in "iu":  # microseconds since epoch
        return pa.array(values.astype(np.int64), type=pa.int64()).cast(t)
    if isinstance(values, np.ndarray) and values.dtype.kind == "M":
        return pa.array(values.astype("datetime64[us]")).cast(t)
    out = []
    for v in values:
        if v is None:
            out.append(None)
        elif isinstance(v, _dt.datetime):
            if v.tzinfo is None:  # naive times in this project are UTC
                v = v.replace(tzinfo=_dt.timezone.utc)
            out.append(v)
        else:
            out.append(v)
    return pa.array(out, type=t)


def build_table(columns: Mapping, meta: ShardMeta) -> pa.Table:
    """A shard table (schema + metadata) from column data.

    `columns` maps the DESIGN.md column names to lists/arrays: `code` may be an (n, words) uint64
    array (as `kernels.pack_codes` returns), an (n, words*8) uint8 array, or a list of bytes;
    `time` may be datetimes (naive = UTC), datetime64 values or int64 microseconds; `site`,
    `time`, `label` and `meta` may hold None. An optional column (OPTIONAL_COLUMNS) is written
    when `columns` has it.
    """
    missing = [c for c in COLUMNS if c not in columns]
    if missing:
        raise BadInput(f"shard columns missing: {missing}")
    schema = shard_schema(meta.nbits, [c for c in OPTIONAL_COLUMNS if c in columns])
    n = len(columns["id"])
    width = 8 * meta.words
    arrays = []
    for f in schema:
        v = columns[f.name]
        if f.name == "code":
            a = _codes_array(v, n, width)
        elif f.name == "time":
            a = _time_array(v, n)
        elif isinstance(v, pa.ChunkedArray | pa.Array):
            a = v.cast(f.type)
        elif isinstance(v, np.ndarray) and v.dtype != object:
            a = pa.array(v).cast(f.type)
        else:
            a = pa.array(list(v), type=f.type)
        if len(a) != n:
            raise BadInput(f"shard column {f.name} has {len(a)} rows, id has {n}")
        if not f.nullable and a.null_count:
            raise BadInput(f"shard column {f.name} may not hold nulls")
        arrays.append(a)
    return pa.Table.from_arrays(arrays, schema=schema.with_metadata(meta.to_kv()))


def table_to_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", row_group_size=max(1, table.num_rows))
    return sink.getvalue()


def write_shard(
    where: Location | str, data: pa.Table | Mapping, meta: ShardMeta | None = None
) -> pa.Table:
    """Write one shard atomically (it appears whole or not at all); returns the table written.

    `data` is a table from `build_table` (then `meta` may be omitted) or a column mapping.
    """
    if isinstance(data, pa.Table):
        if meta is None:
            meta = ShardMeta.from_kv(data.schema.metadata, where="table")
        names = [*COLUMNS, *(c for c in OPTIONAL_COLUMNS if c in data.column_names)]
        table = build_table({c: data.column(c) for c in names}, meta)
    else:
        if meta is None:
            raise BadInput("write_shard needs ShardMeta with column data")
        table = build_table(data, meta)
    storage.location(where).write_atomic(table_to_bytes(table))
    return table


# -------------------------------------------------------------------------------------- reading


def list_shards(where: Location | str, detail: bool = False):
    """Sorted shard URIs under a dataset directory/prefix (or `where` itself if it is a shard).

    Skips anything with a path component starting with `_` or `.`, and non-Parquet files.
    detail=True: {uri: modification time or None} instead.
    """
    try:
        found = storage.location(where).list_entries(keep=lambda f: f.endswith(SHARD_SUFFIX))
    except FileNotFoundError:
        return {} if detail else []
    return {u: e[0] for u, e in found.items()} if detail else list(found)


def read_shard(where: Location | str, columns: list[str] | None = None) -> pa.Table:
    """One shard as a table; its schema carries the `aurorahash.*` metadata. An optional
    column asked for that the shard lacks (written before it existed) comes back all null."""
    return read_shard_meta(where, columns)[0]


def read_shard_meta(
    where: Location | str, columns: list[str] | None = None
) -> tuple[pa.Table, ShardMeta]:
    """`read_shard`, and the shard's metadata it checked (compaction compares it, once)."""
    loc = storage.location(where)
    try:
        data = loc.read_bytes()
        pf = pq.ParquetFile(pa.BufferReader(data))  # 2x faster than read_table
        present = set(pf.schema_arrow.names)
        # one thread: a shard is one small row group, and a thread pool per file costs more
        # than it reads (0.38 against 0.53 ms per minute shard)
        table = pf.read(
            columns=None if columns is None else [c for c in columns if c in present],
            use_threads=False,
        )
    except (pa.ArrowInvalid, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise BadInput(f"{loc.uri}: unreadable shard ({exc})") from None
    meta = ShardMeta.from_kv(table.schema.metadata, where=loc.uri)
    return with_optional(table, columns, where=loc.uri), meta


def with_optional(table: pa.Table, columns: Iterable[str] | None, where: str) -> pa.Table:
    """`table` with the `columns` asked, in that order: an optional one it lacks is added as
    nulls (older shards and segments); a required one it lacks is BadInput naming `where`."""
    if columns is None:
        return table
    columns, names = list(columns), table.column_names
    if names == columns:
        return table
    for c in columns:
        if c in names:
            continue
        if c not in OPTIONAL_COLUMNS:
            raise BadInput(f"{where}: no column {c!r}")
        table = table.append_column(
            pa.field(c, OPTIONAL_COLUMNS[c]), pa.nulls(table.num_rows, OPTIONAL_COLUMNS[c])
        )
    return table.select(columns)


def check_columns(table: pa.Table, where: str) -> None:
    """BadInput naming `where` unless `table` has every required shard column."""
    have = set(table.column_names)
    missing = [c for c in COLUMNS if c not in have]
    if missing:
        raise BadInput(f"{where}: no column {missing[0]!r}")


def shard_meta(table_or_where) -> ShardMeta:
    """The metadata of a shard table, or of the shard at a location (its footer only)."""
    if isinstance(table_or_where, pa.Table):
        return ShardMeta.from_kv(table_or_where.schema.metadata)
    loc = storage.location(table_or_where)
    with loc.open("rb") as f:
        md = pq.ParquetFile(f).schema_arrow.metadata
    return ShardMeta.from_kv(md, where=loc.uri)


def codes_to_numpy(column, nbits: int) -> np.ndarray:
    """A fixed_size_binary code column -> (n, words) uint64 array (a copy)."""
    words = words_for(nbits)
    if isinstance(column, pa.ChunkedArray):
        column = (
            column.combine_chunks() if column.num_chunks else pa.array([], pa.binary(8 * words))
        )
    n = len(column)
    if n == 0:
        return np.zeros((0, words), dtype=np.uint64)
    if column.null_count:
        raise BadInput("code column holds nulls")
    width = column.type.byte_width
    if width != 8 * words:
        raise BadInput(f"codes are {width} bytes wide, nbits={nbits} needs {8 * words}")
    buf = column.buffers()[1]
    raw = np.frombuffer(buf, dtype=np.uint8)[column.offset * width : (column.offset + n) * width]
    return raw.view("<u8").astype(np.uint64).reshape(n, words)


def list_models(where: Location | str) -> list[str]:
    """The `<model12>` folders (and any other visible folders) under an ingest output."""
    return storage.location(where).subfolders()
