"""Sequential, size-capped byte streams over fsspec files, decompressing .gz/.bz2 on the fly.

Why our own thin buffer: PGM headers need `readline(limit)` and the rasters `read(n)`, over
local files, S3 objects (whose fsspec readline takes no limit) and gzip/bz2 decoders alike, and
every byte that comes out must count against limits.MAX_DECOMPRESSED_BYTES so a small
compressed file cannot expand without bound. Frames are read one at a time: a minute file is
never held whole in memory.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import gzip
import os
import posixpath
import stat

from pipeline import storage
from pipeline.readers import limits
from pipeline.readers.base import CorruptFile, LimitExceeded
from pipeline.storage import safe_text

CHUNK = 1 << 16


class ByteStream:
    """read / read_exact / readline / unread over a file object, with a byte cap."""

    def __init__(self, f, cap: int, what: str):
        self._f = f
        # read1: one decompression step per call, so bytes decoded before a truncation point
        # reach us before the decoder raises (read(n) would drop them with the exception)
        self._read = getattr(f, "read1", None) or f.read
        self._buf = bytearray()
        self._cap = cap
        self._what = what
        self.consumed = 0  # bytes handed out so far (after decompression)
        self._pulled = 0  # bytes taken from the underlying stream
        self._eof = False

    def _fill(self, want: int) -> None:
        """Buffer at least `want` bytes if the stream has them; bytes up to the cap are served
        normally, and only a request that needs a byte beyond it raises LimitExceeded."""
        while len(self._buf) < want and not self._eof:
            room = self._cap - self._pulled
            data = self._read(max(1, min(max(CHUNK, want - len(self._buf)), room)))
            if not data:
                self._eof = True
                break
            if room <= 0:
                raise LimitExceeded(
                    f"{self._what}: more than {self._cap} bytes after decompression "
                    "(limits.MAX_DECOMPRESSED_BYTES)"
                )
            self._pulled += len(data)
            self._buf += data

    def read(self, n: int) -> bytes:
        """Up to n bytes (fewer only at the end of the stream)."""
        self._fill(n)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        self.consumed += len(out)
        return out

    def readline(self, limit: int) -> bytes:
        """Bytes up to and including the next newline, or `limit` bytes, or what is left."""
        start = 0
        while True:
            i = self._buf.find(b"\n", start)
            if i >= 0 and i < limit:
                return self.read(i + 1)
            if len(self._buf) >= limit or self._eof:
                return self.read(min(limit, len(self._buf)))
            start = len(self._buf)
            self._fill(len(self._buf) + 1)

    def peek(self, n: int) -> bytes:
        self._fill(n)
        return bytes(self._buf[:n])

    def unread(self, data: bytes) -> None:
        self._buf[:0] = data
        self.consumed -= len(data)


def compression_of(uri: str) -> str | None:
    name = posixpath.basename(str(uri)).lower()
    if name.endswith((".gz", ".tgz")):
        return "gzip"
    if name.endswith(".bz2"):
        return "bz2"
    return None


def checked_size(uri: str, storage_options: dict | None, cap_name: str) -> int | None:
    """`file_size`, refusing a file larger than `limits.<cap_name>` (CorruptFile naming it)."""
    size = file_size(uri, storage_options)
    if size is not None and size > getattr(limits, cap_name):
        raise CorruptFile(uri, f"{size} bytes > limits.{cap_name}")
    return size


def file_size(uri: str, storage_options: dict | None) -> int | None:
    """The file's size in bytes (None if the store cannot say); CorruptFile for a zero-byte
    file, and for a local path that is not a regular file (a FIFO or device, which would block
    or never end, a directory, a symlink loop or a dangling symlink), each with its reason."""
    fs, path, protocol = storage.split_uri(uri, storage_options)
    if protocol == "file":
        return _local_size(uri, path)
    try:
        size = int(fs.size(path))
    except Exception:  # size unknown: checks against it are skipped, the caps still hold
        return None
    if size == 0:
        raise CorruptFile(uri, "empty file (0 bytes)")
    return size


_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _local_size(uri: str, path: str) -> int:
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CorruptFile(uri, "symlink loop (ELOOP): the link cannot be resolved") from None
        if exc.errno == errno.ENOENT and os.path.islink(path):
            target = safe_text(os.readlink(path))
            raise CorruptFile(uri, f"dangling symlink (to {target!r})") from None
        raise  # gone since it was listed, permissions, I/O: not the file's bytes
    if not stat.S_ISREG(st.st_mode):
        kind = next(
            (k for test, k in _KINDS if test(st.st_mode)), f"type {stat.S_IFMT(st.st_mode):o}"
        )
        raise CorruptFile(uri, f"not a regular file: {kind}")
    if st.st_size == 0:
        raise CorruptFile(uri, "empty file (0 bytes)")
    return int(st.st_size)


@contextlib.contextmanager
def open_stream(uri: str, storage_options: dict | None = None):
    """(ByteStream of the decompressed content, compressed?) for one archive file.

    Raises CorruptFile for a zero-byte file, one that is not a regular file (file_size) or one
    missing the compression header its name promises.
    """
    size = file_size(uri, storage_options)
    fs, path, _ = storage.split_uri(uri, storage_options)
    comp = compression_of(uri)
    with fs.open(path, "rb") as raw:
        if comp == "gzip":
            head = raw.read(2)
            if head != b"\x1f\x8b":
                raise CorruptFile(uri, f"not gzip data (starts with {head!r}) despite the name")
            raw.seek(0)
            inner = gzip.GzipFile(fileobj=raw, mode="rb")
        elif comp == "bz2":
            head = raw.read(3)
            if head != b"BZh":
                raise CorruptFile(uri, f"not bzip2 data (starts with {head!r}) despite the name")
            raw.seek(0)
            inner = bz2.BZ2File(raw, mode="rb")
        else:
            inner = raw
        cap = limits.MAX_DECOMPRESSED_BYTES if comp else (size or limits.MAX_DECOMPRESSED_BYTES)
        yield ByteStream(inner, cap, str(uri)), comp is not None, size
