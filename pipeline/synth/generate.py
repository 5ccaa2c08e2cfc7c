"""Seeded, labelled synthetic all-sky frames: `generate(n, size, seed, classes)`.

Why per-frame seeds: frame i is rendered from `default_rng([seed, 0, i])` and its class from a
balanced block of len(classes) labels drawn from `default_rng([seed, 1, i // len(classes)])`,
so any chunk of the stream (`start=`) reproduces exactly the frames a single call would give.
Ray tasks or processes that each render a slice therefore produce the same archive.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.readers.labels import AURORA_CLASSES
from pipeline.synth import optics, shapes

CLASSES = AURORA_CLASSES  # what the readers' label headers name


def resolve_classes(classes: Sequence[str | int] | None) -> list[int]:
    """Class names or indices -> sorted unique indices into CLASSES (None = all four)."""
    if classes is None:
        return list(range(len(CLASSES)))
    out = set()
    for c in classes:
        if isinstance(c, (int, np.integer)):
            if not 0 <= int(c) < len(CLASSES):
                raise ValueError(f"class index {c} out of range 0..{len(CLASSES) - 1}")
            out.add(int(c))
        elif c in CLASSES:
            out.add(CLASSES.index(c))
        else:
            raise ValueError(f"unknown aurora class {c!r}; known: {', '.join(CLASSES)}")
    if not out:
        raise ValueError("classes must not be empty")
    return sorted(out)


def labels_for(indices: np.ndarray, seed: int, classes: Sequence[str | int] | None = None):
    """Class index (into CLASSES) of each frame index: every aligned block of len(classes)
    consecutive frames holds each class exactly once, in a seeded order."""
    allowed = np.asarray(resolve_classes(classes), dtype=np.int64)
    k = len(allowed)
    indices = np.asarray(indices, dtype=np.int64)
    out = np.empty(len(indices), dtype=np.int64)
    cache: dict[int, np.ndarray] = {}
    for j, i in enumerate(indices):
        b = int(i) // k
        if b not in cache:
            cache[b] = np.random.default_rng([seed, 1, b]).permutation(allowed)
        out[j] = cache[b][int(i) % k]
    return out


def render_frame(index: int, label: int, size: int = 256, seed: int = 0) -> np.ndarray:
    """One uint16 (size, size) frame of class CLASSES[label], determined by (seed, index)."""
    rng = np.random.default_rng([seed, 0, int(index)])
    g = optics.make_geometry(rng, size)
    sky = optics.sky_background(rng, g)
    sky_level = float(np.median(sky[g.rho < 0.5]))
    emission = shapes.SHAPES[CLASSES[label]](rng, g)
    emission += shapes.diffuse_glow(rng, g)
    amp = float(np.clip(np.exp(rng.normal(np.log(1500.0), 0.8)), 150.0, 20000.0))
    signal = (sky + np.float32(amp) * emission) * optics.vignetting(rng, g)
    optics.add_stars(rng, signal, g, sky_level)
    return optics.expose(rng, signal, g)


def generate(
    n: int,
    size: int = 256,
    seed: int = 0,
    classes: Sequence[str | int] | None = None,
    start: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Frames start..start+n-1 of the stream for `seed`: uint16 (n, size, size), int64 (n,).

    Labels index CLASSES (also when `classes` restricts the draw to a subset).
    """
    if n < 0 or start < 0:
        raise ValueError("n and start must be >= 0")
    if size < 16:
        raise ValueError("size must be at least 16")
    idx = np.arange(start, start + n)
    labels = labels_for(idx, seed, classes)
    frames = np.empty((n, size, size), dtype=np.uint16)
    for j, (i, lab) in enumerate(zip(idx, labels, strict=True)):
        frames[j] = render_frame(int(i), int(lab), size, seed)
    return frames, labels
