"""Frames as small PNGs for people: galleries of queries and neighbours, report headers.

Why not `pipeline.model.preprocess`: that is the model's input (masked, resized to the model,
torch); a thumbnail is for eyes. It shows the whole frame with a display stretch in the same spirit:
16-bit counts (or floats) go from a low to a high percentile, then an asinh stretch that keeps faint
aurora visible beside bright arcs; 8-bit images are shown as they are. As in preprocessing, the
levels come from inside the circular field of view: the dark corners of an all-sky frame (a fifth of
the square) would otherwise set the black level and leave the whole sky washed out. NumPy and Pillow
only, so a report never imports torch.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

LOW_PERCENTILE = 5.0  # background (sky), inside the field of view: below it is black
HIGH_PERCENTILE = 99.5  # white: stars and saturated pixels above it are clipped
ASINH_SCALE = 0.3  # softening, as a fraction of the white level (gentler than the model's 0.1:
# on a 132 px tile, 0.1 turns a moonlit sky white; 0.3 keeps arcs and coronae apart from it)
FIELD_OF_VIEW = 0.95  # radius of the disk the levels come from, as a fraction of half a side


def _field_of_view(shape) -> np.ndarray:
    """Boolean (H, W): the disk inscribed in the frame (the sky of an all-sky imager)."""
    h, w = shape[:2]
    yy, xx = np.ogrid[:h, :w]
    r = FIELD_OF_VIEW * min(h, w) / 2
    return (yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2 <= r * r


def display_stretch(pixels: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3|4) pixels of any numeric dtype -> uint8 of the same shape (RGB, no
    alpha). uint8 is returned as is; anything else is stretched with one set of levels."""
    a = np.asarray(pixels)
    if a.ndim == 3:
        a = a[..., :3] if a.shape[-1] >= 3 else a[..., 0]
    if a.ndim not in (2, 3) or a.size == 0:
        raise ValueError(f"cannot make a thumbnail of an array of shape {np.shape(pixels)}")
    if a.dtype == np.uint8:
        return a
    x = a.astype(np.float32)
    sky = x[_field_of_view(x.shape)] if min(x.shape[:2]) >= 8 else x.ravel()
    finite = sky[np.isfinite(sky)]
    if finite.size == 0:
        return np.zeros(a.shape, np.uint8)
    lo, hi = np.percentile(
        finite[:: max(1, finite.size // 250_000)], [LOW_PERCENTILE, HIGH_PERCENTILE]
    )
    x = np.nan_to_num((x - lo) / max(float(hi - lo), 1e-6), nan=0.0)
    np.clip(x, 0.0, 1.0, out=x)
    x = np.arcsinh(x / ASINH_SCALE) / math.asinh(1.0 / ASINH_SCALE)
    return np.round(x * 255.0).astype(np.uint8)


def thumbnail_png(pixels: np.ndarray, size: int = 160) -> bytes:
    """A PNG of the frame, its longer side at most `size` px (never enlarged), display-stretched."""
    img = Image.fromarray(display_stretch(pixels))
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
