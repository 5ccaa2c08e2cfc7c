"""Nightly ingestion: archive files -> Ray Data -> HashEncoder actors -> one code shard per file.

    plan:    list the archive (fsspec), apply --since, list this model's shards once and skip
             every archive file that already has one (unless the file is newer than its shard)
    read:    one Ray read task per archive file (pipeline.ingest.datasource): frames decoded only
             (uint16 as read), in blocks of batch_size frames; smallest files first
             (`read_order`)
    encode:  map_batches(HashEncoder, compute=ActorPoolStrategy), one block (one file's rows)
             per call: the actor preprocesses the frames on its device and encodes them; GPU
             actors where the cluster has GPUs (`actors_per_gpu` each), CPU actors otherwise;
             how many, and how many read tasks beside them: `pipeline.ingest.resources`
    commit:  (`pipeline.ingest.commit`) the driver streams the encoded rows back
             (iter_batches), groups them by archive file and, once all rows of a file have
             arrived (its read task sends the row count last), writes its quarantine record
             (if any) and then its shard, each atomically (what bounds the delay from a file's
             last encoded frame to its commit: the `_run_pipeline` docstring, "Commit delay")

Changed archive files: a file modified after its shard was written (listing times, no extra
request per file) is read again and its shard replaced atomically: an archive still being
synced when an earlier run read it would otherwise keep only the frames it had then. A clean
re-read removes the file's old quarantine record.

Exactly-once: a shard is the unit of commit. It is written whole or not at all, under a name
derived from the archive file's relative path and the model hash (`pipeline.codes.store.shard_uri`).
Rows are keyed by (file, seq), so rows that a retried Ray task delivers twice are counted once.
Kill the driver (or lose nodes) at any point and re-run: committed files are skipped, the rest
are read again from scratch.

A file that cannot be read at all (CorruptFile) gets an empty shard plus a quarantine record, so
that re-runs skip it like any finished file; delete both to retry it. A file whose reading failed
for other reasons (I/O errors, a reader bug) is not committed: the job exits 1 and a re-run
retries it. Files the readers deliberately skip (THEMIS thumbnails) get nothing.
"""

from __future__ import annotations

import json
import logging
import time

from pipeline import storage
from pipeline.errors import BadInput
from pipeline.ingest.commit import Committer, IngestTally
from pipeline.ingest.config import IngestConfig, IngestFailed
from pipeline.ingest.plan import Plan, plan_files, read_order
from pipeline.ingest.read import FileTask
from pipeline.messages import one_line
from pipeline.model.checkpoint import Checkpoint, open_model

log = logging.getLogger("aurorahash.ingest")


def _init_ray(address: str | None) -> bool:
    """Use this process's Ray, else join `address` / $RAY_ADDRESS, else start a local one."""
    from pipeline.ray_runtime import init_ray

    return init_ray(address)


def _run_pipeline(cfg: IngestConfig, plan: Plan, model: Checkpoint, ep, src_opts, committer):
    """Read -> encode -> commit, with no file's rows waiting for another file's.

    Commit delay. Every encoder call gets exactly one block of one read task: the rows of one
    file, at most `batch_size` of them (map_batches(batch_size=None) over blocks of that size).
    So after a file's last frame is encoded, its rows (the "end" row travels in the same or the
    next block of that file) reach the driver when that one call returns; the driver groups them
    (`Committer.consume`, milliseconds a block, at most 2 blocks prefetched ahead) and hands the
    file to the commit pool, where the delay is the shard writes queued before it,
    `commit_threads` at a time, plus its own write. Nothing in that path waits for another
    file's reading or encoding.

    Why a big file held back the rest (146 s without a shard): read tasks asked for the same
    resources as the encoder actors (num_cpus=1), so Ray Data fused each read into an actor
    call ("ReadArchiveRead->MapBatches(HashEncoder)"): one call read and encoded a whole file,
    its output one block at the end, and the calls of the other files queued behind it on the
    actor. Now read tasks take `read_cpus` (CPU-only clusters 0.75: on a 2-CPU machine one
    read slot beside the actor; 0.5 measured ~35% slower there, two reads and the actor
    contending for two cores; GPU clusters 1.0, the actors differing by their GPUs:
    `pipeline.ingest.resources`); they must not ask for the same resources as the actors, or the
    fusion comes back. Also: without batch_size=None, Ray Data
    bundles rows of several files into one call and holds a finished file's last rows until
    `batch_size` rows of other files arrive; and files are read smallest first (`read_order`).
    Not bounded: encoders take blocks first in, first out, so rows queued by a file read earlier
    delay the files behind them: a file small in bytes but with very many frames (say a gzip of
    identical frames) is read early; where there are several read slots, a file read beside the
    start of a bigger one can queue behind part of its rows; and a read that stalls (storage)
    holds its slot, on a 2-CPU machine the only one.
    """
    import ray
    from ray.data import DataContext

    from pipeline.ingest.datasource import ArchiveDatasource

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = cfg.ray_progress_bars
    ctx.print_on_execution_start = cfg.ray_progress_bars

    rows = ep.block_rows
    order = read_order(plan)
    block_bytes = rows * _frame_bytes(order, src_opts, model)
    log.info(
        "ingest: %d files to encode with %d %s actor(s) (%s), %d read slots, blocks of %d frames",
        len(plan.todo),
        ep.actors,
        "GPU" if ep.gpus_per_actor else "CPU",
        ep.to_dict(),
        ep.read_slots,
        rows,
    )
    model_ref = ray.put(model)
    source = ArchiveDatasource(order, src_opts, rows)
    # Blocks as the read task yields them (`rows` frames): Ray Data merges yielded tables into
    # blocks of up to target_max_block_size (128 MiB by default), so set it to one table's
    # pixel bytes; a table is a little larger (other columns) and leaves as one block. Frames
    # of another size are cut or merged into blocks of about that many bytes (never across
    # files); the actor encodes at most `batch_size` of them at a time.
    old_block_size = ctx.target_max_block_size
    ctx.target_max_block_size = max(1, block_bytes)
    try:
        ds = _encoded(source, ep, model_ref, rows, len(plan.todo))
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=2):
            committer.consume(batch)
    finally:
        ctx.target_max_block_size = old_block_size
    return {**ep.to_dict(), "block_bytes": block_bytes}


