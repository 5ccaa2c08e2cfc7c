"""THEMIS stream0 minute files: concatenated binary PGM (P5) frames, .pgm / .pgm.gz / .pgm.bz2.

Each frame is `P5`, comment lines `#"Key" value`, `W H`, `MAXVAL`, one whitespace byte, then
W*H big-endian uint16 (MAXVAL > 255) or uint8 pixels. The first frame of a minute carries the
full header (site, imager, geodetic position); later frames repeat only the per-exposure lines,
so site-level keys are carried over from earlier frames while per-frame keys (exposure start
and readout, mode sequence number, exposure options, class label) are taken from the frame's own
header only.

Orientation: rows come out bottom row of the file first (each raster flipped top to bottom), as
UCalgary's pyucalgarysrs (`read_themis`) and asilib return THEMIS frames, so that pixel (r, c)
here is pixel (r, c) there. Why and how it was checked: docs/READERS.md.

Per-frame header values kept for users (`Frame.meta`, and from there the shard's `meta` column):
`sequence` ("Mode sequence number", +1 per exposure: a jump means dropped frames),
`readout_start` ("Image readout start", ISO-8601 UTC) and `exposure_options`.

Frames are parsed one at a time from a capped stream (see streams.py). A problem that makes the
file unrecognisable (empty, wrong magic at the start, bad compression header) raises
CorruptFile; a problem inside the sequence (truncation, absurd dimensions, garbage after good
frames) yields a FrameError after every frame that decoded completely, and reading stops there,
since the next frame boundary cannot be found.
"""

from __future__ import annotations

import posixpath
import re
import zlib
from datetime import datetime, timezone

import numpy as np

from pipeline.readers import limits
from pipeline.readers.base import BadValue, CorruptFile, Frame, FrameError, LimitExceeded
from pipeline.readers.labels import label_index
from pipeline.readers.streams import open_stream

SUFFIXES = (".pgm", ".pgm.gz", ".pgm.bz2")
NAME_RE = re.compile(r"^(\d{8})_(\d{4})_([A-Za-z0-9]+)_([A-Za-z]+\d+)_")
KEY_RE = re.compile(rb'^#\s*"([^"]{1,200})"\s?(.*?)\s*$')
PER_FRAME_KEYS = (
    "Image request start",
    "Image readout start",
    "Mode sequence number",
    "Exposure options",
    "Exposure plus initial readout",
    "Aurora class",
)
MAX_SEQUENCE_DIGITS = 18  # fits int64 (the shard's JSON meta, pipeline.ingest.frame_meta)
WHITESPACE = b" \t\r\n\x0b\x0c"


class _BadFrame(Exception):
    pass


def parse_time(value: str | None) -> datetime | None:
    """'2014-03-10 06:05:00.058114 UTC' -> aware UTC datetime; None if absent or unparsable.

    Raises BadValue for a time that parses but has no UTC datetime (at the calendar's limits,
    e.g. '0001-01-01 00:00:00+05:00' or '9999-12-31 23:59:59-05:00'): readers make that frame a
    FrameError.
    """
    if not value:
        return None
    v = value.strip()
    for suffix in (" UTC", "UTC", "Z"):
        if v.endswith(suffix):
            v = v[: -len(suffix)].strip()
            break
    try:
        t = datetime.fromisoformat(v)
    except ValueError:
        return None
    if t.tzinfo is None:
        return t.replace(tzinfo=timezone.utc)
    try:
        return t.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        raise BadValue(
            f"time {value.strip()[:60]!r} is outside the representable range (years 1..9999 UTC)"
        ) from None


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    m = re.match(r"\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)", value)
    return float(m.group(1)) if m else None


def _read_header(stream):
    """-> (keys dict, width, height, maxval), or None at a clean end of stream."""
    # skip whitespace between frames (bounded)
    lead = stream.peek(64)
    k = len(lead) - len(lead.lstrip(WHITESPACE))
    if k:
        stream.read(k)
    magic = stream.read(2)
    if not magic:
        return None
    if magic != b"P5":
        shown = magic + stream.peek(6)
        raise _BadFrame(f"expected PGM magic 'P5', found {shown!r}")
    keys: dict[str, str] = {}
    numbers: list[int] = []
    header_bytes = 2
    line = stream.readline(limits.MAX_HEADER_LINE)
    while True:
        header_bytes += len(line)
        if header_bytes > limits.MAX_HEADER_BYTES:
            raise _BadFrame(f"header longer than {limits.MAX_HEADER_BYTES} bytes")
        if not line:
            raise _BadFrame("truncated: the stream ends inside a frame header")
        stripped = line.lstrip(WHITESPACE)
        cut = len(line) >= limits.MAX_HEADER_LINE and not line.endswith(b"\n")
        if cut and stripped.startswith(b"#"):
            raise _BadFrame(
                f"header comment line longer than {limits.MAX_HEADER_LINE} bytes "
                "(limits.MAX_HEADER_LINE)"
            )
        if stripped.startswith(b"#"):
            m = KEY_RE.match(stripped)
            if m:
                keys[m.group(1).decode("latin-1")] = m.group(2).decode("latin-1")
        else:
            body = stripped.split(b"#", 1)[0]
            pos = len(line) - len(stripped)
            for tok in body.split():
                if not tok.isdigit() or len(tok) > 9:
                    if cut:
                        raise _BadFrame(
                            f"header line longer than {limits.MAX_HEADER_LINE} bytes "
                            "(limits.MAX_HEADER_LINE)"
                        )
                    raise _BadFrame(f"bad PGM header token {tok[:20]!r}")
                numbers.append(int(tok))
                if len(numbers) == 3:
                    # the raster starts one whitespace byte after MAXVAL
                    end = line.index(tok, pos) + len(tok)
                    stream.unread(line[end + 1 :])
                    return keys, numbers[0], numbers[1], numbers[2]
                pos = line.index(tok, pos) + len(tok)
        line = stream.readline(limits.MAX_HEADER_LINE)


