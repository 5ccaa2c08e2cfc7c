"""Per-frame header values that travel from the readers into the shards' optional `meta` column.

Why: a THEMIS stream0 frame header says more than the exposure start: the mode sequence number
counts up by one per exposure (a jump means the camera dropped frames), and the readout start
and exposure options say how the frame was taken; an ASF CDF gives the exposure end. Users need
these beside the codes, so each frame keeps them as one JSON text (null when a frame has none of
them), leaving the DESIGN.md shard columns as they are. Shards and segments written before the
column existed lack it; every reader treats that as null (`pipeline.codes.store.OPTIONAL_COLUMNS`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

KEYS = ("sequence", "readout_start", "exposure_options", "exposure_end")  # from Frame.meta


def to_json(meta: dict | None) -> str | None:
    """The kept values of a reader's `Frame.meta` as compact JSON; None if it has none."""
    kept = {k: meta[k] for k in KEYS if meta and meta.get(k) is not None}
    return json.dumps(kept, sort_keys=True, separators=(",", ":")) if kept else None


def sequence_of(text: str | None) -> int | None:
    """The mode sequence number in a `meta` JSON text, None when absent or not an integer."""
    if not text:
        return None
    try:
        v = json.loads(text).get("sequence")
    except (ValueError, AttributeError):
        return None
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def sequence_gaps(frames: Iterable[tuple[int, int | None]]) -> tuple[int, int]:
    """(gaps, exposures missing) in one file's mode sequence numbers.

    `frames`: (frame index, sequence number or None) of the frames read. Between two numbered
    frames the number should rise by as much as the index does (frames that the reader
    rejected have an index but no row, and are quarantined, not counted here); any other step
    is a gap, and a rise by more counts the extra numbers as exposures missing (dropped by the
    camera). A counter that restarts or goes back is a gap with nothing counted as missing.
    """
    numbered = sorted((i, s) for i, s in frames if s is not None)
    gaps = missing = 0
    for (i0, s0), (i1, s1) in zip(numbered, numbered[1:], strict=False):
        extra = (s1 - s0) - (i1 - i0)
        if extra:
            gaps += 1
            missing += max(0, extra)
    return gaps, missing
