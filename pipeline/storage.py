"""fsspec access for local paths, file:// and s3:// URIs, with atomic commits.

Why atomic: readers list shard directories while jobs write them; a shard must appear whole or not
at all. Locally we write a hidden temp file and rename it; on S3 a PUT (single or multipart) only
becomes visible when it completes, so we upload the finished bytes in one call.

A `Location` (a URI with the options that reach it) is made once at a job's edge (`location`)
and handed down; the module-level functions below take (uri, storage_options) for the callers
that still carry pairs (readers, reports, synth) and do the same through a Location.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import posixpath
import re
import uuid
from array import array
from dataclasses import dataclass, field

import fsspec

_CRED_ENV = {
    "key": "AWS_ACCESS_KEY_ID",
    "secret": "AWS_SECRET_ACCESS_KEY",
    "token": "AWS_SESSION_TOKEN",
}


class StorageOptions(dict):
    """fsspec options that never print their credentials."""

    def __repr__(self):
        return repr({k: ("***" if k in _CRED_ENV else v) for k, v in self.items()})

    __str__ = __repr__

    def __reduce__(self):
        return (StorageOptions, (dict(self),))


def is_s3(uri) -> bool:
    return str(uri or "").startswith(("s3://", "s3a://"))


def options_for(*uris, endpoint: str | None = None) -> dict:
    """The one builder of storage options, used by every job.

    Empty when none of `uris` is on S3. Otherwise: the endpoint (`endpoint`, else
    $AWS_ENDPOINT_URL), no listing cache (jobs list prefixes that other processes write), and the
    driver's AWS credentials, so that Ray workers on other nodes can use them; never logged.
    """
    if not any(is_s3(u) for u in uris):
        return {}
    endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL")
    opts = StorageOptions(use_listings_cache=False)
    if endpoint:
        opts["client_kwargs"] = {"endpoint_url": endpoint}
    for k, env in _CRED_ENV.items():
        if os.environ.get(env):
            opts[k] = os.environ[env]
    return opts


def endpoint_of(storage_options: dict | None) -> str | None:
    return ((storage_options or {}).get("client_kwargs") or {}).get("endpoint_url")


def delta_options(storage_options: dict | None) -> dict:
    """The same S3 settings for delta-rs (object_store keys) for the segment tables.

    `conditional_put=etag` makes every commit of `_delta_log/N.json` a put-if-absent, so two
    writers cannot both commit version N and no lock service is needed.
    """
    so = storage_options or {}
    out = StorageOptions(conditional_put="etag")
    endpoint = endpoint_of(so) or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        out["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            out["AWS_ALLOW_HTTP"] = "true"
    for k, env in _CRED_ENV.items():
        v = so.get(k) or os.environ.get(env)
        if v:
            out[env] = v
    out["AWS_REGION"] = os.environ.get("AWS_REGION") or os.environ.get(
        "AWS_DEFAULT_REGION", "us-east-1"
    )
    return out


def split_uri(uri: str, storage_options: dict | None = None):
    """(filesystem, path-without-protocol, protocol) for a local path or URI."""
    uri = str(uri)
    fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        path = os.path.abspath(path)
        protocol = "file"
    return fs, path, protocol


def _is_normal(uri: str, local: bool) -> bool:
    """What `Location` would keep as it is: no trailing slash, no empty, . or .. segment
    (local: an absolute path, as os.path.abspath leaves it)."""
    path = uri if local else uri.partition("://")[2]
    return (
        not path.endswith("/")
        and "//" not in path
        and "/./" not in path
        and "/../" not in path
        and not path.endswith(("/.", "/.."))
        and (not local or path.startswith("/"))
    )


def _below(loc: Location, uri: str) -> Location | None:
    """`uri` as a Location on `loc`'s store, made without parsing, when it is already in
    normal form below `loc`; None otherwise."""
    if not (uri.startswith(loc.uri + "/") and _is_normal(uri, loc.is_local)):
        return None
    out = object.__new__(Location)
    object.__setattr__(out, "uri", uri)
    object.__setattr__(out, "options", loc.options)
    return out


def join_uri(protocol: str, path: str) -> str:
    return path if protocol == "file" else f"{protocol}://{path}"


def is_hidden(name: str) -> bool:
    """Names starting with _ or . are bookkeeping (temp files, quarantine), never data."""
    base = posixpath.basename(name.rstrip("/"))
    return base.startswith("_") or base.startswith(".")


def list_files(
    uri: str, storage_options: dict | None = None, suffixes=None, detail=False, keep=None
):
    """Sorted URIs of the files under `uri` (or `uri` itself if it is a file).

    Hidden files and folders (leading _ or .) below `uri` are skipped, and so are URIs for which
    `keep(uri)` is false. With detail=True, a dict {uri: modification time (POSIX seconds, or
    None where the store gives none)} in URI order, from the same single listing (no extra
    request per file).
    """
    found = list_entries(uri, storage_options, suffixes, keep, detail)
    return {u: e[0] for u, e in found.items()} if detail else list(found)


def list_entries(uri: str, storage_options=None, suffixes=None, keep=None, detail=True) -> dict:
    """{uri: (mtime or None, size in bytes or None)} of the files `list_files` lists, sorted
    (`Location.list_entries`)."""
    return _at(uri, storage_options).list_entries(suffixes, keep, detail)


def mtime_of(info: dict | None) -> float | None:
    """Modification time in POSIX seconds from an fsspec info dict (local: mtime; S3:
    LastModified), None if the store reports none."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        v = (info or {}).get(key)
        if isinstance(v, dt.datetime):
            return (v if v.tzinfo else v.replace(tzinfo=dt.timezone.utc)).timestamp()
        if isinstance(v, (int, float)):
            return float(v)
        if isinstance(v, str):
            try:
                return dt.datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


