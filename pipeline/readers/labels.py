"""Class labels as archives state them -> integer class ids.

Why one rule for all formats: a label arrives as an aurora class name (`#"Aurora class" arc` in a
PGM header, a PNG text chunk, a `.cls` member) or as a number (Parquet `label` columns, `.cls`
members of CIFAR-style shards). Names index AURORA_CLASSES; numbers are kept as they are;
anything else (unknown names, negative or non-integral numbers) is no label (None).
"""

from __future__ import annotations

import numbers

# The auroral forms a label header names, in class-id order (the synthetic generator's classes,
# pipeline.synth.CLASSES, are these).
AURORA_CLASSES = ["arc", "drapery_corona", "radial_corona", "hot_spot"]


def label_index(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value) if value >= 0 else None
    if isinstance(value, numbers.Real):
        return int(value) if value >= 0 and float(value).is_integer() else None
    text = str(value).strip()
    if text in AURORA_CLASSES:
        return AURORA_CLASSES.index(text)
    if text.isdigit() and len(text) < 10:
        return int(text)
    return None
