"""THEMIS level-1 all-sky CDF files (thg_l1_asf_SITE_YYYYMMDDHH_v01.cdf), read with cdflib.

Every record of the `thg_asf_SITE` image variable is a frame; the site comes from the global
attribute Logical_source (`thg_l1_asf_gako`), else the variable or file name. Records that are
all fill value (65535) are FrameErrors. Thumbnail products (thg_l1_ast_*) are a SkipFile.

Times: `VAR_epoch` (CDF_EPOCH, or any epoch type cdflib converts) when it holds a value for
every record. THEMIS declares it VIRTUAL (comp_themis_epoch = VAR_epoch0 + VAR_time) and some
files store a single record of it (the thumbnail day file holds one for 1,075 frames); then the
record times `VAR_time` (seconds after VAR_epoch0, which is 1970-01-01) give the exposure start.
`VAR_tend`, where present, gives the exposure end (`meta["exposure_end"]`).

Orientation: rows come out flipped top to bottom (last stored row first), the way the PGM reader
gives stream0 frames (pyucalgarysrs / asilib orientation), so that one camera's frames look the
same from either format. docs/READERS.md says how this was checked against the sky.

Why the bounded subclass: cdflib inflates gzip-compressed variable blocks with an unbounded
gzip.decompress; a small hostile CDF could expand to any size. _BoundedCDF overrides the two
private cdflib methods that read variable blocks, to inflate through a decompressor capped at
limits.MAX_DECOMPRESSED_BYTES; cdflib's public API has no way to bound it. The override is
written against the cdflib release pinned in constraints.txt, and a test fails when another
release is installed. Whole-file compressed CDFs (which cdflib would inflate whole on opening)
are refused from their header before cdflib sees them. cdflib opens only local paths (its own
s3:// support bypasses fsspec and our endpoint options), so remote files are read (capped at
limits.MAX_FILE_BYTES) into a temporary local copy first. Records are read in small batches so
an hour-long file is never decoded at once.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import tempfile
import zlib
from datetime import datetime, timedelta, timezone

import cdflib
import numpy as np

from pipeline import storage
from pipeline.readers import limits
from pipeline.readers.base import CorruptFile, Frame, FrameError, LimitExceeded, SkipFile
from pipeline.readers.streams import checked_size

SUFFIXES = (".cdf",)
THUMBNAIL_RE = re.compile(r"^thg_l\d_ast_", re.IGNORECASE)
NAME_RE = re.compile(r"^thg_l\d_asf_([a-z0-9]+)_", re.IGNORECASE)
IMAGE_VAR_RE = re.compile(r"^thg_asf_([a-z0-9]+)$", re.IGNORECASE)
CDF_MAGICS = ("cdf30001", "cdf26002", "0000ffff")
UNCOMPRESSED_FILE = "0000ffff"  # the header's second word; anything else: whole-file compression
EPOCH_1970_MS = 62167219200000.0  # CDF_EPOCH (ms since 0000-01-01) of 1970-01-01T00:00Z
EPOCH_1970 = datetime(1970, 1, 1, tzinfo=timezone.utc)
RECORDS_PER_READ = 32
MAX_CONSECUTIVE_FAILURES = 64


def bounded_inflate(data: bytes) -> bytes:
    d = zlib.decompressobj(wbits=47)  # gzip or zlib header
    out = d.decompress(data, limits.MAX_DECOMPRESSED_BYTES + 1)
    if len(out) > limits.MAX_DECOMPRESSED_BYTES or d.unconsumed_tail:
        raise LimitExceeded(
            f"compressed CDF block expands beyond {limits.MAX_DECOMPRESSED_BYTES} bytes"
        )
    return out


class _BoundedCDF(cdflib.CDF):
    """cdflib.CDF whose gzip inflation is capped (see the module docstring)."""

    def _read_vvr_block(self, offset: int) -> bytes:  # CDF v3: 8-byte sizes
        return self._bounded_vvr(offset, 8)

    def _read_vvr_block2(self, offset: int) -> bytes:  # CDF v2: 4-byte sizes
        return self._bounded_vvr(offset, 4)

    def _bounded_vvr(self, offset: int, width: int) -> bytes:
        """cdflib's VVR/CVVR block read, with the block size and the inflation capped."""
        self._f.seek(offset, 0)
        block_size = int.from_bytes(self._f.read(width), "big")
        if block_size > limits.MAX_FILE_BYTES:
            raise LimitExceeded(f"CDF block of {block_size} bytes")
        block = self._f.read(block_size - width)
        section_type = int.from_bytes(block[0:4], "big")
        if section_type == 13:  # CVVR
            compressed_size = int.from_bytes(block[8 : 8 + width], "big")
            return bounded_inflate(block[8 + width : 8 + width + compressed_size])
        if section_type == 7:  # VVR
            return block[4:]
        raise RuntimeError("Unexpected section type")


