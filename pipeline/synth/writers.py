"""Write synthetic frames the way real archives hold them, so ingestion reads them unchanged.

Why mimic the real layout byte for byte: the readers, the ingest job and the throughput benchmark
must be exercised on what observatories actually store. A THEMIS stream0 minute file is a
concatenation of binary PGM (P5) frames; the first frame carries the full site/imager header,
later frames only the per-exposure lines (mode and its sequence number, exposure, timestamps),
exactly as in ../shared/data/themis. Each raster is the generated frame flipped top to bottom:
the PGM reader flips stream0 rows (the pyucalgarysrs / asilib orientation, docs/READERS.md), so
reading a written file gives the generated arrays exactly. The class label travels inside each
frame's header as an extra `#"Aurora class" <name>` line (PNG: a tEXt chunk of the same name),
so a labelled archive needs no side files. All writes go through pipeline.storage (local paths,
file:// and s3://) and are atomic.
"""

from __future__ import annotations

import gzip as gzip_module
import io
import posixpath
from datetime import datetime, timedelta, timezone

import numpy as np
from PIL import Image, PngImagePlugin

from pipeline import storage
from pipeline.synth.generate import CLASSES

CADENCE_S = 3.0  # THEMIS full-resolution cadence: one exposure every 3 s, 20 per minute
FRAMES_PER_MINUTE = 20
TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f UTC"


def as_utc(t: datetime | str) -> datetime:
    """datetime or ISO string -> aware UTC datetime (naive values are taken as UTC)."""
    if isinstance(t, str):
        t = datetime.fromisoformat(t.replace("Z", "+00:00"))
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def minute_file_name(start_time: datetime, site: str, imager: str, gzip: bool = True) -> str:
    """`YYYYMMDD_HHMM_SITE_themisNN_full.pgm[.gz]`, the stream0 naming."""
    t = as_utc(start_time)
    return f"{t:%Y%m%d_%H%M}_{site}_{imager}_full.pgm" + (".gz" if gzip else "")


def stream0_dir(start_time: datetime, site: str, imager: str, top: str = "stream0") -> str:
    """`stream0/YYYY/MM/DD/SITE_themisNN/utHH`, the archive's folder for that hour."""
    t = as_utc(start_time)
    return f"{top}/{t:%Y/%m/%d}/{site}_{imager}/ut{t:%H}"


def _full_header(site: str, imager: str, latitude: float, longitude: float) -> list[str]:
    return [
        '"Revised" 2006-05-22',
        '"Project unique ID" themis-gbo',
        f'"Site unique ID" {site}',
        f'"Imager unique ID" {imager}',
        '"Imager model" aurorahash synthetic imager (THEMIS all-sky optics model)',
        '"Imager comment" synthetic frames from pipeline.synth',
        '"Ccd type" Sony ICX249AL',
        '"Ccd xsize" 752 pixels',
        '"Ccd ysize" 290 pixels',
        '"Ccd background" 3300',
        '"Pixel depth" 16 bits',
        '"Pixel aspect ratio" 0.5181',
        '"Optical type" THEMIS all-sky',
        '"Optical projection" a1=1.5,a3=0.0,b2=0.0,b4=0.0',
        '"Optical center" x0=382,y0=150',
        f'"Computer name" {site} synthetic',
        '"Operating system" none',
        '"Project unique ID" THEMIS',
        f'"Site unique ID" {site}',
        '"Site name" Synthetic',
        f'"Geodetic latitude" {latitude:.4f}',
        f'"Geodetic Longitude" {longitude:.4f}',
        '"Geodetic altitude" 0.0',
    ]


def _frame_header(seq: int, t: datetime, label: int | None) -> list[str]:
    lines = [
        '"Mode unique ID" full',
        f'"Mode sequence number" {seq}',
        '"CCD device" /dev/ccdA',
        '"Exposure options" WIDTH=512 HEIGHT=256 XBIN=2 YBIN=1 XOFFSET=126 YOFFSET=22 MSEC=999',
        f'"Image request start" {t.strftime(TIME_FORMAT)}',
        f'"Image readout start" {(t + timedelta(seconds=0.985)).strftime(TIME_FORMAT)}',
        '"Exposure plus initial readout"    985.00 ms',
    ]
    if label is not None:
        lines.append(f'"Aurora class" {CLASSES[int(label)]}')
    return lines


