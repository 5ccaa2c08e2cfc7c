"""The Ray Data source of ingestion: one read task per archive file (`read.read_file_rows`).

Why apart from `read`: importing Ray Data costs seconds, and the read task's body also runs
without Ray (`aurorahash check`, the training datasets), which then need not import it.
"""

from __future__ import annotations

from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from pipeline.ingest.read import ROW_SCHEMA, FileTask, read_file_rows


class ArchiveDatasource(Datasource):
    """One ReadTask per archive file; rows as described in the module docstring."""

    def __init__(
        self,
        files: list[FileTask],
        storage_options: dict | None = None,
        rows_per_block: int = 32,
    ):
        super().__init__()
        self.files = list(files)
        self.storage_options = storage_options or {}
        self.rows_per_block = int(rows_per_block)

    def get_name(self) -> str:
        return "ArchiveRead"

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
        tasks = []
        for f in self.files:
            args = (f, self.storage_options, self.rows_per_block)
            meta = BlockMetadata(
                num_rows=None, size_bytes=None, exec_stats=None, input_files=[f.uri]
            )
            tasks.append(ReadTask(_ReadFn(*args), meta, schema=ROW_SCHEMA))
        return tasks


class _ReadFn:
    """A picklable read function (a closure over loop variables would bind the last file)."""

    def __init__(self, *args):
        self.args = args

    def __call__(self):
        return read_file_rows(*self.args)