_SURROGATE = re.compile("[\ud800-\udfff]")


def safe_text(name) -> str:
    """`name` as text that always encodes as UTF-8 (Arrow strings, JSON records, logs).

    Why: POSIX file names and tar member names are bytes; Python carries the bytes that are not
    UTF-8 as lone surrogates (os.fsdecode's 'surrogateescape'), which no UTF-8 writer accepts.
    The rule (docs/LIMITS.md): each such byte becomes `%XX` (two upper-case hex digits), so
    b'\\xff\\xfe_20140310.pgm' is carried as '%FF%FE_20140310.pgm'; any other lone surrogate
    becomes `%uXXXX`; bytes objects are decoded the same way. Valid UTF-8 text, '%' included,
    is returned unchanged (so names that were always readable keep their ids).
    """
    if isinstance(name, (bytes, bytearray, memoryview)):
        name = bytes(name).decode("utf-8", "surrogateescape")
    name = str(name)
    if not _SURROGATE.search(name):
        return name

    def esc(m):
        c = ord(m.group(0))
        return f"%{c - 0xDC00:02X}" if 0xDC80 <= c <= 0xDCFF else f"%u{c:04X}"

    return _SURROGATE.sub(esc, name)


def relative_path(uri: str, root_uri: str) -> str:
    """Path of `uri` relative to the archive root (used in stable frame ids), as safe text
    (see safe_text: non-UTF-8 bytes of a name are written %XX)."""
    return safe_text(_relative_path(uri, root_uri))


def _relative_path(uri: str, root_uri: str) -> str:
    a, b = str(uri), str(root_uri).rstrip("/")
    for prefix in ("file://",):
        a = a[len(prefix) :] if a.startswith(prefix) else a
        b = b[len(prefix) :] if b.startswith(prefix) else b
    if "://" not in a:
        a, b = os.path.abspath(a), os.path.abspath(b)
    if a == b:
        return posixpath.basename(a)
    if a.startswith(b + "/"):
        return a[len(b) + 1 :]
    return posixpath.basename(a)


def read_bytes(
    uri: str, storage_options: dict | None = None, max_bytes: int | None = None
) -> bytes:
    return _at(uri, storage_options).read_bytes(max_bytes)


