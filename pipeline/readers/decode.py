"""Encoded image bytes (PNG / JPEG / TIFF) -> pixel arrays, with bounds, via Pillow.

Why one place: image files, Parquet cells and tar members all hold encoded images, and each must
get the same guards: only the three formats we ingest are parsed, the declared size is checked
against limits.MAX_DIM / MAX_PIXELS before any pixel is decoded (Pillow's own decompression-bomb
check is turned into an error too), and modes map onto the Frame contract: (H, W) uint16 or
uint8 grey, (H, W, 3) uint8 colour.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageSequence

from pipeline.readers import limits
from pipeline.readers.base import LimitExceeded

FORMATS = ("PNG", "JPEG", "TIFF")
TEXT_KEYS = ("Aurora class", "Site unique ID", "Image request start")


class ImageDecodeError(Exception):
    pass


def open_image(data: bytes) -> Image.Image:
    """Parse the header only; raises ImageDecodeError / LimitExceeded."""
    if len(data) > limits.MAX_IMAGE_BYTES:
        raise LimitExceeded(f"encoded image of {len(data)} bytes > limits.MAX_IMAGE_BYTES")
    if not data:
        raise ImageDecodeError("empty image data")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise LimitExceeded(f"decompression bomb guard: {exc}") from None
    except Exception as exc:
        raise ImageDecodeError(f"not a PNG/JPEG/TIFF image ({type(exc).__name__}: {exc})") from None
    check_size(im.size[0], im.size[1])
    return im


def check_size(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"declared size {width}x{height} is empty")
    if width > limits.MAX_DIM or height > limits.MAX_DIM or width * height > limits.MAX_PIXELS:
        raise LimitExceeded(
            f"declared size {width}x{height} exceeds the limit "
            f"({limits.MAX_DIM} per side, {limits.MAX_PIXELS} pixels)"
        )


def to_array(im: Image.Image) -> np.ndarray:
    """Decode the current frame of `im` to the Frame pixel contract."""
    check_size(im.size[0], im.size[1])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise LimitExceeded(f"decompression bomb guard: {exc}") from None
    except Exception as exc:
        raise ImageDecodeError(f"cannot decode image data ({type(exc).__name__}: {exc})") from None
    mode = im.mode
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16)
    if mode == "I":
        a = np.asarray(im)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise ImageDecodeError("32-bit integer image outside the 16-bit range")
        return a.astype(np.uint16)
    if mode == "L":
        return np.asarray(im, dtype=np.uint8)
    if mode in ("1", "LA"):
        return np.asarray(im.convert("L"), dtype=np.uint8)
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8)
    if mode in ("RGBA", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        return np.asarray(im.convert("RGB"), dtype=np.uint8)
    raise ImageDecodeError(f"unsupported image mode {mode!r}")


def decode_image(data: bytes) -> tuple[np.ndarray, dict]:
    """First (or only) frame of an encoded image, and its text metadata (PNG tEXt chunks)."""
    im = open_image(data)
    return to_array(im), text_info(im)


def iter_pages(im: Image.Image, max_pages: int):
    """Each page of a (possibly multi-page) image as an array, or the exception it raised."""
    pages = ImageSequence.Iterator(im)
    k = 0
    while True:
        try:
            page = next(pages)
        except StopIteration:
            return
        except Exception as exc:  # a broken page directory: stop here
            yield k, ImageDecodeError(f"cannot seek to page {k} ({type(exc).__name__}: {exc})")
            return
        if k >= max_pages:
            yield k, LimitExceeded(f"more than {max_pages} pages")
            return
        try:
            yield k, to_array(page)
        except (ImageDecodeError, LimitExceeded) as exc:
            yield k, exc
        k += 1


def text_info(im: Image.Image) -> dict:
    """PNG text chunks we use (Pillow decodes the image to reach chunks after the pixels, so a
    broken image simply has none)."""
    try:
        info = getattr(im, "text", None) or {}
    except Exception:
        return {}
    return {k: str(v) for k, v in info.items() if k in TEXT_KEYS}
