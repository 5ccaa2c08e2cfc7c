"""Synthetic labelled all-sky aurora frames and THEMIS-style archive writers.

generate.py renders frames (optics.py: camera; shapes.py: the four classes), writers.py writes
stream0 PGM minute files and 16-bit PNGs, archive.py a whole archive, split.py experiment sets.
"""

from pipeline.synth.archive import FORMATS, write_archive
from pipeline.synth.generate import CLASSES, generate, labels_for, render_frame, resolve_classes
from pipeline.synth.split import split_indices
from pipeline.synth.writers import (
    minute_file_name,
    pgm_minute_bytes,
    png_bytes,
    stream0_dir,
    write_pgm_minute,
    write_png,
)

__all__ = [
    "CLASSES",
    "FORMATS",
    "generate",
    "labels_for",
    "minute_file_name",
    "pgm_minute_bytes",
    "png_bytes",
    "render_frame",
    "resolve_classes",
    "split_indices",
    "stream0_dir",
    "write_archive",
    "write_pgm_minute",
    "write_png",
]