def read(uri: str, storage_options: dict | None = None):
    """Frames and FrameErrors of one ASF CDF (a generator); SkipFile for thumbnails."""
    uri = str(uri)
    if THUMBNAIL_RE.match(posixpath.basename(uri)):
        raise SkipFile(uri, "THEMIS thumbnail product (thg_l1_ast_*), not ingested")
    return _frames(uri, storage_options)


@contextlib.contextmanager
def _local_path(uri: str, storage_options: dict | None):
    fs, path, protocol = storage.split_uri(uri, storage_options)
    if protocol == "file":
        yield path
        return
    data = storage.read_bytes(uri, storage_options, max_bytes=limits.MAX_FILE_BYTES)
    fd, tmp = tempfile.mkstemp(suffix=".cdf", prefix="aurorahash-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        del data
        yield tmp
    finally:
        os.unlink(tmp)


def _open(uri: str, local: str) -> _BoundedCDF:
    with open(local, "rb") as f:
        head = f.read(8).hex()
    if head[:8] not in CDF_MAGICS:
        raise CorruptFile(uri, f"not a CDF file (magic {head[:8] or 'none'})")
    if head[8:16] != UNCOMPRESSED_FILE:
        raise CorruptFile(
            uri, "whole-file compressed CDFs are not supported (cdflib inflates them unbounded)"
        )
    try:
        return _BoundedCDF(local)
    except LimitExceeded as exc:
        raise CorruptFile(uri, str(exc)) from None
    except Exception as exc:
        raise CorruptFile(uri, f"unreadable CDF ({type(exc).__name__}: {exc})") from None


def _site(cdf, var: str, uri: str) -> str | None:
    try:
        src = cdf.globalattsget().get("Logical_source") or []
    except Exception:
        src = []
    for s in src if isinstance(src, list) else [src]:
        m = re.match(r"^thg_l\d_asf_([a-z0-9]+)$", str(s).strip(), re.IGNORECASE)
        if m:
            return m.group(1).lower()
    m = IMAGE_VAR_RE.match(var) or NAME_RE.match(posixpath.basename(uri))
    return m.group(1).lower() if m else None


def record_times(cdf, var: str, n: int) -> tuple[list, list]:
    """(exposure starts, exposure ends) of the n records of `var`: aware UTC datetimes, None
    where absent or fill (the module docstring says which variables are used)."""
    starts = _epochs(cdf, f"{var}_epoch", n) or [None] * n
    base = _epoch0(cdf, f"{var}_epoch0")
    if any(t is None for t in starts):
        record = _seconds_after(cdf, f"{var}_time", n, base) or [None] * n
        starts = [a or b for a, b in zip(starts, record, strict=True)]
    ends = _seconds_after(cdf, f"{var}_tend", n, base) or [None] * n
    return starts, ends


def _epochs(cdf, name: str, n: int) -> list | None:
    """`name` converted record by record; None unless it holds at least n records."""
    try:
        info = cdf.varinq(name)
        if int(info.Last_Rec) + 1 < n:
            return None
        ep = np.asarray(cdf.varget(name, startrec=0, endrec=n - 1)).reshape(-1)
    except Exception:
        return None
    if ep.shape[0] < n:
        return None
    return [_epoch_value(v, info.Data_Type) for v in ep[:n]]


def _epoch_value(v, dtype: int) -> datetime | None:
    try:
        if dtype == 31:  # CDF_EPOCH: float ms since year 0
            if np.isfinite(v) and v > 0:
                return EPOCH_1970 + timedelta(milliseconds=float(v) - EPOCH_1970_MS)
            return None
        t = cdflib.cdfepoch.to_datetime(v)  # EPOCH16 / TT2000
        t = np.asarray(t).reshape(-1)[0].astype("datetime64[us]").item()
        return t.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError, TypeError):
        return None


def _epoch0(cdf, name: str) -> datetime:
    """The base of the record times (`VAR_epoch0`, CDF_EPOCH); 1970-01-01 when unreadable."""
    try:
        v = np.asarray(cdf.varget(name)).reshape(-1)[0]
        return _epoch_value(v, cdf.varinq(name).Data_Type) or EPOCH_1970
    except Exception:
        return EPOCH_1970


def _seconds_after(cdf, name: str, n: int, base: datetime) -> list | None:
    """Record times stored as seconds after `base` (NaN fill -> None); None if not n records."""
    try:
        if int(cdf.varinq(name).Last_Rec) + 1 < n:
            return None
        sec = np.asarray(cdf.varget(name, startrec=0, endrec=n - 1), dtype=np.float64)
    except Exception:
        return None
    sec = sec.reshape(-1)
    if sec.shape[0] < n:
        return None
    out = []
    for v in sec[:n]:
        try:
            out.append(base + timedelta(seconds=float(v)) if np.isfinite(v) else None)
        except OverflowError:
            out.append(None)
    return out


