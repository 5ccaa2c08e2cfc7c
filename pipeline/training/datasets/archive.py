"""Labelled frames of an archive, read exactly as ingest reads them.

The frames come from `pipeline.ingest.local_read.read_archive` (ingest's read task and
preprocessing, in process). Labels are the frames' own label header (-1 where a frame has none)
unless a catalogue table maps ids to labels (`catalogue_labels`: CSV or Parquet with columns
id,label).
"""

from __future__ import annotations

import numpy as np

from pipeline.errors import BadInput
from pipeline.ingest.local_read import ArchiveFrames


def catalogue_labels(uri: str, storage_options: dict | None = None) -> dict[str, object]:
    """{frame id: label} from a CSV or Parquet table with columns `id` and `label`."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from pipeline import storage

    try:
        fs, path, _ = storage.split_uri(uri, storage_options)
        with fs.open(path, "rb") as fh:
            table = pacsv.read_csv(fh) if uri.lower().endswith(".csv") else pq.read_table(fh)
    except FileNotFoundError:
        raise BadInput(f"--labels {uri}: no such file") from None
    except Exception as exc:  # pyarrow's parse errors name the problem
        raise BadInput(f"--labels {uri}: not a readable CSV or Parquet table ({exc})") from None
    if not {"id", "label"} <= set(table.column_names):
        raise BadInput(f"--labels {uri}: needs columns id and label, has {table.column_names}")
    ids = table.column("id").to_pylist()
    labs = table.column("label").to_pylist()
    return {str(i): v for i, v in zip(ids, labs, strict=True) if i is not None and v is not None}


def apply_catalogue(frames: ArchiveFrames, table: dict, uri: str) -> tuple[np.ndarray, list]:
    """(labels int64 (-1 = not in the table), class names) of frames from a catalogue table.

    Integer labels name classes 0..K-1; text labels become classes in sorted order.
    """
    values = [table.get(i) for i in frames.ids]
    present = [v for v in values if v is not None]
    if not present:
        raise BadInput(f"--labels {uri}: no id of the archive's frames is in the table")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        if min(present) < 0:
            raise BadInput(f"--labels {uri}: integer labels must be >= 0")
        names = [str(i) for i in range(max(present) + 1)]
        return np.asarray([-1 if v is None else v for v in values], np.int64), names
    names = sorted({str(v) for v in present})
    index = {n: i for i, n in enumerate(names)}
    return np.asarray([-1 if v is None else index[str(v)] for v in values], np.int64), names
