"""Archive readers: one module per format, picked by file name, all reading through fsspec.

    files = list_archive(uri, storage_options)       # sorted archive files under uri
    for item in read_frames(uri, storage_options):   # one archive file
        if isinstance(item, FrameError): ...         # quarantine it and go on
        else: item.index, item.pixels, item.site, item.time, item.label, item.meta

read_frames raises SkipFile (deliberately not ingested, e.g. thg_l1_ast_* thumbnails) at the
call, and CorruptFile (nothing readable) either at the call or at the first step of the
iteration; wrap both the call and the loop. Limits on hostile input live in limits.py.
"""

from __future__ import annotations

import posixpath

from pipeline import storage
from pipeline.readers import cdf, image, parquet_table, pgm, tar_shard
from pipeline.readers.base import CorruptFile, Frame, FrameError, SkipFile, reason_for

# Longest suffixes first is not needed: the suffix sets do not overlap.
FORMATS = {
    "themis-pgm": pgm,
    "themis-cdf": cdf,
    "image": image,
    "parquet": parquet_table,
    "tar": tar_shard,
}
SUFFIXES = tuple(s for mod in FORMATS.values() for s in mod.SUFFIXES)


def format_of(uri: str) -> str | None:
    """The registry name of the reader for `uri` (by file name), or None."""
    name = posixpath.basename(str(uri).rstrip("/")).lower()
    for fmt, mod in FORMATS.items():
        if name.endswith(mod.SUFFIXES):
            return fmt
    return None


def reader_for(uri: str):
    """The `read(uri, storage_options)` function for this file name, or None if unsupported."""
    fmt = format_of(uri)
    return None if fmt is None else FORMATS[fmt].read


def read_frames(uri: str, storage_options: dict | None = None):
    """Iterator of Frame / FrameError for one archive file (see the module docstring)."""
    fn = reader_for(uri)
    if fn is None:
        raise CorruptFile(uri, "unsupported file type (known: " + " ".join(SUFFIXES) + ")")
    return fn(str(uri), storage_options or {})


def list_archive(uri: str, storage_options: dict | None = None, detail: bool = False):
    """Sorted URIs of the readable archive files under `uri` (or `uri` itself, if a file).

    Names starting with _ or . are ignored, and so are files no reader handles. detail=True:
    {uri: modification time or None} instead (see storage.list_files).
    """
    return storage.list_files(
        uri, storage_options or {}, detail=detail, keep=lambda f: format_of(f) is not None
    )


__all__ = [
    "CorruptFile",
    "FORMATS",
    "Frame",
    "FrameError",
    "SkipFile",
    "format_of",
    "list_archive",
    "read_frames",
    "reader_for",
    "reason_for",
]