def pgm_minute_bytes(
    frames: np.ndarray,
    start_time: datetime | str,
    site: str = "synt",
    imager: str = "themis99",
    labels=None,
    latitude: float = 60.0,
    longitude: float = -100.0,
    cadence_s: float = CADENCE_S,
    sequence=None,
) -> bytes:
    """The uncompressed bytes of a stream0 minute file holding `frames` (n, H, W) uint16.

    `sequence`: each frame's "Mode sequence number" (default 0, 1, 2, ...). A frame is timed
    `cadence_s` per number after the first, so a skipped number is a dropped exposure.
    """
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.dtype != np.uint16:
        raise ValueError("frames must be a uint16 array of shape (n, H, W)")
    if labels is not None and len(labels) != len(frames):
        raise ValueError("labels must have one entry per frame")
    seq = list(range(len(frames))) if sequence is None else [int(s) for s in sequence]
    if len(seq) != len(frames) or any(b <= a for a, b in zip(seq, seq[1:], strict=False)):
        raise ValueError("sequence must give one rising number per frame")
    t0 = as_utc(start_time)
    n, h, w = frames.shape
    parts = []
    for k in range(n):
        lines = _full_header(site, imager, latitude, longitude) if k == 0 else []
        t = t0 + timedelta(seconds=cadence_s * (seq[k] - seq[0]))
        lines += _frame_header(seq[k], t, None if labels is None else labels[k])
        head = "P5\n" + "".join(f"#{line}\n" for line in lines) + f"{w} {h}\n65535\n"
        parts.append(head.encode("ascii"))
        parts.append(frames[k][::-1].astype(">u2").tobytes())  # file order: see module doc
    return b"".join(parts)


def write_pgm_minute(
    path: str,
    frames: np.ndarray,
    start_time: datetime | str,
    site: str = "synt",
    imager: str = "themis99",
    labels=None,
    gzip: bool | None = None,
    latitude: float = 60.0,
    longitude: float = -100.0,
    storage_options: dict | None = None,
    sequence=None,
) -> str:
    """Write one THEMIS stream0 minute file; returns the URI written.

    `path` is either the file's name (ending .pgm or .pgm.gz) or a folder, in which case the
    file is named `YYYYMMDD_HHMM_SITE_IMAGER_full.pgm[.gz]` inside it. `gzip=None` follows the
    name's suffix (and means gzip for a folder). `sequence`: see `pgm_minute_bytes`.
    """
    p = str(path)
    is_file = p.endswith((".pgm", ".pgm.gz"))
    if gzip is None:
        gzip = p.endswith(".gz") if is_file else True
    if not is_file:
        p = posixpath.join(p.rstrip("/"), minute_file_name(start_time, site, imager, gzip))
    data = pgm_minute_bytes(
        frames, start_time, site, imager, labels, latitude, longitude, sequence=sequence
    )
    if gzip:
        data = gzip_module.compress(data, compresslevel=6, mtime=0)
    storage.atomic_write_bytes(p, data, storage_options)
    return p


def png_bytes(frame: np.ndarray, label=None, site=None, time=None) -> bytes:
    """A 16-bit (uint16) or 8-bit (uint8) greyscale PNG, with label/site/time as tEXt chunks."""
    frame = np.asarray(frame)
    if frame.ndim != 2 or frame.dtype not in (np.uint16, np.uint8):
        raise ValueError("frame must be a 2-D uint16 or uint8 array")
    info = PngImagePlugin.PngInfo()
    if label is not None:
        info.add_text("Aurora class", CLASSES[int(label)])
    if site is not None:
        info.add_text("Site unique ID", str(site))
    if time is not None:
        info.add_text("Image request start", as_utc(time).strftime(TIME_FORMAT))
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG", pnginfo=info, compress_level=3)
    return buf.getvalue()


def write_png(
    path: str, frame: np.ndarray, label=None, site=None, time=None, storage_options=None
) -> str:
    """Write one frame as a 16-bit PNG (8-bit for uint8 input); returns the URI."""
    storage.atomic_write_bytes(str(path), png_bytes(frame, label, site, time), storage_options)
    return str(path)
