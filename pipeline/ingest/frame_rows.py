"""Raw frames in read rows, and the one step that turns such rows into model inputs.

Why: read tasks only decode (gunzip, parse) and pass frames on as read, uint16 staying uint16,
so that the arithmetic of preprocessing runs where the model runs, on the encoder actor's device
(the GPU where there is one), and the CPUs are left to reading. `model_inputs` is that step:
ingest's `HashEncoder` runs it on its device, the training datasets and `check` on the CPU, so a
frame's training input is its ingest input (tests/test_encode_parity.py).

Columns of `pipeline.ingest.read.ROW_SCHEMA` that carry a frame (null / empty on other rows):
    pixels  binary         the frame's bytes, C order, in the byte order `dtype` states
    shape   list<int32>    (H, W) or (H, W, C)
    dtype   string         NumPy dtype string, e.g. "<u2"
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipeline.ingest.rows import RowKind

PIXEL_FIELDS = [
    pa.field("pixels", pa.binary()),
    pa.field("shape", pa.list_(pa.int32())),
    pa.field("dtype", pa.string()),
]
PIXEL_COLUMNS = [f.name for f in PIXEL_FIELDS]


def pixel_columns(frames: list[np.ndarray | None]) -> list[pa.Array]:
    """The pixel columns for rows holding these frames (None: a row without one); one copy of
    the pixels, into the Arrow buffer."""
    sizes = np.array([0 if a is None else a.nbytes for a in frames], dtype=np.int64)
    offsets = np.zeros(len(frames) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    if offsets[-1] >= 2**31:
        raise ValueError(f"{offsets[-1]} bytes of pixels in one block (at most 2 GiB)")
    data = np.empty(int(offsets[-1]), dtype=np.uint8)
    for a, start, size in zip(frames, offsets[:-1], sizes, strict=True):
        if size:
            data[start : start + size] = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    pixels = pa.Array.from_buffers(
        pa.binary(),
        len(frames),
        [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)],
    )
    shape = pa.array([None if a is None else list(a.shape) for a in frames], pa.list_(pa.int32()))
    dtype = pa.array([None if a is None else a.dtype.str for a in frames], pa.string())
    return [pixels, shape, dtype]


def frame_arrays(table: pa.Table, rows) -> list[np.ndarray]:
    """The frames of `rows` of a table with the pixel columns, as read-only views of its buffer
    (ValueError for a row whose bytes do not match its shape and dtype)."""
    col = table.column("pixels")
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    off = np.frombuffer(col.buffers()[1], dtype=np.int32)[col.offset : col.offset + len(col) + 1]
    data = col.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    shapes = table.column("shape").to_pylist()
    dtypes = table.column("dtype").to_pylist()
    out = []
    for i in rows:
        shape, dtype = tuple(shapes[i] or ()), np.dtype(dtypes[i] or "u1")
        a, b = int(off[i]), int(off[i + 1])
        if not shape or b - a != int(np.prod(shape)) * dtype.itemsize:
            raise ValueError(f"row {i}: {b - a} bytes of pixels for shape {shape} of {dtype}")
        out.append(raw[a:b].view(dtype).reshape(shape))
    return out


def frame_row_indices(table: pa.Table) -> np.ndarray:
    """The rows of a read block that carry a frame (RowKind.FRAME), ascending."""
    kind = np.asarray(table.column("kind").to_pylist(), dtype=object)
    return np.flatnonzero(kind == RowKind.FRAME.value)


@dataclass
class ModelInputs:
    x: object  # torch.Tensor (m, C, S, S) float32 on the device: the inputs of `rows`
    rows: np.ndarray  # (m,) the table rows that x holds, ascending
    errors: dict  # table row -> reason, for frame rows that preprocessing rejected


def model_inputs(table: pa.Table, cfg, device="cpu", rows=None) -> ModelInputs:
    """Model inputs of the frame rows of a read block (or of `rows` of them), through
    `pipeline.model.preprocess.preprocess_frames` on `device`. A frame whose preprocessing fails or
    gives non-finite values is an error (quarantined downstream), not an exception."""
    import torch

    from pipeline.model.preprocess import preprocess_frames

    if rows is None:
        rows = frame_row_indices(table)
    rows = np.asarray(rows, dtype=np.int64)
    errors: dict[int, str] = {}
    try:
        x = preprocess_frames(frame_arrays(table, rows), cfg, device)
    except Exception:  # one bad frame must not take the block down: frame by frame
        x, rows = _one_by_one(table, rows, cfg, device, errors)
    finite = torch.isfinite(x).flatten(1).all(1).cpu().numpy() if len(rows) else np.ones(0, bool)
    for i in rows[~finite]:
        errors[int(i)] = "preprocess: non-finite values after preprocessing"
    if not finite.all():
        x, rows = x[torch.from_numpy(finite).to(x.device)], rows[finite]
    return ModelInputs(x, rows, errors)


def with_errors(table: pa.Table, errors: dict) -> pa.Table:
    """The table with the rows of `errors` (row -> reason) turned into error rows (what the
    encoder actors send on for frames that preprocessing rejected)."""
    if not errors:
        return table
    kind = table.column("kind").to_pylist()
    reason = table.column("reason").to_pylist()
    for i, why in errors.items():
        kind[i], reason[i] = RowKind.ERROR.value, why
    i = table.schema.get_field_index("kind")
    table = table.set_column(i, "kind", pa.array(kind, pa.string()))
    i = table.schema.get_field_index("reason")
    return table.set_column(i, "reason", pa.array(reason, pa.string()))


def _one_by_one(table, rows, cfg, device, errors):
    import torch

    from pipeline.model.preprocess import preprocess_frames

    xs, kept = [], []
    for i in rows:
        try:
            xs.append(preprocess_frames(frame_arrays(table, [i]), cfg, device))
        except Exception as exc:
            errors[int(i)] = f"preprocess: {exc}"
        else:
            kept.append(i)
    shape = (0, cfg.channels, cfg.size, cfg.size)
    x = torch.cat(xs) if xs else torch.zeros(shape, device=torch.device(device))
    return x, np.asarray(kept, dtype=np.int64)
