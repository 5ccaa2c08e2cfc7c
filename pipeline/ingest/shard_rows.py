"""One archive file's encoded rows -> its shard columns and its quarantine record.

Why apart from the ingest driver: these are pure functions of one file's outcome (its frame rows
and problems, `pipeline.ingest.rows.FileOutcome`; the Committer only decides when a file is
complete and where things are written), so they are tested and read on their own.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections import Counter

import numpy as np

from pipeline.codes import store
from pipeline.ingest import frame_meta
from pipeline.messages import clean_text

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def utcnow() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def shard_columns(frames: list, rel: str, uri: str, words: int) -> dict:
    """The DESIGN.md shard columns of one file's frame rows."""
    codes = np.frombuffer(b"".join(r["code"] for r in frames), dtype="<u8")
    return {
        "id": [store.frame_id(rel, r["frame"]) for r in frames],
        "source": [uri] * len(frames),
        "frame": [r["frame"] for r in frames],
        "site": [r["site"] for r in frames],
        "time": [
            None if r["time_us"] is None else _EPOCH + _dt.timedelta(microseconds=r["time_us"])
            for r in frames
        ],
        "code": codes.astype(np.uint64).reshape(len(frames), words),
        "label": [r["label"] for r in frames],
        "pred": [r["pred"] for r in frames],
        "score": np.asarray([r["score"] for r in frames], dtype=np.float32),
        "meta": [r.get("meta") for r in frames],  # optional column: pipeline.ingest.frame_meta
    }


def sequence_gaps(frames: list) -> tuple[int, int]:
    """(gaps, exposures missing) in the mode sequence numbers of one file's frame rows."""
    return frame_meta.sequence_gaps(
        (r["frame"], frame_meta.sequence_of(r.get("meta"))) for r in frames
    )


def quarantine_lines(task, problems: list, more_counts: Counter, cap: int, model12: str) -> bytes:
    """One JSON line per problem, at most `cap`; the rest (problems past the cap, whether
    dropped on arrival, `more_counts`, or found at commit) summed up in one last record:
    frame null, `more` = their exact count, `reasons` = {reason: count}."""
    cap = max(0, cap)
    base = {"file": task.uri, "rel": task.rel, "time": utcnow(), "model": model12}
    lines = [
        json.dumps({**base, "frame": f, "reason": reason}, sort_keys=True)
        for f, reason in problems[:cap]
    ]
    more = Counter(more_counts)
    for _, reason in problems[cap:]:
        more[clean_text(reason, 200)] += 1
    if more:
        n = sum(more.values())
        top = dict(more.most_common(20))
        if len(more) > len(top):
            top["(other reasons)"] = n - sum(top.values())
        rec = {
            **base,
            "frame": None,
            "reason": f"{n} more problems in this file, not listed one by one (the first "
            f"{cap} are above)",
            "more": n,
            "reasons": top,
        }
        lines.append(json.dumps(rec, sort_keys=True))
    return ("\n".join(lines) + "\n").encode()