def _frames(uri: str, storage_options: dict | None):
    checked_size(uri, storage_options, "MAX_FILE_BYTES")
    with _local_path(uri, storage_options) as local:
        cdf = _open(uri, local)
        try:
            yield from _records(uri, cdf)
        finally:
            f = getattr(cdf, "_f", None)
            if f is not None:
                f.close()


def _layout(uri: str, cdf):
    """(image variable, records, height, width, fill value, site, [(start, end)] per record)
    or CorruptFile."""
    names = list(cdf.cdf_info().zVariables) + list(cdf.cdf_info().rVariables)
    images = [v for v in names if IMAGE_VAR_RE.match(v)]
    if not images:
        if any(v.lower().startswith("thg_ast_") for v in names):
            raise SkipFile(uri, "THEMIS thumbnail product (thg_ast_* variables), not ingested")
        raise CorruptFile(uri, "no thg_asf_SITE image variable")
    var = images[0]
    info = cdf.varinq(var)
    dims = list(info.Dim_Sizes)
    n = int(info.Last_Rec) + 1
    if len(dims) != 2:
        raise CorruptFile(uri, f"{var} has dimensions {dims}, expected 2-D frames")
    h, w = int(dims[0]), int(dims[1])
    if h <= 0 or w <= 0 or h > limits.MAX_DIM or w > limits.MAX_DIM or h * w > limits.MAX_PIXELS:
        raise CorruptFile(uri, f"declared frame size {h}x{w} exceeds the limit")
    if n > limits.MAX_FRAMES_PER_FILE:
        raise CorruptFile(uri, f"{n} records > limits.MAX_FRAMES_PER_FILE")
    if n <= 0:
        raise CorruptFile(uri, f"{var} holds no records")
    try:
        fill = cdf.varattsget(var).get("FILLVAL", 65535)
        fill = int(np.asarray(fill).reshape(-1)[0])
    except Exception:
        fill = 65535
    site = _site(cdf, var, uri)
    times = list(zip(*record_times(cdf, var, n), strict=True))
    return var, n, h, w, fill, site, times


def _records(uri: str, cdf):
    try:
        var, n, h, w, fill, site, times = _layout(uri, cdf)
    except (CorruptFile, SkipFile):
        raise
    except Exception as exc:  # cdflib on damaged metadata: any error type
        raise CorruptFile(uri, f"unreadable CDF metadata ({type(exc).__name__}: {exc})") from None
    failures = 0  # consecutive unreadable records
    for start in range(0, n, RECORDS_PER_READ):
        stop = min(n, start + RECORDS_PER_READ)
        try:
            block = _read_block(cdf, var, start, stop, h, w)
        except Exception:
            # a damaged block: retry record by record so the readable ones survive
            for i in range(start, stop):
                try:
                    one = _read_block(cdf, var, i, i + 1, h, w)
                except Exception as exc:
                    yield FrameError(uri, i, f"unreadable record ({type(exc).__name__}: {exc})")
                    failures += 1
                    if failures >= MAX_CONSECUTIVE_FAILURES and i + 1 < n:
                        yield FrameError(
                            uri,
                            None,
                            f"records {i + 1}..{n - 1} not tried after "
                            f"{failures} consecutive unreadable records",
                        )
                        return
                    continue
                failures = 0
                yield _frame_or_error(uri, i, one[0], fill, site, times[i], var)
            continue
        failures = 0
        for k in range(stop - start):
            yield _frame_or_error(uri, start + k, block[k], fill, site, times[start + k], var)


def _read_block(cdf, var: str, start: int, stop: int, h: int, w: int) -> np.ndarray:
    block = np.asarray(cdf.varget(var, startrec=start, endrec=stop - 1))
    return block.reshape(stop - start, h, w)


def _frame_or_error(uri, i, frame, fill, site, when, var):
    if (frame == fill).all():
        return FrameError(uri, i, f"fill-valued frame (all pixels {fill})")
    if frame.dtype != np.uint16 and (frame.min() < 0 or frame.max() > 65535):
        return FrameError(uri, i, f"pixel values outside 0..65535 ({frame.dtype})")
    start, end = when
    return Frame(
        index=i,
        pixels=np.ascontiguousarray(frame[::-1], dtype=np.uint16),  # the PGM orientation
        site=site,
        time=start,
        label=None,
        meta={
            "variable": var,
            "imager": "asf",
            "exposure_end": None if end is None else end.isoformat(),
        },
    )
