"""Query frames given as files: read and encoded exactly as ingest reads and encodes them.

Why ingest's path: a query's code must be the code ingest stored for the same frame, so that a frame
of the archive finds itself at distance 0. Files go through ingest's read task and preprocessing
(`pipeline.ingest.local_read.read_archive`), the model inputs through the one encode step
(`pipeline.ingest.encode_actor.HashEncoder.encode`, the checkpoint's encode settings), which also
gives the predicted class and its probability as ingest stores them.

    q = encode_images(["night/x.pgm.gz#3", "s3://bucket/y.png"], checkpoint, storage_options)
    q.codes (n, words) uint64; q.ids ("night/x.pgm.gz#3"); q.sources, q.frames, q.pred, q.score

A spec is any file the readers take, optionally with `#N` for one frame of a multi-frame file
(a THEMIS minute file holds 20); without it every frame of the file is a query.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.errors import BadInput

ENCODE_BATCH = 256


@dataclass
class ImageQueries:
    codes: np.ndarray  # (n, words) uint64
    ids: list[str]  # "<file as given>#<frame>"
    sources: list[str]
    frames: list[int]
    pred: np.ndarray  # (n,) int16
    score: np.ndarray  # (n,) float32


def parse_spec(spec: str) -> tuple[str, int | None]:
    """'x.pgm.gz#3' -> ('x.pgm.gz', 3); 'x.png' -> ('x.png', None)."""
    base, sep, index = str(spec).rpartition("#")
    if sep and base and index.isdigit():
        return base, int(index)
    return str(spec), None


def _why_unreadable(uri: str, frame: int, storage_options) -> str:
    """The readers' reason a frame gave no model input (read_archive only logs it)."""
    from pipeline.readers import FrameError, read_frames, reason_for

    seen = -1
    try:
        for item in read_frames(uri, storage_options):
            if item.index == frame:
                if isinstance(item, FrameError):
                    return item.reason
                return "preprocessing rejected it (see the log)"
            seen = max(seen, -1 if item.index is None else item.index)
    except Exception as exc:  # the file as a whole: the readers' verdict
        return reason_for(exc)
    return f"no such frame (the file has {seen + 1})"


def read_inputs(spec: str, preprocess: dict, storage_options=None):
    """(model inputs (n, C, S, S), frame indices) of one spec; BadInput names file and reason."""
    from pipeline.ingest.local_read import read_archive

    uri, frame = parse_spec(spec)
    try:
        got = read_archive(uri, preprocess, storage_options)
    except BadInput as exc:
        raise BadInput(f"--image {spec}: {exc}") from None
    if len({i.rsplit("#", 1)[0] for i in got.ids}) > 1:
        raise BadInput(f"--image {spec}: a folder of several files; name the files")
    frames = [int(i.rsplit("#", 1)[1]) for i in got.ids]
    if frame is None:
        if not frames:
            raise BadInput(
                f"--image {spec}: no readable frame ({_why_unreadable(uri, 0, storage_options)})"
            )
        return got.x, frames
    if frame not in frames:
        why = _why_unreadable(uri, frame, storage_options)
        raise BadInput(f"--image {spec}: frame {frame} cannot be used: {why}")
    j = frames.index(frame)
    return got.x[j : j + 1], [frame]


def encode_images(specs: list[str], checkpoint, storage_options=None) -> ImageQueries:
    """Codes of the frames named by `specs` under `checkpoint` (the job's
    `pipeline.model.checkpoint.Checkpoint`, opened once)."""
    from pipeline.ingest.encode_actor import HashEncoder

    xs, ids, sources, frames = [], [], [], []
    for spec in specs:
        x, idx = read_inputs(spec, checkpoint.preprocess, storage_options)
        uri = parse_spec(spec)[0]
        new = [j for j, i in enumerate(idx) if f"{uri}#{i}" not in ids]  # each frame once
        xs.append(x[new])
        ids += [f"{uri}#{idx[j]}" for j in new]
        sources += [uri] * len(new)
        frames += [idx[j] for j in new]
    x = np.concatenate(xs)
    enc = HashEncoder(checkpoint, device="cpu")
    parts = [enc.encode(x[i : i + ENCODE_BATCH]) for i in range(0, len(x), ENCODE_BATCH)]
    codes, pred, score = (np.concatenate(p) for p in zip(*parts, strict=True))
    return ImageQueries(codes, ids, sources, frames, pred, score)
