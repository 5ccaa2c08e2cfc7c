"""Parquet tables of encoded images, one frame per row (like ../shared/data/cifar10).

Columns: `image` (binary PNG/JPEG/TIFF bytes, or a struct with a `bytes` field as Hugging Face
datasets store images; else the first binary column), optional `label` (integer, or a class
name), optional `id`, `site` and `time` (timestamp) columns. The frame index is the row number
in the file. Row groups are read one at a time after checking their declared uncompressed size
against limits.MAX_DECOMPRESSED_BYTES, so a table never has to fit in memory whole.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.readers import limits
from pipeline.readers.base import CorruptFile, Frame, FrameError, LimitExceeded
from pipeline.readers.decode import ImageDecodeError, decode_image
from pipeline.readers.labels import label_index
from pipeline.readers.streams import file_size

SUFFIXES = (".parquet", ".pq")
BATCH_ROWS = 512


def read(uri: str, storage_options: dict | None = None):
    """Frames and FrameErrors of one Parquet table (a generator)."""
    return _frames(str(uri), storage_options)


def _image_column(schema: pa.Schema) -> str | None:
    def usable(t):
        if pa.types.is_binary(t) or pa.types.is_large_binary(t):
            return True
        return pa.types.is_struct(t) and t.get_field_index("bytes") >= 0

    if "image" in schema.names and usable(schema.field("image").type):
        return "image"
    for f in schema:
        if usable(f.type):
            return f.name
    return None


def _as_time(v) -> datetime | None:
    if isinstance(v, datetime):
        return v.replace(tzinfo=timezone.utc) if v.tzinfo is None else v.astimezone(timezone.utc)
    return None


def _frames(uri: str, storage_options: dict | None):
    if file_size(uri, storage_options) == 0:
        raise CorruptFile(uri, "empty file (0 bytes)")
    fs, path, _ = storage.split_uri(uri, storage_options)
    with fs.open(path, "rb") as f:
        try:
            pf = pq.ParquetFile(f)
        except Exception as exc:
            raise CorruptFile(uri, f"not a readable Parquet file ({exc})") from None
        schema = pf.schema_arrow
        img = _image_column(schema)
        if img is None:
            raise CorruptFile(uri, "no binary image column")
        extra = [c for c in ("label", "id", "site", "time") if c in schema.names and c != img]
        if pf.metadata.num_rows > limits.MAX_FRAMES_PER_FILE:
            raise CorruptFile(uri, f"{pf.metadata.num_rows} rows > limits.MAX_FRAMES_PER_FILE")
        row = 0
        for g in range(pf.num_row_groups):
            rg = pf.metadata.row_group(g)
            if rg.total_byte_size > limits.MAX_DECOMPRESSED_BYTES:
                yield FrameError(
                    uri,
                    row,
                    f"row group {g} declares {rg.total_byte_size} bytes uncompressed "
                    "(> limits.MAX_DECOMPRESSED_BYTES); its rows are skipped",
                )
                row += rg.num_rows
                continue
            try:
                batches = list(
                    pf.iter_batches(batch_size=BATCH_ROWS, row_groups=[g], columns=[img, *extra])
                )
            except Exception as exc:
                yield FrameError(uri, row, f"row group {g} unreadable ({exc})")
                row += rg.num_rows
                continue
            for batch in batches:
                cols = {name: batch.column(name).to_pylist() for name in [img, *extra]}
                for k in range(batch.num_rows):
                    yield _row(uri, row, cols, img, k)
                    row += 1


def _row(uri: str, row: int, cols: dict, img: str, k: int):
    value = cols[img][k]
    if isinstance(value, dict):
        value = value.get("bytes")
    if value is None:
        return FrameError(uri, row, "no image bytes in this row")
    try:
        pixels, text = decode_image(value)
    except (ImageDecodeError, LimitExceeded) as exc:
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
        time=_as_time(cols["time"][k]) if "time" in cols else None,
        label=label,
        meta=meta,
    )
