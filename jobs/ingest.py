"""aurorahash ingest: encode archive files into Parquet code shards (nightly job).

Lists the archive under --source (local path, file:// or s3://), skips files already encoded
for this model, reads each remaining file in its own Ray task (one row per frame, decoded only),
preprocesses (as in training) and encodes the frames in HashEncoder actors (on GPUs where the
cluster has them, each actor pinned to one; CPU otherwise) and commits one Parquet shard per
archive file, atomically:

  OUT/<model12>/<path relative to SOURCE>.parquet           codes, ids, sites, times, classes
  OUT/_quarantine/<model12>/<relative path>.jsonl           one JSON line per unreadable frame
                                                            or file: file, frame, reason, time
                                                            (at most 100 a file, then one line
                                                            with the exact count of the rest)

<model12> is the first 12 hex digits of the model id: the sha256 of the weights' sha256, the
architecture, bits, input size and channels, class names, preprocessing and encode settings
(anything that changes the codes); another model or another preprocessing writes its own set.
The checkpoint is validated before any work (value ranges, preprocessing that matches the
model's input: README "Checkpoints and ingestion safeguards"); a bad one exits 2 and writes
nothing.

Re-running is safe at any time, also after a crash or kill: finished files are skipped and every
frame ends up exactly once. An archive file modified after its shard was written (e.g.
still being synced when an earlier run read it) is read again and its shard replaced. Always
point --source at the same archive root (frame ids are paths relative to it) and narrow the run
with --since instead.

Progress goes to stderr; one JSON summary line to stdout: files_seen, files_skipped (already
encoded), files_changed (encoded before, newer now: read again), files_done (committed now),
files_failed, files_ignored (deliberately not ingested, e.g. THEMIS thumbnails), files_corrupt
(nothing readable: empty shard + quarantine record), frames (written now), quarantined (records
written now), frames_per_s (frames / pipeline time, Ray start-up excluded; `seconds` is the
whole run), resources (actors, their GPUs and CPUs, read slots, batch: chosen from the cluster
unless the options below say otherwise; `adjusted` lists any option the cluster could not take
as given, also logged as a warning) and encoders (per actor: node, pid, device,
CUDA_VISIBLE_DEVICES, frames).

--dry-run reads every file still to do through the readers and preprocessing (as
`aurorahash check` does) and reports per file what ingestion would do; it encodes and writes
nothing.

Exit codes: 0 every readable frame was written (quarantined input does not fail the job);
1 some files could not be processed (re-run to retry them); 2 bad usage or input (missing
--source or --model, a bad checkpoint, bad --since, an option value out of range or one the
cluster cannot take, such as --read-cpus 1 without GPUs).
"""

from __future__ import annotations

from jobs.common import (
    JobFailed,
    add_ray_options,
    add_s3_options,
    add_source_options,
    config_of,
    ray_address,
)

HELP = __doc__


def add_arguments(parser) -> None:
    g = parser.add_argument_group("what to ingest")
    add_source_options(g, "archive root: local path, file:// or s3://bucket/prefix")
    g.add_argument(
        "--out", required=True, help="output location for code shards (local path or s3://)"
    )
    g.add_argument(
        "--model", required=True, help="checkpoint directory (local or s3://) from `train`"
    )
    g.add_argument(
        "--dry-run",
        action="store_true",
        help="validate the checkpoint and read every file still to do through the readers "
        "(as `aurorahash check`): per-file frames and quarantine reasons; encodes and writes "
        "nothing",
    )
    add_encoding_arguments(parser)
    g = parser.add_argument_group("progress")
    g.add_argument(
        "--ray-progress", action="store_true", help="also show Ray Data's own progress bars"
    )
    add_ray_options(parser)
    add_s3_options(parser)


def add_encoding_arguments(parser) -> None:
    """How the work is spread: actors, read tasks, blocks (`EncodingOptions`; defaults and what
    the cluster cannot take: pipeline.ingest.resources). Also used by benchmarks/bench_ingest."""
    g = parser.add_argument_group("encoding")
    g.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="frames per model call and per read block at most (default 256 with GPUs, else 64)",
    )
    g.add_argument(
        "--actors",
        type=int,
        default=None,
        help="encoder actors (default: --actors-per-gpu on every GPU; on CPU-only clusters "
        "half the CPUs, always leaving one CPU for read tasks); more than the cluster takes "
        "are lowered with a warning (summary: resources.adjusted)",
    )
    g.add_argument(
        "--actors-per-gpu",
        type=int,
        default=None,
        help="encoder actors sharing one GPU (default 2 for models under 1 GiB on nodes with "
        "at least 8 CPUs per GPU, else 1); each actor is pinned to one GPU",
    )
    g.add_argument(
        "--read-cpus",
        type=float,
        default=None,
        help="CPU slots per read task, in (0, 64] (default 1 with GPUs, else 0.75): with GPUs, "
        "a node reads as many files at once as it has CPUs beside its actors. On CPU-only "
        "clusters 1 is refused (exit 2): read tasks must not ask for the actors' 1 CPU, or "
        "Ray Data fuses each read into an encoder call",
    )
    g.add_argument(
        "--read-tasks",
        type=int,
        default=None,
        help="read tasks at once at most (default: as many as the CPUs take)",
    )
    g.add_argument(
        "--encoder-threads",
        type=int,
        default=None,
        help="torch threads per encoder actor (default: with GPUs 1, on CPUs the node's CPUs "
        "shared among its actors)",
    )
    g.add_argument(
        "--rows-per-block",
        type=int,
        default=None,
        help="frames per block that a read task emits, and so per encoder call (default and "
        "at most --batch-size: more than a --batch-size given is refused, more than the default "
        "one lowered with a warning; a block holds one file's frames only)",
    )


def run(args) -> dict:
    from pipeline.ingest.config import IngestConfig, IngestFailed
    from pipeline.ingest.driver import run_ingest

    extra = {"ray_address": ray_address(args), "ray_progress_bars": args.ray_progress}
    cfg = config_of(IngestConfig, args, **extra)
    try:
        return run_ingest(cfg)
    except IngestFailed as exc:
        raise JobFailed(str(exc), exc.summary) from None
