"""Single image files: PNG, JPEG, TIFF (8- or 16-bit grey, or colour); multi-page TIFF pages.

Why text chunks: the synthetic archive writes 16-bit PNGs with `Aurora class`, `Site unique ID`
and `Image request start` tEXt chunks (pipeline.synth.writers.png_bytes), so a PNG archive keeps
its labels, sites and times without side files; images without them get None.
"""

from __future__ import annotations

from pipeline import storage
from pipeline.readers import limits
from pipeline.readers.base import BadValue, CorruptFile, Frame, FrameError, LimitExceeded
from pipeline.readers.decode import ImageDecodeError, iter_pages, open_image, text_info
from pipeline.readers.labels import label_index
from pipeline.readers.pgm import parse_time
from pipeline.readers.streams import checked_size

SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def read(uri: str, storage_options: dict | None = None):
    """Frames and FrameErrors of one image file (a generator)."""
    return _frames(str(uri), storage_options)


def _frames(uri: str, storage_options: dict | None):
    checked_size(uri, storage_options, "MAX_IMAGE_BYTES")
    try:
        data = storage.read_bytes(uri, storage_options, max_bytes=limits.MAX_IMAGE_BYTES)
        im = open_image(data)
    except (ImageDecodeError, LimitExceeded, ValueError) as exc:
        raise CorruptFile(uri, str(exc)) from None
    fmt = im.format
    text = None
    for k, item in iter_pages(im, limits.MAX_FRAMES_PER_FILE):
        if isinstance(item, Exception):
            if k == 0 and isinstance(item, ImageDecodeError):
                raise CorruptFile(uri, str(item))
            yield FrameError(uri, k, str(item))
            continue
        if text is None:
            text = text_info(im)
        meta = {"format": fmt}
        if "Aurora class" in text:
            meta["label_name"] = text["Aurora class"]
        try:
            t = parse_time(text.get("Image request start"))
        except BadValue as exc:
            yield FrameError(uri, k, f"text chunk 'Image request start': {exc}")
            continue
        yield Frame(
            index=k,
            pixels=item,
            site=text.get("Site unique ID"),
            time=t,
            label=label_index(text.get("Aurora class")),
            meta=meta,
        )
