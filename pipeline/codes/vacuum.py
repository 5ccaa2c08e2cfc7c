"""Vacuum: delete what compaction superseded, once no reader can still need it.

Three kinds of garbage under `OUT/<model12>`:
- segment files that a later commit removed, and orphan files of killed compactions
  (Delta `vacuum`, full mode, older than the grace period);
- per-file shards whose rows the segments hold, in segments written more than the grace period
  ago (a reader that listed the shards before that compaction may still be reading them);
- temp files of killed atomic writes (`.tmp-*`, older than the grace period).

A shard is deleted only while it is still the one that was compacted (same modification time).
If ingest rewrites it in the window between that check and the delete, the archive file is newer
than the recorded shard, so the next ingest run reads it again: nothing is lost for good.
"""

from __future__ import annotations

import logging
import posixpath
import time

from pipeline import storage
from pipeline.codes import catalogue

log = logging.getLogger("aurorahash.vacuum")

DEFAULT_GRACE_HOURS = 6.0
TMP_PREFIX = ".tmp-"


def vacuum(root: str, so: dict | None = None, grace_hours: float = DEFAULT_GRACE_HOURS) -> dict:
    """Delete superseded segments, compacted shards and stale temp files under one model root."""
    so = so or {}
    cutoff = time.time() - grace_hours * 3600
    out = {"segment_files_removed": 0, "shards_removed": 0, "temp_files_removed": 0}
    seg = catalogue.read_segments(root, so)
    if seg.version is not None:
        out["segment_files_removed"] = _vacuum_table(root, so, grace_hours)
        out["shards_removed"] = _remove_compacted_shards(root, so, seg, cutoff)
    out["temp_files_removed"] = _remove_temp_files(root, so, cutoff)
    log.info("vacuum %s: %s", root, out)
    return out


def _vacuum_table(root: str, so: dict, grace_hours: float) -> int:
    from deltalake import DeltaTable

    dt = DeltaTable(
        catalogue.delta_uri(catalogue.table_uri(root)), storage_options=storage.delta_options(so)
    )
    removed = dt.vacuum(
        retention_hours=int(grace_hours),
        dry_run=False,
        enforce_retention_duration=False,
        full=True,
    )
    if dt.version() % 10 == 0:
        dt.create_checkpoint()
    return len(removed)


def _remove_compacted_shards(root: str, so: dict, seg, cutoff: float) -> int:
    entries = catalogue.list_shard_entries(root, so)
    doomed = []
    for uri, (mtime, _) in entries.items():
        rec = seg.recorded.get(catalogue.shard_relpath(uri, root))
        if rec is None or mtime is None or rec[0] != mtime:
            continue  # not compacted, or rewritten since
        written = seg.modified.get(rec[1])
        if written is not None and written <= cutoff:
            doomed.append(uri)
    _remove(doomed, so)
    return len(doomed)


def _remove_temp_files(root: str, so: dict, cutoff: float) -> int:
    fs, path, protocol = storage.split_uri(root, so)
    try:
        found = fs.find(path, detail=True)
    except FileNotFoundError:
        return 0
    doomed = []
    for p, info in found.items():
        if posixpath.basename(p).startswith(TMP_PREFIX):
            m = storage.mtime_of(info)
            if m is not None and m <= cutoff:
                doomed.append(storage.join_uri(protocol, p))
    _remove(doomed, so)
    return len(doomed)


def _remove(uris: list[str], so: dict) -> None:
    if not uris:
        return
    fs, _, _ = storage.split_uri(uris[0], so)
    paths = [storage.split_uri(u, so)[1] for u in uris]
    for i in range(0, len(paths), 1000):
        fs.rm(paths[i : i + 1000])
