"""What every reader yields or raises: frames, per-frame errors, and whole-file verdicts.

Why three kinds: ingestion must quarantine a bad frame and go on (FrameError is *yielded*),
quarantine a file that cannot be read at all (CorruptFile, a BadInput so the CLI maps it to exit
code 2 when it is the user's only input), and count files that are deliberately not ingested
(SkipFile, e.g. THEMIS thumbnails). Every message names the file and the reason.
"""

from __future__ import annotations

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
