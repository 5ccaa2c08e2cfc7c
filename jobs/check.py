"""aurorahash check: vet an archive (a night) before ingesting it; encodes and writes nothing.

Reads every archive file under --source through the same readers and preprocessing as
`aurorahash ingest` (in this process, --workers files at a time; no Ray, no encoder) and reports
what ingestion would do with each file. Nothing is written anywhere. It imports no Ray; it does
import torch, with or without --model: the preprocessing it checks frames with is torch code.

  --model DIR   validate the checkpoint first (a bad one: exit 2) and preprocess with its
                settings; without it, the default aurora preprocessing is used
  --out OUT     with --model: read only the files an ingest into OUT would still encode

One JSON summary line on stdout: files_seen, files_todo (read now), files_ok, files_quarantine
(some frames would be quarantined), files_corrupt (nothing readable), files_ignored (not
ingested on purpose, e.g. THEMIS thumbnails), files_failed (reading failed for reasons that are
not the file's, e.g. I/O), frames, quarantined, and `files`: per file its status, frames,
quarantined and the most common reasons ({reason: count}), files with problems first, at most
--max-listed entries.

Exit codes: 0 every file was read (quarantined or corrupt files included: ingestion handles
them); 1 some files could not be read (I/O: retry); 2 bad usage or input (missing --source, a
bad checkpoint, bad --since).
"""

from __future__ import annotations

from jobs.common import JobFailed, add_s3_options, add_source_options, config_of

HELP = __doc__


def add_arguments(parser) -> None:
    add_source_options(parser, "archive root or file: local path, file:// or s3://")
    parser.add_argument(
        "--model", default=None, help="checkpoint directory to validate and preprocess with"
    )
    parser.add_argument(
        "--out", default=None, help="with --model: only the files not yet ingested into OUT"
    )
    parser.add_argument("--workers", type=int, default=2, help="files read at once (default 2)")
    parser.add_argument(
        "--max-listed", type=int, default=1000, help="file entries in the summary (default 1000)"
    )
    add_s3_options(parser)


def run(args) -> dict:
    from pipeline.ingest.config import CheckConfig
    from pipeline.ingest.vet import CheckFailed, check_archive

    cfg = config_of(CheckConfig, args)
    try:
        return check_archive(cfg)
    except CheckFailed as exc:
        raise JobFailed(str(exc), exc.summary) from None