def _sequence(value: str | None) -> int | None:
    """The "Mode sequence number" as an int; None unless plain ASCII digits (latin-1 headers
    hold characters that str.isdigit accepts and int() refuses, such as '\xb2')."""
    v = (value or "").strip()
    return int(v) if v.isascii() and v.isdigit() and len(v) <= MAX_SEQUENCE_DIGITS else None


def _readout(value: str | None) -> str | None:
    """ISO-8601 UTC text of "Image readout start"; None if absent or unusable (the frame stays)."""
    try:
        t = parse_time(value)
    except BadValue:
        return None
    return None if t is None else t.isoformat()


def _frame_meta(ctx: dict, own: dict, width: int, height: int, maxval: int) -> dict:
    meta = {
        "imager": ctx.get("Imager unique ID"),
        "latitude": _float(ctx.get("Geodetic latitude")),
        "longitude": _float(ctx.get("Geodetic Longitude", ctx.get("Geodetic longitude"))),
        "exposure_ms": _float(own.get("Exposure plus initial readout")),
        "width": width,
        "height": height,
        "maxval": maxval,
        "sequence": _sequence(own.get("Mode sequence number")),
        "readout_start": _readout(own.get("Image readout start")),
        "exposure_options": own.get("Exposure options"),
    }
    if "Aurora class" in own:
        meta["label_name"] = own["Aurora class"].strip()
    return meta


def read(uri: str, storage_options: dict | None = None):
    """Frames and FrameErrors of one stream0 file (a generator)."""
    return _frames(str(uri), storage_options)


def _read_raster(stream, width: int, height: int, maxval: int, compressed: bool, size) -> bytes:
    """One frame's pixel bytes, after checking what the header claims against the caps and,
    for an uncompressed file, against the bytes left (_BadFrame names what is wrong)."""
    if not 0 < maxval < 65536:
        raise _BadFrame(f"MAXVAL {maxval} outside 1..65535")
    if width == 0 or height == 0:
        raise _BadFrame(f"declared size {width}x{height} is empty")
    if width > limits.MAX_DIM or height > limits.MAX_DIM or width * height > limits.MAX_PIXELS:
        raise _BadFrame(
            f"declared size {width}x{height} exceeds the limit "
            f"({limits.MAX_DIM} per side, {limits.MAX_PIXELS} pixels)"
        )
    need = width * height * (2 if maxval > 255 else 1)
    if not compressed and size is not None and need > size - stream.consumed:
        raise _BadFrame(
            f"declared size {width}x{height} needs {need} bytes but only "
            f"{size - stream.consumed} remain in the file"
        )
    raster = stream.read(need)
    if len(raster) < need:
        raise _BadFrame(
            f"truncated: {len(raster)} of {need} pixel bytes present ({width}x{height})"
        )
    return raster


def _frames(uri: str, storage_options: dict | None):
    m = NAME_RE.match(posixpath.basename(uri))
    name_site, name_imager = (m.group(3), m.group(4)) if m else (None, None)
    with open_stream(uri, storage_options) as (stream, compressed, size):
        ctx: dict[str, str] = {}
        index = 0
        while True:
            try:
                head = _read_header(stream)
                if head is None:
                    break
                own, width, height, maxval = head
                bpp = 2 if maxval > 255 else 1
                raster = _read_raster(stream, width, height, maxval, compressed, size)
            except _BadFrame as exc:
                if index == 0 and str(exc).startswith("expected PGM magic"):
                    raise CorruptFile(uri, f"not a PGM file: {exc}") from None
                yield FrameError(uri, index, str(exc))
                return
            except (EOFError, OSError, zlib.error, ValueError, LimitExceeded) as exc:
                # gzip/bz2 truncation or corruption, or the decompression cap
                kind = "truncated or corrupt compressed data" if compressed else "read error"
                yield FrameError(uri, index, f"{kind}: {type(exc).__name__}: {exc}")
                return
            ctx.update({k: v for k, v in own.items() if k not in PER_FRAME_KEYS})
            rows = np.frombuffer(raster, dtype=">u2" if bpp == 2 else "u1").reshape(height, width)
            # the community's orientation (module docstring): last row of the file first
            pixels = np.ascontiguousarray(rows[::-1], dtype=np.uint16 if bpp == 2 else np.uint8)
            meta = _frame_meta(ctx, own, width, height, maxval)
            meta["imager"] = meta["imager"] or name_imager
            try:
                t = parse_time(own.get("Image request start"))
            except BadValue as exc:  # this frame only: the next one starts after its raster
                yield FrameError(uri, index, f"header 'Image request start': {exc}")
            else:
                yield Frame(
                    index=index,
                    pixels=pixels,
                    site=(ctx.get("Site unique ID") or name_site or None),
                    time=t,
                    label=label_index(own.get("Aurora class")),
                    meta=meta,
                )
            index += 1
            if index >= limits.MAX_FRAMES_PER_FILE:
                yield FrameError(uri, index, f"more than {limits.MAX_FRAMES_PER_FILE} frames")
                return
        if index == 0:
            raise CorruptFile(uri, "no PGM frames in the file")
