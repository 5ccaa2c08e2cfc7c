"""What a run has to do: list the archive, apply --since, and skip the files already done.

The done set is the model's committed shards (`pipeline.codes.catalogue.committed_files`: the
segments' records plus the marked folders' shards); a file modified after its shard was written
is done again (`files_changed`). Cost at archive size: one listing of the archive (os.scandir
locally), one dict entry per file and one FileTask per file to do (benchmarks/RESULTS.md,
"Planning at archive size"). Files
recorded under `_ignored/` (read before and skipped on purpose) are not read again.
"""

from __future__ import annotations

import datetime as _dt
import posixpath
import re
from dataclasses import dataclass, field

from pipeline import storage
from pipeline.codes import catalogue, store
from pipeline.errors import BadInput
from pipeline.ingest.config import SourceOptions
from pipeline.ingest.read import FileTask

_NAME_DATE = re.compile(r"(?<!\d)((?:19|20)\d{2})(\d{2})(\d{2})(?:\d{2}){0,3}(?!\d)")
_PATH_DATE = re.compile(r"(?:^|/)((?:19|20)\d{2})/(\d{2})/(\d{2})(?:/|$)")


def date_from_name(uri: str) -> _dt.date | None:
    """The date an archive file's name (YYYYMMDD[HH[MM]]) or path (YYYY/MM/DD/) states."""
    base = posixpath.basename(str(uri))
    for m in _NAME_DATE.finditer(base):
        try:
            return _dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            continue
    for m in _PATH_DATE.finditer(str(uri)):
        try:
            return _dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            continue
    return None


def _mtime_date(uri: str, storage_options: dict) -> _dt.date | None:
    fs, path, _ = storage.split_uri(uri, storage_options)
    try:
        info = fs.info(path)
    except OSError:
        return None
    t = info.get("mtime") or info.get("LastModified") or info.get("last_modified")
    if t is None:
        return None
    if isinstance(t, int | float):
        return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).date()
    if isinstance(t, _dt.datetime):
        t = t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)
        return t.astimezone(_dt.timezone.utc).date()
    return None


@dataclass
class Plan:
    todo: list[FileTask]
    seen: int
    skipped: int
    prefix: str  # OUT/<model12>
    not_since: int = 0
    ignored: int = 0  # known from an earlier run to be skipped on purpose
    changed: set = field(default_factory=set)  # relpaths re-encoded: the source is newer
    sizes: dict = field(default_factory=dict)  # uri -> bytes (listing), to read small files first


@dataclass
class Listing:
    files: dict  # uri -> modification time (or None), after --since and --out exclusion
    root: str  # the archive root: frame ids and shard names are paths relative to it
    not_since: int = 0
    sizes: dict = field(default_factory=dict)  # uri -> size in bytes (or None), same listing


def list_source(
    source: str, since: _dt.date | None, src_opts: dict, out: str | None = None, out_opts=None
) -> Listing:
    """The archive files under `source` that a run would consider (reads nothing else)."""
    from pipeline.readers import format_of

    for what, uri in (("--source", source), ("--out", out)):
        if uri and "://" in uri and not uri.split("://", 1)[1].strip("/"):
            raise BadInput(f"{what} {uri}: names no bucket or folder")
    fs, src_path, _ = storage.split_uri(source, src_opts)
    if not fs.exists(src_path):
        raise BadInput(f"--source {source}: not found")
    # pipeline.readers.list_archive's listing (the same storage call and filter; a test keeps
    # the two equal), with the sizes that the same single listing gives (to read small first)
    entries = storage.list_entries(source, src_opts, keep=lambda f: format_of(f) is not None)
    files = list(entries)
    root = source if fs.isdir(src_path) else posixpath.dirname(source.rstrip("/"))

    if out:  # never ingest our own output when --out lies inside --source
        _, out_path, out_proto = storage.split_uri(out, out_opts or {})
        out_full = storage.join_uri(out_proto, out_path).rstrip("/") + "/"
        files = [f for f in files if not f.startswith(out_full)]

    not_since = 0
    if since is not None:
        kept = []
        for f in files:
            d = date_from_name(f) or _mtime_date(f, src_opts)
            if d is not None and d < since:
                not_since += 1
                continue
            kept.append(f)
        files = kept
    return Listing(
        {f: entries[f][0] for f in files}, root, not_since, {f: entries[f][1] for f in files}
    )


def plan_files(cfg: SourceOptions, model_id: str, src_opts: dict, out_opts: dict) -> Plan:
    """The files under cfg.source still to do for this model in cfg.out (ingest, and check
    with --out: both pass their own config, the options they share)."""
    listing = list_source(cfg.source, cfg.since, src_opts, cfg.out, out_opts)
    prefix = store.model_prefix(cfg.out, model_id)
    out_root = storage.location(prefix, options=out_opts)
    done = catalogue.committed_files(out_root)  # relpath -> its shard's mtime
    ignored_prefix = store.ignored_uri(cfg.out, "x", model_id)[: -len("/x.json")]
    ignored = set()
    for m in _list_quiet(ignored_prefix, out_opts):
        if m.endswith(".json") and m.startswith(ignored_prefix + "/"):
            ignored.add(m[len(ignored_prefix) + 1 : -len(".json")])
    todo, skipped, n_ignored, changed = [], 0, 0, set()
    base = storage.location(listing.root, options=src_opts).uri + "/"
    for f, mtime in listing.files.items():
        # the listed URIs start with the root's normal form: a slice, not a normalisation each
        fast = f.startswith(base)
        rel = storage.safe_text(f[len(base) :]) if fast else storage.relative_path(f, listing.root)
        if rel in done:
            if not _newer(mtime, done[rel]):
                skipped += 1
                continue
            changed.add(rel)
        elif rel in ignored:
            n_ignored += 1
            continue
        todo.append(FileTask(uri=f, rel=rel))
    return Plan(
        sizes=listing.sizes,  # the listing's own dict: no second one of a million entries
        todo=todo,
        seen=len(listing.files),
        skipped=skipped,
        prefix=prefix,
        not_since=listing.not_since,
        ignored=n_ignored,
        changed=changed,
    )


def _newer(source_mtime: float | None, shard_mtime: float | None) -> bool:
    """The archive file was modified after its shard was written: an archive still being synced
    when an earlier run read it (its missing frames would otherwise be lost for good)."""
    return source_mtime is not None and shard_mtime is not None and source_mtime > shard_mtime


def _list_quiet(uri: str, opts: dict) -> list[str]:
    """Files under a bookkeeping prefix (whose own name starts with _), [] if none."""
    fs, path, protocol = storage.split_uri(uri, opts)
    try:
        return sorted(storage.join_uri(protocol, p) for p in fs.find(path))
    except FileNotFoundError:
        return []


def read_order(plan: Plan) -> list[FileTask]:
    """The files in the order their read tasks start: smallest first (listing sizes; unknown
    sizes last), then by path. Ray Data starts read tasks in this order and the encoders take
    blocks first in, first out, so a huge file read early would put all its rows ahead of the
    files after it; read last, it delays none of them."""
    big = float("inf")
    return sorted(plan.todo, key=lambda t: (plan.sizes.get(t.uri) or big, t.uri))
