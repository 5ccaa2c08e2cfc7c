"""Parquet tables of encoded images, one frame per row (like ../shared/data/cifar10).

Columns: `image` (binary PNG/JPEG/TIFF bytes, or a struct with a binary `bytes` field as Hugging
Face datasets store images; else the first binary column), optional `label` (integer, or a class
name), optional `id`, `site` and `time` (timestamp) columns. The frame index is the row number
in the file.

Why the checks before reading: a Parquet page is decompressed whole, at the size its header
declares, so a 22 KB file can hold a 700 MB cell. Before a row group is read, the header of
every page of the column chunks to be read is parsed (one small read per page, located from the
chunk offsets in the file metadata) and its declared uncompressed size checked against
limits.MAX_PARQUET_PAGE_BYTES; a row group with a larger page is skipped with a FrameError.
Rows are then decoded in small batches (about limits.MAX_PARQUET_BATCH_BYTES each, from the
chunks' declared sizes) through a buffered stream, so neither a row group nor a table has to
fit in memory. A cell of the wrong type or an unrepresentable value (a timestamp beyond year
9999) is a FrameError for its row.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.readers import limits
from pipeline.readers.base import BadValue, CorruptFile, Frame, FrameError, LimitExceeded
from pipeline.readers.decode import ImageDecodeError, decode_image
from pipeline.readers.labels import label_index
from pipeline.readers.streams import file_size

SUFFIXES = (".parquet", ".pq")
BATCH_ROWS = 512  # most rows per batch
STREAM_BUFFER = 1 << 20  # Arrow reads column chunks through a buffer of this size
MAX_PAGE_HEADER = 1 << 20  # a page header larger than this is treated as corrupt
MAX_PAGES = 1_000_000  # pages walked per column chunk
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US_PER = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": None}


def read(uri: str, storage_options: dict | None = None):
    """Frames and FrameErrors of one Parquet table (a generator)."""
    return _frames(str(uri), storage_options)


def _binary(t) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t)


def _usable(t) -> bool:
    if _binary(t):
        return True
    if pa.types.is_struct(t):
        k = t.get_field_index("bytes")
        return k >= 0 and _binary(t.field(k).type)
    return False


def _image_column(schema: pa.Schema) -> str | None:
    if "image" in schema.names and _usable(schema.field("image").type):
        return "image"
    for f in schema:
        if _usable(f.type):
            return f.name
    return None


class _Bad:
    """A cell that could not be converted to a Python value."""

    def __init__(self, reason: str):
        self.reason = reason


class _Stamp:
    """A timestamp cell as (integer, unit): converted per row, so one bad value is one row."""

    def __init__(self, value: int, unit: str):
        self.value, self.unit = value, unit

    def to_datetime(self) -> datetime:
        mult = _US_PER[self.unit]
        us = self.value // 1000 if mult is None else self.value * mult
        try:
            return _EPOCH + timedelta(microseconds=us)
        except OverflowError:
            raise BadValue(
                f"time {self.value} {self.unit} since 1970 is outside the representable range "
                "(years 1..9999 UTC)"
            ) from None


def _as_time(v) -> datetime | None:
    if isinstance(v, _Stamp):
        return v.to_datetime()
    if isinstance(v, datetime):
        return v.replace(tzinfo=timezone.utc) if v.tzinfo is None else v.astimezone(timezone.utc)
    return None


def _values(col: pa.Array) -> list:
    """The column's cells as Python values; a cell that cannot be converted becomes _Bad."""
    if pa.types.is_timestamp(col.type):
        unit = col.type.unit
        return [None if v is None else _Stamp(v, unit) for v in col.cast(pa.int64()).to_pylist()]
    try:
        return col.to_pylist()
    except Exception:
        out = []
        for k in range(len(col)):
            try:
                out.append(col[k].as_py())
            except Exception as exc:
                out.append(_Bad(f"{type(exc).__name__}: {exc}"))
        return out


# ------------------------------------------------------------------- declared sizes, checked


class _Short(Exception):
    """The page header continues past the bytes read so far."""