def exists(uri: str, storage_options: dict | None = None) -> bool:
    return _at(uri, storage_options).exists()


def makedirs(uri: str, storage_options: dict | None = None) -> None:
    _at(uri, storage_options).makedirs()


def atomic_write_bytes(uri: str, data: bytes, storage_options: dict | None = None) -> None:
    """Write `data` so that readers see either the old state or the whole new object."""
    _at(uri, storage_options).write_atomic(data)


def remove_if_exists(uri: str, storage_options: dict | None = None) -> None:
    _at(uri, storage_options).remove()


def append_line(uri: str, line: str, storage_options: dict | None = None) -> None:
    """Append one line to a log (`Location.append_line`)."""
    _at(uri, storage_options).append_line(line)


def _remove_paths(fs, paths: list[str]) -> None:
    """Delete `paths` 1,000 a request; one that another process removed first (a concurrent
    retire of pending marks) counts as removed."""
    for i in range(0, len(paths), 1000):
        chunk = paths[i : i + 1000]
        try:
            fs.rm(chunk)
        except FileNotFoundError:  # a local rm of a list stops at the first missing file
            for path in chunk:
                with contextlib.suppress(FileNotFoundError):
                    fs.rm(path)


def _at(uri, storage_options) -> Location:
    """A pair as a Location, its options taken as given (none: fsspec's defaults)."""
    return uri if isinstance(uri, Location) else Location(uri, storage_options or {})


# ------------------------------------------------------------------------------------ Location


def location(uri, *, endpoint: str | None = None, options: dict | None = None) -> Location:
    """The Location of `uri` as a job reaches it: its options from `options_for` (the one
    builder: endpoint, credentials, no listing cache on S3; none locally) unless `options` are
    given. A Location is returned as it is."""
    if isinstance(uri, Location):
        return uri
    return Location(uri, options_for(uri, endpoint=endpoint) if options is None else options)


