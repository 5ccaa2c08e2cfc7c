"""What every reader yields or raises: frames, per-frame errors, and whole-file verdicts.

Why three kinds: ingestion must quarantine a bad frame and go on (FrameError is *yielded*),
quarantine a file that cannot be read at all (CorruptFile, a BadInput so the CLI maps it to exit
code 2 when it is the user's only input), and count files that are deliberately not ingested
(SkipFile, e.g. THEMIS thumbnails). Every message names the file and the reason.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from pipeline.errors import BadInput


@dataclass
class Frame:
    """One image. pixels: (H, W) uint16/uint8 grey, or (H, W, 3) uint8 colour."""

    index: int
    pixels: np.ndarray
    site: str | None = None
    time: datetime | None = None  # exposure start, tz=UTC
    label: int | None = None  # class index (pipeline.synth.CLASSES for aurora archives)
    meta: dict = field(default_factory=dict)


class FrameError(Exception):
    """A frame (or tar sample, or table row) that could not be read; reading may go on."""

    def __init__(self, uri: str, index: int | None, reason: str):
        self.uri = str(uri)
        self.index = index
        self.reason = reason
        where = "" if index is None else f" frame {index}"
        super().__init__(f"{self.uri}{where}: {reason}")

    def __reduce__(self):  # picklable (Ray moves these between processes)
        return (type(self), (self.uri, self.index, self.reason))


class CorruptFile(BadInput):
    """Nothing in the file can be read (zero bytes, wrong magic, not the format it claims)."""

    def __init__(self, uri: str, reason: str):
        self.uri = str(uri)
        self.reason = reason
        super().__init__(f"{self.uri}: {reason}")

    def __reduce__(self):
        return (type(self), (self.uri, self.reason))


class SkipFile(Exception):
    """A file that is deliberately not ingested (e.g. THEMIS thumbnails thg_l1_ast_*)."""

    def __init__(self, uri: str, reason: str):
        self.uri = str(uri)
        self.reason = reason
        super().__init__(f"{self.uri}: skipped: {reason}")

    def __reduce__(self):
        return (type(self), (self.uri, self.reason))


class LimitExceeded(Exception):
    """A bound in pipeline.readers.limits was hit; readers turn it into FrameError/CorruptFile."""


class BadValue(ValueError):
    """A header field or cell whose value cannot be represented (a time outside years 1..9999
    UTC, a wrongly typed column); readers turn it into a FrameError for that frame."""


# OSErrors that say something about the file itself (its name, its kind, a link that cannot be
# followed), not about the storage: the file is corrupt (quarantined), not failed (retried).
FILE_ERRNOS = {
    errno.ELOOP: "symlink loop",
    errno.ENOTDIR: "a path component is not a directory",
    errno.EISDIR: "a directory, not a file",
    errno.ENAMETOOLONG: "name too long",
    errno.EILSEQ: "name not valid on this file system",
    errno.ENXIO: "not a regular file (no such device or reader)",
    errno.ENODEV: "not a regular file (a device)",
    errno.EOVERFLOW: "size or offset too large",
    errno.EFBIG: "file too large",
}
# Exceptions from these packages mean storage or cluster trouble (retried next run).
INFRA_MODULES = (
    "botocore",
    "aiobotocore",
    "aiohttp",
    "s3fs",
    "fsspec",
    "urllib3",
    "requests",
    "ray",
)
MAX_REASON = 1000


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def reason_for(exc: BaseException) -> str:
    """Why a file gave no frames, for people: "file not found", else the verdict's reason."""
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    return classify_error(exc)[1]


def classify_error(exc: BaseException) -> tuple[str, str]:
    """('skip' | 'corrupt' | 'fail', reason) for an exception raised while reading one file.

    The rule: only infrastructure fails a file (retried on the next run): storage that cannot
    be reached, timeouts, permissions, a file gone between listing and reading, a lost worker.
    Everything a file's bytes, name, kind, types or values can make a reader raise (any other
    exception type, OSErrors without an errno as decoders raise them, the errnos in
    FILE_ERRNOS) makes it corrupt: quarantined with the reason, never retried.
    """
    if isinstance(exc, SkipFile):
        return "skip", exc.reason
    if isinstance(exc, CorruptFile):
        return "corrupt", exc.reason
    if isinstance(exc, BadInput):
        return "corrupt", _short(exc)
    if isinstance(exc, (LimitExceeded, BadValue)):
        return "corrupt", _short(exc)
    if isinstance(exc, MemoryError):
        return "corrupt", _short(f"out of memory while reading: {exc}")
    if any(c.__module__.split(".")[0] in INFRA_MODULES for c in type(exc).__mro__):
        return "fail", _short(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, OSError):
        if exc.errno in FILE_ERRNOS:
            return "corrupt", f"{FILE_ERRNOS[exc.errno]} ({errno.errorcode[exc.errno]})"
        if exc.errno is None and not isinstance(exc, (ConnectionError, TimeoutError)):
            # gzip, Pillow and Arrow report bad data as OSError without an errno
            return "corrupt", _short(f"unreadable data ({type(exc).__name__}: {exc})")
        return "fail", _short(f"{type(exc).__name__}: {exc}")
    return "corrupt", _short(f"unreadable ({type(exc).__name__}: {exc})")
