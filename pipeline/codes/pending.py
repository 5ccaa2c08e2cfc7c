"""Pending marks: which folders of a model root may hold shards that are not yet compacted.

Why: compaction leaves the shards it consumed on storage for the grace period (a reader that
listed them before the commit may still read them), so a catalogue that lists every shard pays
for all of them: 50,000 compacted minute shards cost 1.4 s of listing on each open. With marks,
the catalogue, compaction's plan and ingest's done-set list only the marked folders: their cost
is O(pending shards), not O(shards compacted but not yet vacuumed).

Layout under `OUT/<model12>/`:

    _pending/FORMAT                   written once; from then on the marks are authoritative
    _pending/<folder>/<uuid>.mark     an empty object: `<folder>` (the shards' folder relative
                                      to the root; "" for the root) may hold pending shards

Rules (docs/INTERFACES.md, "Pending marks"):
- a writer writes a folder's mark after the shards it covers (ingest: every 256 files, every
  few seconds and at the end), under a new name each time; a shard is visible once a mark of
  its folder exists, or once the segments hold it. A run killed between the two leaves shards
  that nobody sees and that ingest redoes (the archive file is not in the done-set);
- `retire` deletes the marks it listed of a folder whose every shard, listed after those marks,
  the segments hold with the same modification time. A shard written after that listing comes
  with a mark retire did not list, so a mark is never deleted while a shard it covers is pending;
- a root without FORMAT (written before marks existed, or by `pipeline.synth` without marks) is
  listed whole, as before; `adopt` (the first marking writer) marks the folders that hold pending
  shards, then writes FORMAT.
"""

from __future__ import annotations

import json
import logging
import posixpath
import threading
import time
import uuid

from pipeline import storage
from pipeline.codes import store
from pipeline.codes.segments import SegmentTable
from pipeline.storage import Location

log = logging.getLogger("aurorahash.pending")

MARKS_DIR = "_pending"
FORMAT = "FORMAT"
MARK_SUFFIX = ".mark"

_adopted: set[str] = set()  # roots this process has seen adopted (FORMAT is there)
_adopt_lock = threading.Lock()


def folder_of(rel: str) -> str:
    """The folder of an archive relative path: where its shard lies below the root."""
    return posixpath.dirname(rel)


def is_marked_root(root: Location) -> bool:
    """Whether the marks are authoritative for this root (its FORMAT exists)."""
    return root.child(MARKS_DIR, FORMAT).exists()


def list_marks(root: Location) -> dict[str, list[str]]:
    """{folder: [mark uris]} of the marks under `root` (one listing of `_pending/`)."""
    marks = root.child(MARKS_DIR)
    try:
        found = marks.list_entries(keep=lambda u: u.endswith(MARK_SUFFIX), detail=False)
    except FileNotFoundError:
        return {}
    out: dict[str, list[str]] = {}
    for uri in found:
        out.setdefault(folder_of(uri[len(marks.uri) + 1 :]), []).append(uri)
    return out


def list_all_shard_entries(root: Location) -> dict:
    """{shard uri: (mtime, size)} of every shard under `root` (one recursive listing; hidden
    folders skipped): what vacuum and `adopt` need, and all that a root without FORMAT has."""
    try:
        return root.list_entries(keep=lambda u: u.endswith(store.SHARD_SUFFIX))
    except FileNotFoundError:
        return {}


def candidate_entries(root: Location) -> dict:
    """{shard uri: (mtime, size)} of the shards that may be pending: those in marked folders
    (O(pending)), or every shard where the marks are not authoritative (no FORMAT)."""
    if not is_marked_root(root):
        return list_all_shard_entries(root)
    return folder_entries(root, list_marks(root))


def shard_relpath(shard: str, root: str) -> str:
    """The archive relative path a shard holds (its path below the root, less `.parquet`)."""
    if shard.rstrip("/") == str(root).rstrip("/"):
        return posixpath.basename(shard)[: -len(store.SHARD_SUFFIX)]
    return store.relpath_of_shard(shard, root)


