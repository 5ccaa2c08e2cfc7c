"""Tar shards in the WebDataset convention: `key.png` / `key.jpg` (+ optional `key.cls`).

A sample is the run of consecutive members sharing a key (the member path up to the first dot of
its file name); the frame index is the sample's position in the shard. The image is the sample's
png/jpg/jpeg/tif/tiff member, the label the integer (or aurora class name) in its `.cls` member;
other members (json, txt) are ignored.

Why streaming and these refusals: shards are read front to back (`tarfile` stream mode over a
capped, possibly gunzipped stream), so a shard is never held whole; members with absolute or
`..` paths, links and devices are refused with a FrameError naming the member (nothing is ever
extracted to disk, but such members mark a shard that was not made for us); a sample without a
decodable image is a FrameError; a truncated shard yields its complete samples, then one.

Why capped headers: tarfile reads a GNU long name/link or a pax header whole into memory, at
whatever size its header declares (a 4.5 MB .tar.gz can declare a 1000 MiB long name). Such a
header above limits.MAX_TAR_HEADER_BYTES is skipped in small chunks instead, and the member it
describes is refused with that reason; reading goes on with the next member. Sparse members are
refused (their maps are unbounded too). Member names are shown as safe text (%XX for bytes that
are not UTF-8, see pipeline.storage.safe_text).
"""

from __future__ import annotations

import posixpath
import tarfile

from pipeline.readers import limits
from pipeline.readers.base import BadValue, CorruptFile, Frame, FrameError, LimitExceeded
from pipeline.readers.decode import ImageDecodeError, decode_image
from pipeline.readers.labels import label_index
from pipeline.readers.pgm import parse_time
from pipeline.readers.streams import open_stream
from pipeline.storage import safe_text

SUFFIXES = (".tar", ".tar.gz", ".tgz")
IMAGE_EXTS = ("png", "jpg", "jpeg", "tif", "tiff")
MAX_CLS_BYTES = 256
MAX_SHOWN_MEMBERS = 16  # member names kept per sample for its error message


def _show(name: str) -> str:
    """A member name for a reason text: safe text, quoted, at most 200 characters."""
    text = safe_text(name)
    return repr(text if len(text) <= 200 else text[:200] + "...")


class _CappedTarInfo(tarfile.TarInfo):
    """TarInfo whose extended headers are checked against limits before being read."""

    refused: str | None = None  # why the member this header describes is refused

    def _skip_oversized(self, tf, what: str):
        # _Stream.seek reads forward in bufsize chunks: bounded memory, whatever the size
        tf.fileobj.seek(tf.fileobj.tell() + self._block(self.size))
        try:
            nxt = self.fromtarfile(tf)
        except tarfile.HeaderError as exc:
            raise tarfile.SubsequentHeaderError(str(exc)) from None
        nxt.offset = self.offset
        nxt.refused = (
            f"{what} of {self.size} bytes > limits.MAX_TAR_HEADER_BYTES "
            f"({limits.MAX_TAR_HEADER_BYTES}); member refused"
        )
        return nxt

    def _proc_gnulong(self, tf):
        if self.size > limits.MAX_TAR_HEADER_BYTES:
            link = self.type == tarfile.GNUTYPE_LONGLINK
            return self._skip_oversized(tf, "GNU long link name" if link else "GNU long name")
        return super()._proc_gnulong(tf)

    def _proc_pax(self, tf):
        if self.size > limits.MAX_TAR_HEADER_BYTES:
            return self._skip_oversized(tf, "pax extended header")
        return super()._proc_pax(tf)

    def _proc_sparse(self, tf):
        structs, isextended, origsize = self._sparse_structs
        if isextended:  # tarfile would collect any number of extension blocks into its map
            raise LimitExceeded("GNU sparse member with extension blocks (not supported)")
        return super()._proc_sparse(tf)

    def _proc_gnusparse_10(self, nxt, pax_headers, tf):
        raise LimitExceeded("GNU sparse 1.0 member (not supported)")


def read(uri: str, storage_options: dict | None = None):
    """Frames and FrameErrors of one tar shard (a generator)."""
    return _frames(str(uri), storage_options)


def split_key(name: str) -> tuple[str, str]:
    """'a/b/000123.seg.png' -> ('a/b/000123', 'seg.png')."""
    d, base = posixpath.split(name)
    stem, dot, ext = base.partition(".")
    return (posixpath.join(d, stem) if d else stem), (ext.lower() if dot else "")