def _encoded(source, ep, model_ref, rows: int, n_files: int):
    """The Ray Data chain read -> HashEncoder actors (not started until iterated)."""
    import ray

    from pipeline.ingest.encode_actor import HashEncoder

    # Read tasks keep Ray's default retries for system failures (a lost node); reading errors
    # never raise out of a task (they become "fail" rows), so application retries are moot.
    # override_num_blocks = one read task per file.
    ds = ray.data.read_datasource(
        source, num_cpus=ep.read_cpus, concurrency=ep.read_tasks, override_num_blocks=n_files
    )
    # map_batches refuses batch_size=None with GPUs (a guard for users); the internal entry
    # takes it, and our blocks are already `batch_size` rows
    mapper = getattr(ds, "map_batches_internal", None) if ep.gpus_per_actor else None
    encode_args = _encode_args(ep, model_ref)
    if mapper is None:
        mapper = ds.map_batches
        if ep.gpus_per_actor:
            encode_args["batch_size"] = rows
    return mapper(HashEncoder, **encode_args)


def encoder_plan(cfg: IngestConfig, model: Checkpoint):
    """`pipeline.ingest.resources.plan_encoders` for this cluster, model and the config's
    overrides; what it could not take as given is logged as a warning."""
    from pipeline.ingest.config import EncodingOptions, options_from
    from pipeline.ingest.resources import cluster_nodes, plan_encoders

    model_bytes = len(model.files.get("model.safetensors", b""))
    ep = plan_encoders(cluster_nodes(), model_bytes, **options_from(EncodingOptions, cfg))
    for note in ep.adjusted:
        log.warning("ingest: %s", note)
    return ep


def _start(cfg: IngestConfig, model: Checkpoint):
    """Join or start Ray and plan the encoders: an option this cluster cannot take is refused
    here (BadInput: exit 2), before anything is read. Returns (started here, plan)."""
    started = _init_ray(cfg.ray_address)
    try:
        return started, encoder_plan(cfg, model)
    except BadInput:
        if started:
            from pipeline.ray_runtime import shutdown_ray

            shutdown_ray()
        raise


def _frame_bytes(order: list[FileTask], src_opts: dict, model: Checkpoint) -> int:
    """Bytes of one of the archive's frames as read (the first one the first files yield),
    else of one model input."""
    from pipeline.ingest.read import frame_bytes_hint
    from pipeline.model.encode import input_shape

    c, h, w = input_shape(model.config)
    return frame_bytes_hint(order[:3], src_opts) or 4 * c * h * w


def _encode_args(ep, model_ref) -> dict:
    """map_batches arguments of the HashEncoder actor pool."""
    from ray.data import ActorPoolStrategy

    # GPU pools start whole (every GPU gets its actors at once); they may shrink to one actor
    # when nodes are lost
    initial = ep.actors if ep.gpus_per_actor else None
    return dict(
        fn_constructor_kwargs={
            # nested in a tuple: the actor fetches it itself, so a restarted actor (lost node)
            # re-fetches from the driver-owned object instead of failing on a lost argument
            "checkpoint": (model_ref,),
            "threads": ep.threads,
            "batch_size": ep.batch_size,
        },
        compute=ActorPoolStrategy(min_size=1, max_size=ep.actors, initial_size=initial),
        batch_size=None,  # one block (one file's rows) per call: no bundling across files
        batch_format="pyarrow",
        num_cpus=ep.cpus_per_actor,
        num_gpus=ep.gpus_per_actor,
    )