class _Compact:
    """Just enough of Thrift's compact protocol to read a Parquet PageHeader's i32 fields."""

    def __init__(self, buf: bytes):
        self.b, self.i = buf, 0

    def byte(self) -> int:
        if self.i >= len(self.b):
            raise _Short
        v = self.b[self.i]
        self.i += 1
        return v

    def varint(self) -> int:
        v = shift = 0
        while True:
            c = self.byte()
            v |= (c & 0x7F) << shift
            if not c & 0x80:
                return v
            shift += 7
            if shift > 70:
                raise ValueError("bad varint in page header")

    def zigzag(self) -> int:
        v = self.varint()
        return (v >> 1) ^ -(v & 1)

    def advance(self, n: int) -> None:
        if n < 0:
            raise ValueError("negative length in page header")
        self.i += n
        if self.i > len(self.b):
            raise _Short

    def skip(self, t: int, depth: int, in_list: bool = False) -> None:
        if depth > 16:
            raise ValueError("page header nested too deeply")
        if t in (1, 2):  # booleans: in the field header, or one byte in a list
            if in_list:
                self.advance(1)
        elif t == 3:
            self.advance(1)
        elif t in (4, 5, 6):
            self.varint()
        elif t == 7:
            self.advance(8)
        elif t == 8:
            self.advance(self.varint())
        elif t in (9, 10):
            h = self.byte()
            n = h >> 4 if h >> 4 != 15 else self.varint()
            for _ in range(n):
                self.skip(h & 0x0F, depth + 1, True)
        elif t == 11:
            n = self.varint()
            if n:
                h = self.byte()
                for _ in range(n):
                    self.skip(h >> 4, depth + 1, True)
                    self.skip(h & 0x0F, depth + 1, True)
        elif t == 12:
            self.struct(depth + 1)
        else:
            raise ValueError(f"unknown Thrift type {t} in page header")

    def struct(self, depth: int = 0) -> dict:
        """Fields of a struct; the top level's i32 fields are returned by field id."""
        out, last = {}, 0
        while True:
            h = self.byte()
            if h == 0:
                return out
            t, delta = h & 0x0F, h >> 4
            last = last + delta if delta else self.zigzag()
            if t == 5 and depth == 0:
                out[last] = self.zigzag()
            else:
                self.skip(t, depth)


def _page_header(f, pos: int) -> tuple[int, int, int]:
    """(uncompressed size, compressed size, header length) of the page header at `pos`."""
    want = 256
    while True:
        f.seek(pos)
        buf = f.read(want)
        c = _Compact(buf)
        try:
            fields = c.struct()
        except _Short:
            if len(buf) < want or want >= MAX_PAGE_HEADER:
                raise ValueError("truncated or oversized page header") from None
            want *= 8
            continue
        unc, comp = fields.get(2), fields.get(3)
        if unc is None or comp is None or unc < 0 or comp < 0:
            raise ValueError("page header without valid sizes")
        return unc, comp, c.i


def _largest_page(f, cc) -> int:
    """The largest declared uncompressed page size in a column chunk (stops early above
    the limit)."""
    starts = [cc.data_page_offset]
    if cc.has_dictionary_page and cc.dictionary_page_offset:
        starts.append(cc.dictionary_page_offset)
    pos = min(starts)
    end = pos + cc.total_compressed_size
    biggest = 0
    for _ in range(MAX_PAGES):
        if pos >= end:
            return biggest
        unc, comp, n = _page_header(f, pos)
        biggest = max(biggest, unc)
        if biggest > limits.MAX_PARQUET_PAGE_BYTES:
            return biggest
        pos += n + comp
    raise ValueError(f"more than {MAX_PAGES} pages in one column chunk")


def _leaves(pf: pq.ParquetFile, columns: list[str]) -> list[int]:
    schema = pf.metadata.schema
    out = []
    for i in range(len(schema)):
        top = schema.column(i).path.split(".", 1)[0]
        if top in columns:
            out.append(i)
    return out


def _check_row_group(hf, rg, leaves: list[int]) -> tuple[str | None, int]:
    """(why the row group cannot be read safely or None, declared uncompressed bytes).

    Every page header of the chunks to be read is checked (a flipped bit in one can claim a
    2 GiB page whatever the metadata says); where the headers cannot be parsed here, a chunk
    whose declared size is within the page cap is left to Arrow, which reports the damage.
    """
    total = 0
    for i in leaves:
        cc = rg.column(i)
        size = cc.total_uncompressed_size
        total += max(0, size)
        try:
            page = _largest_page(hf, cc)
        except Exception as exc:
            if size <= limits.MAX_PARQUET_PAGE_BYTES:
                continue
            return f"column {cc.path_in_schema!r}: unreadable page headers ({exc})", total
        if page > limits.MAX_PARQUET_PAGE_BYTES:
            return (
                f"column {cc.path_in_schema!r} declares a page of {page} bytes uncompressed "
                f"(> limits.MAX_PARQUET_PAGE_BYTES = {limits.MAX_PARQUET_PAGE_BYTES})",
                total,
            )
    if rg.total_byte_size > limits.MAX_DECOMPRESSED_BYTES:
        return (
            f"declares {rg.total_byte_size} bytes uncompressed (> limits.MAX_DECOMPRESSED_BYTES)",
            total,
        )
    return None, total


