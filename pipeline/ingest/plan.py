"""What a run has to do: list the archive, apply --since, and skip the files already done.

The done set is the model's committed shards (`pipeline.codes.catalogue.committed_files`: the
segments' records plus the marked folders' shards); a file modified after its shard was written
is done again (`files_changed`). Files recorded under `_ignored/` (read before and skipped on
purpose) are not read again. Cost at archive size: one listing of the archive (os.scandir
locally), kept as columns (`storage.Entries`), matched against the done-set's columns a chunk
of relative paths at a time, and one FileTask per file to do; no Python object per file done
(benchmarks/RESULTS.md, "Planning at archive size").
"""

from __future__ import annotations

import datetime as _dt
import posixpath
import re
from dataclasses import dataclass, field

import numpy as np

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
    entries: storage.Entries  # the archive files in URI order, after --since and --out exclusion
    root: str  # the archive root: frame ids and shard names are paths relative to it
    not_since: int = 0


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
    entries = storage.Location(source, src_opts or {}).list_columns(
        keep=lambda f: format_of(f) is not None
    )
    root = source if fs.isdir(src_path) else posixpath.dirname(source.rstrip("/"))

    rows = range(len(entries.uris))
    if out:  # never ingest our own output when --out lies inside --source
        _, out_path, out_proto = storage.split_uri(out, out_opts or {})
        out_full = storage.join_uri(out_proto, out_path).rstrip("/") + "/"
        rows = [i for i in rows if not entries.uris[i].startswith(out_full)]

    not_since = 0
    if since is not None:
        kept = []
        for i in rows:
            f = entries.uris[i]
            d = date_from_name(f) or _mtime_date(f, src_opts)
            if d is not None and d < since:
                not_since += 1
                continue
            kept.append(i)
        rows = kept
    if len(rows) < len(entries.uris):
        entries = entries.take(rows)
    return Listing(entries, root, not_since)


def plan_files(cfg: SourceOptions, model_id: str, src_opts: dict, out_opts: dict) -> Plan:
    """The files under cfg.source still to do for this model in cfg.out (ingest, and check
    with --out: both pass their own config, the options they share).

    A listed file is skipped when the done-set holds it and it is not newer than its shard,
    redone (`changed`) when it is newer, not read when recorded as ignored, else new. The
    listing is matched against the done-set's columns a chunk at a time (`FileRecords.find`)."""
    listing = list_source(cfg.source, cfg.since, src_opts, cfg.out, out_opts)
    prefix = store.model_prefix(cfg.out, model_id)
    done = catalogue.committed_files(storage.location(prefix, options=out_opts)).records
    ignored = _ignored(cfg.out, model_id, out_opts)
    base = storage.location(listing.root, options=src_opts).uri + "/"
    plan = Plan(todo=[], seen=len(listing.entries.uris), skipped=0, prefix=prefix)
    plan.not_since = listing.not_since
    for a in range(0, len(listing.entries.uris), _CHUNK):
        _plan_chunk(plan, listing, range(a, min(a + _CHUNK, plan.seen)), base, done, ignored)
    return plan


_CHUNK = 65_536  # files matched at a time: bounded memory, one vectorised lookup each


def _plan_chunk(plan: Plan, listing: Listing, rows: range, base: str, done, ignored) -> None:
    """Add the files of these listing rows to the plan (to do, skipped, changed, ignored)."""
    uris = listing.entries.uris[rows.start : rows.stop]
    # the listed URIs start with the root's normal form: a slice, not a normalisation each
    rels = [
        storage.safe_text(f[len(base) :])
        if f.startswith(base)
        else storage.relative_path(f, listing.root)
        for f in uris
    ]
    at = done.find(rels)
    held = at >= 0
    shard_mtime = np.full(len(at), np.nan)  # NaN: not held or unknown, never newer
    shard_mtime[held] = done.mtimes[at[held]]
    mtimes = np.frombuffer(listing.entries.mtimes, np.float64)[rows.start : rows.stop]
    # newer than its shard: an archive still being synced when an earlier run read it (its
    # missing frames would otherwise be lost for good)
    with np.errstate(invalid="ignore"):
        newer = mtimes > shard_mtime
    plan.skipped += int(np.count_nonzero(held & ~newer))
    for i in np.flatnonzero(held & newer).tolist():
        plan.changed.add(rels[i])
    for i in np.flatnonzero(newer | ~held).tolist():
        if not held[i] and rels[i] in ignored:
            plan.ignored += 1
            continue
        plan.todo.append(FileTask(uri=uris[i], rel=rels[i]))
        plan.sizes[uris[i]] = listing.entries.entry(rows.start + i)[1]  # to read small first


def _ignored(out: str, model_id: str, out_opts: dict) -> set[str]:
    """The relative paths recorded under `_ignored/` (read before, skipped on purpose)."""
    ignored_prefix = store.ignored_uri(out, "x", model_id)[: -len("/x.json")]
    found = set()
    for m in _list_quiet(ignored_prefix, out_opts):
        if m.endswith(".json") and m.startswith(ignored_prefix + "/"):
            found.add(m[len(ignored_prefix) + 1 : -len(".json")])
    return found


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