@dataclass(frozen=True)
class Location:
    """A place in storage: a normalised URI and the fsspec options that reach it.

    Why: storage used to travel as (uri, storage_options) pairs through ~130 functions; one
    value cannot pair a URI with the wrong options, and delta-rs gets its settings from the same
    place (`delta_options`). The URI is normalised once: local paths absolute without
    `file://`, `s3a://` as `s3://`, no trailing slash, so listed URIs start with it. Pickles
    small (URI and options), for Ray tasks.
    """

    uri: str
    options: dict = field(default_factory=dict, hash=False)

    def __post_init__(self):
        opts = self.options
        opts = opts if isinstance(opts, StorageOptions) else StorageOptions(opts or {})
        _, path, protocol = split_uri(self.uri, opts)
        object.__setattr__(self, "options", opts)
        object.__setattr__(self, "uri", join_uri(protocol, path.rstrip("/") or path))

    @property
    def protocol(self) -> str:
        head, sep, _ = self.uri.partition("://")
        return head if sep else "file"

    @property
    def path(self) -> str:
        """The path without protocol, as fsspec and pyarrow filesystems take it."""
        head, sep, rest = self.uri.partition("://")
        return rest if sep else head

    @property
    def is_local(self) -> bool:
        return self.protocol == "file"

    @property
    def fs(self):
        return fsspec.filesystem(self.protocol, **self.options)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def delta_uri(self) -> str:
        """What delta-rs opens: a local path, or the URI."""
        return self.path if self.is_local else self.uri

    @property
    def delta_options(self) -> dict:
        return delta_options(self.options)

    def child(self, *parts: str) -> Location:
        """The location `parts` (joined with /) below this one, with the same options."""
        rel = "/".join(p for p in (str(x).strip("/") for x in parts) if p)
        return self.at(f"{self.uri}/{rel}") if rel else self

    def at(self, uri: str) -> Location:
        """Another location on the same store (e.g. a URI this one listed), same options.
        A URI already in normal form below this one skips fsspec's parsing (compaction makes
        one per shard: it was 12% of its work)."""
        return _below(self, str(uri)) or Location(uri, self.options)

    def exists(self) -> bool:
        return self.fs.exists(self.path)

    def isdir(self) -> bool:
        return self.fs.isdir(self.path)

    def size(self) -> int:
        return self.fs.size(self.path)

    def open(self, mode: str = "rb"):
        return self.fs.open(self.path, mode)

    def read_bytes(self, max_bytes: int | None = None) -> bytes:
        # a local file by plain open: fsspec's per-file overhead doubles a 5 kB shard's read
        with open(self.path, "rb") if self.is_local else self.open("rb") as f:
            data = f.read() if max_bytes is None else f.read(max_bytes + 1)
        if max_bytes is not None and len(data) > max_bytes:
            raise ValueError(f"{self.uri}: larger than the {max_bytes}-byte limit")
        return data

    def write_atomic(self, data: bytes) -> None:
        """Readers see the old state or the whole new object (module docstring)."""
        if self.is_local:
            _replace_local(self.path, data)
        else:
            self.fs.pipe_file(self.path, data)

    def append_line(self, line: str) -> None:
        """Append one line to a log (local), or add it as its own small object (object stores
        cannot append: each record becomes `<uri>.<uuid>` there; readers glob them)."""
        text = line.rstrip("\n") + "\n"
        if not self.is_local:
            self.fs.pipe_file(f"{self.path}.{uuid.uuid4().hex}", text.encode())
            return
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text)

    def makedirs(self) -> None:
        """Create the folder locally (object stores have none to create)."""
        if self.is_local:
            os.makedirs(self.path, exist_ok=True)

    def remove(self) -> None:
        """Delete the object, if it is there."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self.path)

    def remove_files(self, uris: list[str]) -> None:
        """Delete files of this store by URI, 1,000 a request (one S3 DeleteObjects each)."""
        _remove_paths(self.fs, [self.at(u).path for u in uris])

    def subfolders(self) -> list[str]:
        """Sorted names of the folders right below, hidden ones (_ or .) left out."""
        try:
            entries = self.fs.ls(self.path, detail=True)
        except FileNotFoundError:
            return []
        names = [e["name"] for e in entries if e.get("type") == "directory"]
        return sorted(posixpath.basename(n.rstrip("/")) for n in names if not is_hidden(n))

    def list_folder(self, keep=None) -> dict:
        """Like `list_entries`, for the files right inside this folder only ({} if none)."""
        return _list_folder(self, keep)

    def list_entries(self, suffixes=None, keep=None, detail=True, hidden=False) -> dict:
        """{uri: (mtime or None, size or None)} of the files below (or of this file), sorted,
        from one listing. Skips files under hidden names (_ or .) unless `hidden`, files without
        one of `suffixes`, and URIs for which `keep(uri)` is false. FileNotFoundError if absent.
        """
        return self.list_columns(suffixes, keep, detail, hidden).as_dict()

    def list_columns(self, suffixes=None, keep=None, detail=True, hidden=False) -> Entries:
        """The same listing as `Entries` (parallel columns), for callers that hold millions."""
        if self.is_local:
            found = _scan_local(self.path, hidden, detail)
        else:
            found = _scan_remote(self.fs, self.path, hidden, detail)
        out = Entries([], detail=detail)
        for p, entry in found:
            if suffixes and not p.lower().endswith(tuple(suffixes)):
                continue
            u = join_uri(self.protocol, p)
            if keep is None or keep(u):
                out.append(u, entry)
        return out.take(sorted(range(len(out.uris)), key=out.uris.__getitem__))


@dataclass
class Entries:
    """A listing as parallel columns (`Location.list_columns`). Why: at a million files a dict
    {uri: (mtime, size)} costs ~300 bytes a file beside the URI (a tuple, a float, an int and
    its slot); these columns cost 16 (benchmarks/RESULTS.md, "Planning at archive size")."""

    uris: list[str]
    mtimes: array = field(default_factory=lambda: array("d"))  # POSIX s; NaN: none given
    sizes: array = field(default_factory=lambda: array("q"))  # bytes; -1: none given
    detail: bool = True  # False: names only (mtimes and sizes stay empty)

    def append(self, uri: str, entry) -> None:
        self.uris.append(uri)
        if self.detail:
            mtime, size = entry
            self.mtimes.append(math.nan if mtime is None else mtime)
            self.sizes.append(-1 if size is None else int(size))

    def entry(self, i: int):
        """(mtime or None, size or None) of row i, as `list_entries` gives it (None: no
        detail)."""
        if not self.detail:
            return None
        m, size = self.mtimes[i], self.sizes[i]
        return (None if math.isnan(m) else m, None if size < 0 else size)

    def take(self, rows) -> Entries:
        """These rows (indices), in this order."""
        out = Entries([self.uris[i] for i in rows], detail=self.detail)
        if self.detail:
            out.mtimes = array("d", (self.mtimes[i] for i in rows))
            out.sizes = array("q", (self.sizes[i] for i in rows))
        return out

    def as_dict(self) -> dict:
        return {u: self.entry(i) for i, u in enumerate(self.uris)}


def _list_folder(loc: Location, keep=None) -> dict:
    """{uri: (mtime, size)} of the files right inside `loc` (not below), hidden names skipped,
    sorted. One listing (S3: one delimited List request a 1,000 keys), never a cached one."""
    try:
        found = loc.fs.ls(loc.path, detail=True, refresh=True)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    out = {}
    for info in found:
        name = info["name"].rstrip("/")
        if info.get("type") != "file" or is_hidden(posixpath.basename(name)):
            continue
        u = join_uri(loc.protocol, name)
        if keep is None or keep(u):
            out[u] = (mtime_of(info), info.get("size"))
    return dict(sorted(out.items()))


def _scan_local(path: str, hidden: bool, detail: bool):
    """(path, (mtime, size) or None) of the files below a local folder (or the file itself):
    os.scandir, one stat a file and none for folders; hidden names are pruned as folders, not
    tested on every file's every path component (1M files: ~8x faster than fsspec's find)."""
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    if not os.path.isdir(path):
        st = os.stat(path)
        yield path, ((float(st.st_mtime), st.st_size) if detail else None)
        return
    stack = [path]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if not hidden and e.name[:1] in "_.":
                    continue
                try:
                    is_dir = e.is_dir()
                except OSError:  # a symlink loop: listed, and the reader says why it is bad
                    is_dir = False
                if is_dir:
                    stack.append(e.path)
                    continue
                if not detail:
                    yield e.path, None
                    continue
                try:
                    st = e.stat()
                except FileNotFoundError:  # deleted while listed
                    continue
                except OSError:  # a symlink loop (ELOOP): the link's own stat, as fsspec gave
                    st = e.stat(follow_symlinks=False)
                yield e.path, (float(st.st_mtime), st.st_size)


def _scan_remote(fs, path: str, hidden: bool, detail: bool):
    """The same from fsspec's recursive listing (S3: one List request per 1,000 keys); the
    hidden test runs once per folder."""
    if not fs.exists(path):
        raise FileNotFoundError(path)
    if fs.isfile(path):
        found = {path: fs.info(path) if detail else None}
    else:
        found = fs.find(path, detail=True) if detail else dict.fromkeys(fs.find(path))
    hidden_dir: dict[str, bool] = {}
    for p, info in found.items():
        rel = p[len(path) :].lstrip("/") if p.startswith(path) else p
        if not hidden and rel:
            folder, _, name = rel.rpartition("/")
            if folder not in hidden_dir:
                hidden_dir[folder] = any(is_hidden(part) for part in folder.split("/") if part)
            if hidden_dir[folder] or is_hidden(name):
                continue
        yield p, ((mtime_of(info), (info or {}).get("size")) if detail else None)


def _replace_local(path: str, data: bytes) -> None:
    """Write a hidden temp file beside `path`, fsync it and rename it over `path`."""
    d = os.path.dirname(path)
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, f".tmp-{uuid.uuid4().hex}-{os.path.basename(path)}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
