"""A whole synthetic archive on disk or S3, laid out like the THEMIS one.

Why: the ingest job, its tests and the throughput benchmark need archives of thousands of
labelled frames in the real directory layout (stream0/YYYY/MM/DD/SITE_themisNN/utHH/), made in
seconds and identical for a given seed. Each minute file holds frames 20*i .. 20*i+19 of the
seeded stream, so the archive read back equals `generate(n, seed=seed)` frame for frame (the
writers store PGM rows in file order, which the reader flips back). The frames' "Mode sequence
number" counts 0, 1, 2, ... across the whole archive, as a camera's does across its minutes.
"""

from __future__ import annotations

import logging
import posixpath
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

from pipeline.synth.generate import CLASSES, generate
from pipeline.synth.writers import (
    CADENCE_S,
    FRAMES_PER_MINUTE,
    as_utc,
    stream0_dir,
    write_pgm_minute,
    write_png,
)

log = logging.getLogger(__name__)

FORMATS = ("pgm", "pgm.gz", "png")
DEFAULT_START = datetime(2020, 1, 1, 6, 0, tzinfo=timezone.utc)


def write_archive(
    out: str,
    n_frames: int,
    seed: int = 0,
    fmt: str = "pgm.gz",
    size: int = 256,
    site: str = "synt",
    imager: str = "themis99",
    start_time: datetime | str = DEFAULT_START,
    classes=None,
    labels: bool = True,
    storage_options: dict | None = None,
    start: int = 0,
) -> dict:
    """Write `n_frames` synthetic frames under `out`; returns a summary dict.

    The archive holds frames start .. start+n_frames-1 of the seeded stream (the first minute
    file starts at `start_time`).
    pgm / pgm.gz: one minute file per 20 frames (the last may hold fewer);
    png: one 16-bit PNG per frame under png/YYYY/MM/DD/SITE_IMAGER/utHH/.
    `labels=False` leaves the class out of the files (an unlabelled archive).
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if n_frames < 0:
        raise ValueError("n_frames must be >= 0")
    t_start = time.perf_counter()
    t0 = as_utc(start_time).replace(second=0, microsecond=0)
    root = str(out).rstrip("/")
    files: list[str] = []
    counts: Counter = Counter()
    for first in range(0, n_frames, FRAMES_PER_MINUTE):
        k = min(FRAMES_PER_MINUTE, n_frames - first)
        frames, labs = generate(k, size=size, seed=seed, classes=classes, start=start + first)
        counts.update(CLASSES[int(c)] for c in labs)
        minute = t0 + timedelta(minutes=first // FRAMES_PER_MINUTE)
        top = "png" if fmt == "png" else "stream0"
        folder = posixpath.join(root, stream0_dir(minute, site, imager, top))
        labs = labs if labels else None
        if fmt == "png":
            files += _write_pngs(folder, frames, labs, minute, site, imager, storage_options)
        else:
            files.append(
                write_pgm_minute(
                    *(folder, frames, minute),
                    site=site,
                    imager=imager,
                    labels=labs,
                    gzip=fmt == "pgm.gz",
                    storage_options=storage_options,
                    sequence=range(first, first + k),
                )
            )
        log.info("synth: %d/%d frames", first + k, n_frames)
    return {
        "out": str(out),
        "format": fmt,
        "frames": int(n_frames),
        "files": len(files),
        "size": int(size),
        "seed": int(seed),
        "start": int(start),
        "site": site,
        "class_counts": {c: counts.get(c, 0) for c in CLASSES},
        "seconds": round(time.perf_counter() - t_start, 3),
        "paths": files,
    }


def _write_pngs(folder, frames, labels, minute, site, imager, storage_options) -> list[str]:
    """One 16-bit PNG per frame of one minute, named by its time (3 s cadence)."""
    paths = []
    for j in range(len(frames)):
        t = minute + timedelta(seconds=CADENCE_S * j)
        name = f"{t:%Y%m%d_%H%M%S}_{site}_{imager}.png"
        paths.append(
            write_png(
                posixpath.join(folder, name),
                frames[j],
                label=labels[j] if labels is not None else None,
                site=site,
                time=t,
                storage_options=storage_options,
            )
        )
    return paths