# -------------------------------------------------------------------------------- reading


def _frames(uri: str, storage_options: dict | None):
    file_size(uri, storage_options)  # CorruptFile: empty, or not a regular file
    fs, path, protocol = storage.split_uri(uri, storage_options)
    with contextlib.ExitStack() as stack:
        f = stack.enter_context(fs.open(path, "rb"))
        # page headers are read through their own unbuffered handle on object stores, so the
        # walk costs one small ranged read per page instead of re-fetching Arrow's blocks
        hf = f
        if protocol != "file":
            try:
                hf = stack.enter_context(fs.open(path, "rb", cache_type="none"))
            except TypeError:  # a file system without fsspec's cache options
                hf = f
        try:
            pf = pq.ParquetFile(f, buffer_size=STREAM_BUFFER, pre_buffer=False)
            schema = pf.schema_arrow
        except Exception as exc:
            raise CorruptFile(uri, f"not a readable Parquet file ({exc})") from None
        img = _image_column(schema)
        if img is None:
            seen = (
                f" (column 'image' is {schema.field('image').type})"
                if "image" in schema.names
                else ""
            )
            raise CorruptFile(uri, f"no binary image column{seen}")
        extra = [c for c in ("label", "id", "site", "time") if c in schema.names and c != img]
        if pf.metadata.num_rows > limits.MAX_FRAMES_PER_FILE:
            raise CorruptFile(uri, f"{pf.metadata.num_rows} rows > limits.MAX_FRAMES_PER_FILE")
        columns = [img, *extra]
        leaves = _leaves(pf, columns)
        row = 0
        for g in range(pf.num_row_groups):
            rg = pf.metadata.row_group(g)
            n = rg.num_rows
            problem, declared = _check_row_group(hf, rg, leaves)
            if problem is not None:
                yield FrameError(uri, row, f"row group {g} {problem}; its {n} rows are skipped")
                row += n
                continue
            per_row = max(1, declared // max(1, n))
            batch_rows = max(1, min(BATCH_ROWS, limits.MAX_PARQUET_BATCH_BYTES // per_row))
            done = 0
            try:
                batches = pf.iter_batches(
                    batch_size=batch_rows, row_groups=[g], columns=columns, use_threads=False
                )
                for batch in batches:
                    cols = {name: _values(batch.column(name)) for name in columns}
                    for k in range(batch.num_rows):
                        yield _row(uri, row + done + k, cols, img, k)
                    done += batch.num_rows
            except Exception as exc:  # damaged pages: the rest of this row group is lost
                yield FrameError(
                    uri,
                    row + done,
                    f"row group {g} unreadable from its row {done} "
                    f"({type(exc).__name__}: {exc}); its remaining {n - done} rows are skipped",
                )
            row += n


def _row(uri: str, row: int, cols: dict, img: str, k: int):
    bad = [f"column {name!r}: {v[k].reason}" for name, v in cols.items() if isinstance(v[k], _Bad)]
    if bad:
        return FrameError(uri, row, "; ".join(bad))
    value = cols[img][k]
    if isinstance(value, dict):
        value = value.get("bytes")
    if value is None:
        return FrameError(uri, row, "no image bytes in this row")
    if not isinstance(value, (bytes, bytearray, memoryview)):
        return FrameError(uri, row, f"image cell holds {type(value).__name__}, not bytes")
    try:
        pixels, text = decode_image(value if isinstance(value, bytes) else bytes(value))
        t = _as_time(cols["time"][k]) if "time" in cols else None
    except (ImageDecodeError, LimitExceeded, BadValue) as exc:
        return FrameError(uri, row, str(exc))
    meta = {}
    if "id" in cols:
        meta["id"] = cols["id"][k]
    label = label_index(cols["label"][k]) if "label" in cols else None
    site = cols["site"][k] if "site" in cols else text.get("Site unique ID")
    return Frame(
        index=row,
        pixels=pixels,
        site=None if site is None else str(site),
        time=t,
        label=label,
        meta=meta,
    )