def pending_shards(root: str, entries: dict, recorded):
    """Shards not (or no longer) in the segments, and the files whose segment rows they mask.
    `entries`: {shard uri: (mtime, size)}; `recorded`: the segments' `FileRecords` (matched
    in one vectorised lookup)."""
    pending, drops = {}, set()
    rels = [shard_relpath(s, root) for s in entries]
    for (s, (mtime, size)), rel, rec in zip(
        entries.items(), rels, recorded.lookup(rels), strict=True
    ):
        if rec is not None and (mtime is None or rec[0] == mtime):
            continue  # compacted, and not rewritten since
        pending[s] = (rel, mtime, size)
        if rec is not None:
            drops.add(rel)
    return pending, drops


def folder_entries(root: Location, folders) -> dict:
    """{shard uri: (mtime, size)} of the shards right inside these folders (one listing each,
    not recursive: a subfolder's shards have marks of their own)."""
    out = {}
    for folder in sorted(set(folders)):
        out.update(root.child(folder).list_folder(keep=lambda u: u.endswith(store.SHARD_SUFFIX)))
    return dict(sorted(out.items()))


def mark(root: Location, rels) -> int:
    """Record that the shards of `rels` (archive relative paths, already written) may be
    pending: one new mark per folder. Adopts a root without FORMAT first. Returns the count."""
    adopt(root)
    folders = sorted({folder_of(r) for r in rels})
    for folder in folders:
        _write_mark(root, folder)
    return len(folders)


def _write_mark(root: Location, folder: str) -> None:
    root.child(MARKS_DIR, folder, f"{uuid.uuid4().hex}{MARK_SUFFIX}").write_atomic(b"")


def adopt(root: Location) -> None:
    """Make the marks authoritative for `root`: mark every folder that holds a shard the
    segments do not hold (one full listing, once in the life of a root), then write FORMAT."""
    with _adopt_lock:
        if root.uri in _adopted:
            return
        if not is_marked_root(root):
            recorded = SegmentTable(root).state().recorded
            entries = list_all_shard_entries(root)
            pending, _ = pending_shards(root.uri, entries, recorded)
            folders = {folder_of(rel) for rel, _, _ in pending.values()}
            for folder in sorted(folders):
                _write_mark(root, folder)
            doc = {"version": 1, "adopted": time.time(), "folders_marked": len(folders)}
            root.child(MARKS_DIR, FORMAT).write_atomic(json.dumps(doc).encode())
            log.info("pending marks: adopted %s (%d folders marked)", root.uri, len(folders))
        _adopted.add(root.uri)


def retire(root: Location | str) -> dict:
    """Delete the marks of folders whose shards the segments all hold (see the module rules).
    Safe at any time, beside ingest and compaction; returns what it did."""
    root = storage.location(root)
    out = {"folders": 0, "marks_removed": 0}
    if not is_marked_root(root):
        return out
    marks = list_marks(root)  # first the marks, then the shards they cover
    if not marks:
        return out
    recorded = SegmentTable(root).state().recorded
    entries = folder_entries(root, marks)
    pending, _ = pending_shards(root.uri, entries, recorded)
    busy = {folder_of(rel) for rel, _, _ in pending.values()}
    doomed = [u for f, uris in marks.items() if f not in busy for u in uris]
    root.remove_files(doomed)
    out.update(folders=len(marks) - len(busy & set(marks)), marks_removed=len(doomed))
    log.info("pending marks of %s: %s", root.uri, out)
    return out


class MarkBuffer:
    """Ingest's marks: shards written are marked in batches (every `every` files or `seconds`,
    and on `flush`), so marks cost a small fraction of the shard writes. Thread-safe."""

    def __init__(self, root: Location, every: int = 256, seconds: float = 5.0):
        self.root, self.every, self.seconds = root, every, seconds
        self.lock = threading.Lock()
        self.rels: set[str] = set()
        self.last = time.monotonic()

    def add(self, rel: str) -> None:
        """A shard of `rel` was written; mark it (and those before it) when a batch is due."""
        with self.lock:
            self.rels.add(rel)
            due = len(self.rels) >= self.every or time.monotonic() - self.last >= self.seconds
        if due:
            self.flush()

    def flush(self) -> None:
        """Mark every shard added so far. On failure the shards stay buffered (and raise)."""
        with self.lock:
            rels, self.rels = self.rels, set()
            self.last = time.monotonic()
        if not rels:
            return
        try:
            mark(self.root, rels)
        except Exception:
            with self.lock:
                self.rels |= rels
            raise
