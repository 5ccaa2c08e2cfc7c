"""Archive frames as report thumbnails, read back from the archive through the readers.

Why from the archive: code shards hold codes, not pixels; a report shows what a scientist would
see, so each frame is read again from its `source` file (local or s3://) by the same readers
that ingest used, in the orientation they give, and display-stretched (`thumbnail`). A frame
that can no longer be read (file moved, deleted or damaged) becomes a placeholder that says why:
a report of an old night must still open when part of the archive has gone.
"""

from __future__ import annotations

import datetime as _dt
import io
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from pipeline.reports.thumbnail import thumbnail_png

READ_THREADS = 4  # files read at once (decompression and I/O)


@dataclass
class Shown:
    """One frame as a report shows it: a PNG, or the reason there is none."""

    png: bytes
    ok: bool
    reason: str = ""
    site: str | None = None
    time: _dt.datetime | None = None
    label: int | None = None  # the frame's own class header, where the archive has one


def placeholder_png(size: int = 160) -> bytes:
    """A grey square with a cross: where a frame could not be read (the tile says why)."""
    img = Image.new("L", (size, size), 58)
    d = ImageDraw.Draw(img)
    m = size // 4
    d.line((m, m, size - m, size - m), fill=120, width=max(2, size // 40))
    d.line((m, size - m, size - m, m), fill=120, width=max(2, size // 40))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _read_file(source: str, frames: set[int], so: dict, size: int) -> dict[int, Shown]:
    """The wanted frames of one archive file; a placeholder for each one that is not there."""
    from pipeline.readers import FrameError, read_frames, reason_for

    out: dict[int, Shown] = {}
    seen = -1
    try:
        for item in read_frames(source, so):
            seen = max(seen, -1 if item.index is None else item.index)
            if item.index not in frames:
                continue
            if isinstance(item, FrameError):
                out[item.index] = Shown(placeholder_png(size), False, item.reason)
            else:
                png = thumbnail_png(np.asarray(item.pixels), size)
                out[item.index] = Shown(png, True, "", item.site, item.time, item.label)
            if len(out) == len(frames):
                break
    except Exception as exc:  # the report goes on without this file's frames
        reason = reason_for(exc)
    else:
        reason = f"no such frame (the file has {seen + 1})"
    for f in frames - set(out):
        out[f] = Shown(placeholder_png(size), False, reason)
    return out


def read_thumbnails(
    refs: Iterable[tuple[str, int]], storage_options: dict | None = None, size: int = 160
) -> dict[tuple[str, int], Shown]:
    """{(source, frame): Shown} for archive frames, each file read once (a few at a time)."""
    by_file: dict[str, set[int]] = {}
    for source, frame in refs:
        by_file.setdefault(str(source), set()).add(int(frame))
    so = dict(storage_options or {})
    with ThreadPoolExecutor(max(1, min(READ_THREADS, len(by_file)))) as pool:
        jobs = {s: pool.submit(_read_file, s, f, so, size) for s, f in by_file.items()}
        return {(s, i): shown for s, job in jobs.items() for i, shown in job.result().items()}