# -------------------------------------------------------------------------------------- job


def _dry_run(cfg: IngestConfig) -> dict:
    """--dry-run: validate the checkpoint, plan, and read every file still to do through the
    readers and preprocessing, as `aurorahash check` does; nothing is encoded or written."""
    from pipeline.ingest.config import CheckConfig
    from pipeline.ingest.vet import CheckFailed, check_archive

    try:
        return check_archive(CheckConfig.from_ingest(cfg))
    except CheckFailed as exc:
        raise IngestFailed(str(exc), exc.summary) from None


def _plan_summary(plan: Plan, model: Checkpoint) -> dict:
    """The summary before any file is read (what a run with nothing to do returns)."""
    return {
        "files_seen": plan.seen,
        "files_skipped": plan.skipped,
        "files_changed": len(plan.changed),
        "files_done": 0,
        "files_failed": 0,
        "files_ignored": plan.ignored,
        "files_corrupt": 0,
        "frames": 0,
        "quarantined": 0,
        "sequence_gaps": 0,
        "frames_dropped": 0,
        "frames_per_s": 0.0,
        "seconds": 0.0,
        "pipeline_seconds": 0.0,
        "model": model.id[:12],
        "out": plan.prefix,
    }


def _tally_summary(tally: IngestTally, plan: Plan, pipe_s: float) -> dict:
    c = tally.counts
    return dict(
        files_done=c["done"],
        files_failed=c["failed"],
        files_ignored=plan.ignored + c["ignored"],
        files_corrupt=c["corrupt"],
        frames=c["frames"],
        quarantined=c["quarantined"],
        sequence_gaps=c["sequence_gaps"],
        frames_dropped=c["frames_dropped"],
        frames_per_s=round(c["frames"] / pipe_s, 2),
        pipeline_seconds=round(pipe_s, 3),
        time_breakdown_s={k: round(v, 3) for k, v in tally.costs.items()},
        encoders=[{**json.loads(k), "frames": v} for k, v in sorted(tally.encoders.items())],
    )


def run_ingest(cfg: IngestConfig) -> dict:
    """Run the job; returns the summary, raises IngestFailed (with it) when files failed."""
    t_start = time.monotonic()
    if cfg.dry_run:
        return _dry_run(cfg)
    src_opts = storage.options_for(cfg.source, endpoint=cfg.s3_endpoint)
    out_opts = storage.options_for(cfg.out, endpoint=cfg.s3_endpoint)
    model = open_model(cfg.model, storage.options_for(cfg.model, endpoint=cfg.s3_endpoint))
    plan = plan_files(cfg, model.id, src_opts, out_opts)
    if cfg.max_files is not None:
        plan.todo = plan.todo[: cfg.max_files]
    log.info(
        "ingest: %d archive files under %s (%d before --since), %d already done for model %s, "
        "%d to do (%d of them changed since their shard was written)",
        plan.seen,
        cfg.source,
        plan.not_since,
        plan.skipped,
        model.id[:12],
        len(plan.todo),
        len(plan.changed),
    )
    summary = _plan_summary(plan, model)
    if not plan.todo:
        summary["seconds"] = round(time.monotonic() - t_start, 3)
        return summary

    started, ep = _start(cfg, model)
    committer = Committer(cfg, plan, model, out_opts)
    tally = committer.tally
    error = resources = None
    stopped = False
    t_pipe = tally.t0 = time.monotonic()
    tally.start_ticker()
    try:
        resources = _run_pipeline(cfg, plan, model, ep, src_opts, committer)
    except Exception as exc:  # the pipeline broke: keep what was committed, report the rest
        log.error("pipeline failed", exc_info=True)  # the whole traceback: stderr only
        error = f"pipeline failed: {one_line(exc)}"  # the summary: one clean line
    except BaseException:  # stopped (Ctrl-C, SIGTERM): unfinished files are for the next run
        stopped = True
        raise
    finally:
        committer.finish(stopped)
        if started:
            from pipeline.ray_runtime import shutdown_ray

            shutdown_ray()
    t_end = tally.t_last or time.monotonic()
    tally.progress(final=True)
    summary.update(_tally_summary(tally, plan, max(t_end - t_pipe, 1e-9)), resources=resources)
    summary["seconds"] = round(time.monotonic() - t_start, 3)
    if error or tally.counts["failed"]:
        if tally.failed:
            summary["failed"] = dict(list(sorted(tally.failed.items()))[:20])
        raise IngestFailed(error or f"{tally.counts['failed']} file(s) failed", summary)
    return summary
