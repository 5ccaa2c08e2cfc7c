"""Bounds on what one archive file may make a reader allocate or decompress.

Why: archives come from outside (other observatories, S3 buckets), so a corrupt or hostile file
must cost at most a bounded amount of memory and time, and fail with a reason instead of taking
a worker down. Readers look these up at call time (`limits.NAME`), so tests and deployments can
change them.
"""

MAX_DIM = 8192  # largest accepted image side, pixels
MAX_PIXELS = 4096 * 4096  # largest accepted frame area (a 16-bit frame of 32 MiB)
MAX_DECOMPRESSED_BYTES = 1 << 30  # per file: what a .gz/.bz2 stream may expand to
MAX_FILE_BYTES = 512 << 20  # per file read whole into memory (CDF from object stores, images)
MAX_IMAGE_BYTES = 64 << 20  # one encoded image (a file, a Parquet cell, a tar member)
MAX_HEADER_BYTES = 64 << 10  # one PGM frame header
MAX_HEADER_LINE = 4096  # one PGM header line
MAX_FRAMES_PER_FILE = 1_000_000  # frames, rows, records or tar members in one file
MAX_TAR_HEADER_BYTES = 1 << 20  # one tar GNU long name / long link or pax extended header
MAX_PARQUET_PAGE_BYTES = 128 << 20  # one Parquet page of a column read, uncompressed (declared)
MAX_PARQUET_BATCH_BYTES = 64 << 20  # uncompressed bytes decoded per Parquet batch (estimated)
