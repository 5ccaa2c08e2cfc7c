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
from pipeline.codes import pending
from pipeline.codes.segments import SegmentState, SegmentTable
from pipeline.storage import Location

log = logging.getLogger("aurorahash.vacuum")

DEFAULT_GRACE_HOURS = 6.0
TMP_PREFIX = ".tmp-"


def vacuum(root: Location | str, grace_hours: float = DEFAULT_GRACE_HOURS) -> dict:
    """Delete superseded segments, compacted shards and stale temp files under one model root."""
    root = storage.location(root)
    cutoff = time.time() - grace_hours * 3600
    out = {"segment_files_removed": 0, "shards_removed": 0, "temp_files_removed": 0}
    table = SegmentTable(root)
    seg = table.state()
    if seg.version is not None:
        pending.retire(root)  # marks of folders compacted since (logged, not counted here)
        out["segment_files_removed"] = table.vacuum(grace_hours)
        out["shards_removed"] = _remove_compacted_shards(root, seg, cutoff)
    out["temp_files_removed"] = _remove_temp_files(root, cutoff)
    log.info("vacuum %s: %s", root.uri, out)
    return out


def _remove_compacted_shards(root: Location, seg: SegmentState, cutoff: float) -> int:
    entries = pending.list_all_shard_entries(root)  # all of them: compacted ones are not marked
    written = seg.modified
    doomed = []
    rels = [pending.shard_relpath(uri, root.uri) for uri in entries]
    for (uri, (mtime, _)), rec in zip(entries.items(), seg.recorded.lookup(rels), strict=True):
        if rec is None or mtime is None or rec[0] != mtime:
            continue  # not compacted, or rewritten since
        when = written.get(rec[1])
        if when is not None and when <= cutoff:
            doomed.append(uri)
    root.remove_files(doomed)
    return len(doomed)


def _remove_temp_files(root: Location, cutoff: float) -> int:
    def is_temp(uri: str) -> bool:
        return posixpath.basename(uri).startswith(TMP_PREFIX)

    try:
        found = root.list_entries(keep=is_temp, hidden=True)
    except FileNotFoundError:
        return 0
    doomed = [u for u, (m, _) in found.items() if m is not None and m <= cutoff]
    root.remove_files(doomed)
    return len(doomed)