def unsafe_reason(member: tarfile.TarInfo) -> str | None:
    name = member.name
    shown = _show(name)
    if getattr(member, "refused", None):
        return f"refused member {shown}: {member.refused}"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return f"refused member {shown}: absolute path"
    if ".." in name.replace("\\", "/").split("/"):
        return f"refused member {shown}: '..' in its path"
    if member.issym() or member.islnk():
        return f"refused member {shown}: link to {_show(member.linkname)}"
    if member.issparse():
        return f"refused member {shown}: sparse file"
    if not (member.isfile() or member.isdir()):
        return f"refused member {shown}: not a regular file"
    return None


class _Sample:
    def __init__(self, key: str, index: int):
        self.key = key
        self.index = index
        self.members: list[str] = []  # the first MAX_SHOWN_MEMBERS names
        self.n_members = 0
        self.image: tuple[str, bytes] | None = None
        self.cls: bytes | None = None
        self.error: str | None = None

    def result(self, uri: str):
        if self.error is not None:
            return FrameError(uri, self.index, self.error)
        if self.image is None:
            names = ", ".join(_show(m) for m in self.members)
            if self.n_members > len(self.members):
                names += f", ... ({self.n_members} members)"
            return FrameError(uri, self.index, f"sample {_show(self.key)} has no image ({names})")
        name, data = self.image
        try:
            pixels, text = decode_image(data)
        except (ImageDecodeError, LimitExceeded) as exc:
            return FrameError(uri, self.index, f"member {_show(name)}: {exc}")
        label = label_index(self.cls.decode("utf-8", "replace")) if self.cls else None
        if label is None:
            label = label_index(text.get("Aurora class"))
        try:
            t = parse_time(text.get("Image request start"))
        except BadValue as exc:
            return FrameError(uri, self.index, f"member {_show(name)}: {exc}")
        return Frame(
            index=self.index,
            pixels=pixels,
            site=text.get("Site unique ID"),
            time=t,
            label=label,
            meta={"key": safe_text(self.key), "member": safe_text(name)},
        )


def _member_bytes(tf: tarfile.TarFile, member: tarfile.TarInfo) -> bytes | None:
    """The member's data, or None when the shard ends (or breaks) inside it."""
    try:
        data = tf.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, LimitExceeded):
        return None
    return data if len(data) == member.size else None


def _frames(uri: str, storage_options: dict | None):
    with open_stream(uri, storage_options) as (stream, _compressed, _size):
        try:
            # closed with the stream when the generator ends
            tf = tarfile.open(fileobj=stream, mode="r|", tarinfo=_CappedTarInfo)  # noqa: SIM115
        except (tarfile.TarError, EOFError, OSError, LimitExceeded) as exc:
            raise CorruptFile(uri, f"not a tar archive ({exc})") from None
        sample: _Sample | None = None
        count = 0
        members = iter(tf)
        while True:
            try:
                member = next(members)
            except StopIteration:
                break
            except (tarfile.TarError, EOFError, OSError, LimitExceeded) as exc:
                if sample is not None:
                    yield sample.result(uri)
                    count += 1
                    sample = None
                yield FrameError(uri, count, f"truncated or corrupt tar ({exc})")
                return
            if member.isdir():
                continue
            key, ext = split_key(member.name)
            if sample is None or key != sample.key:
                if sample is not None:
                    yield sample.result(uri)
                    count += 1
                if count >= limits.MAX_FRAMES_PER_FILE:
                    yield FrameError(uri, count, f"more than {limits.MAX_FRAMES_PER_FILE} samples")
                    return
                sample = _Sample(key, count)
            sample.n_members += 1
            if len(sample.members) < MAX_SHOWN_MEMBERS:
                sample.members.append(member.name)
            bad = unsafe_reason(member)
            if bad is not None:
                sample.error = sample.error or bad
                continue
            last = ext.rsplit(".", 1)[-1]
            if last in IMAGE_EXTS and sample.image is None:
                if member.size > limits.MAX_IMAGE_BYTES:
                    sample.error = (
                        f"member {_show(member.name)}: {member.size} bytes > MAX_IMAGE_BYTES"
                    )
                    continue
                data = _member_bytes(tf, member)
                if data is None:
                    yield FrameError(
                        uri, count, f"truncated or corrupt tar in {_show(member.name)}"
                    )
                    return
                sample.image = (member.name, data)
            elif last == "cls" and member.size <= MAX_CLS_BYTES:
                sample.cls = _member_bytes(tf, member)
                if sample.cls is None:
                    yield FrameError(
                        uri, count, f"truncated or corrupt tar in {_show(member.name)}"
                    )
                    return
        if sample is not None:
            yield sample.result(uri)
