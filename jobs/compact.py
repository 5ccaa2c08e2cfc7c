"""Compact one model's per-file code shards into large search segments, then vacuum.

Ingest writes one shard per archive file (20 codes for a THEMIS minute file). This job folds the
shards not yet compacted into segments of about --target-rows codes, keeping each night (the
first --group-depth folders of the archive path) in one segment where it can. The segments are a
Delta Lake table at <codes>/<model12>/_segments, which search, benchmark and export read, and
which DuckDB, Polars, Spark or `deltalake` open directly.

It streams: the pending shards are cut into units of whole nights, each written into segments
in bounded memory by a local worker process (--workers, default one per core) or, when a cluster
is given (--ray-address or $RAY_ADDRESS) or --ray, by Ray tasks spread over its nodes. Their
segments are committed in batches of about --batch-rows rows, each one atomic commit.

It is incremental (a re-run reads only new or re-ingested shards), atomic per batch (a killed run
keeps the batches it committed and leaves readers on the last one; the next run does the rest)
and exactly-once (a re-ingested file's old rows are replaced in the same commit). Vacuum then
deletes what the segments superseded: old segment files, compacted shards and temp files of
killed writers, once older than --grace-hours.

Example:
  aurorahash compact --codes out/codes --model 3f2a9c1b0d4e
"""

import logging
import os

from jobs.common import (
    UsageError,
    add_codes_options,
    add_ray_options,
    add_s3_options,
    location,
    ray_address,
    ray_storage_env,
    storage_options,
)

HELP = __doc__
log = logging.getLogger("aurorahash.compact")


def add_arguments(p):
    from pipeline.codes import compact, vacuum

    add_codes_options(p, "an ingest --out location or one model's folder")
    p.add_argument(
        "--target-rows",
        type=int,
        default=compact.DEFAULT_TARGET_ROWS,
        help=f"codes per segment (default {compact.DEFAULT_TARGET_ROWS:,}; a segment is cut at a "
        "night boundary once it has this many, anywhere once it has twice this many)",
    )
    p.add_argument(
        "--group-depth",
        type=int,
        default=compact.DEFAULT_GROUP_DEPTH,
        help="folders of the archive path that name a group kept together (default "
        f"{compact.DEFAULT_GROUP_DEPTH}: stream0/YYYY/MM/DD, one night)",
    )
    p.add_argument(
        "--batch-rows",
        type=int,
        default=None,
        help="commit the written segments once they hold this many rows (default "
        f"{compact.BATCH_SEGMENTS} x --target-rows); a killed run loses at most a batch",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local worker processes without Ray (default: one per core; 1: in this process)",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--ray",
        action="store_true",
        help="run the units as Ray tasks (default only when a cluster is given: --ray-address or "
        "$RAY_ADDRESS); without a cluster, a local instance is started",
    )
    g.add_argument("--no-ray", action="store_true", help="local worker processes even so")
    add_ray_options(p)
    p.add_argument("--no-vacuum", action="store_true", help="compact only; delete nothing")
    p.add_argument(
        "--grace-hours",
        type=float,
        default=vacuum.DEFAULT_GRACE_HOURS,
        help="vacuum deletes superseded files only once they are this old, so that readers that "
        f"started before a compaction can finish (default {vacuum.DEFAULT_GRACE_HOURS:g})",
    )
    add_s3_options(p)


def run(args):
    from pipeline.codes import catalogue, placement

    if args.target_rows < 1 or args.group_depth < 0 or args.grace_hours < 0:
        raise UsageError("--target-rows must be >= 1, --group-depth and --grace-hours >= 0")
    if (args.batch_rows is not None and args.batch_rows < 1) or (
        args.workers is not None and args.workers < 1
    ):
        raise UsageError("--batch-rows and --workers must be >= 1")
    roots = catalogue.select_roots(location(args, args.codes), args.model)
    choice = placement.forced(args.ray, args.no_ray, ray_address(args))
    if choice is None or not choice.use_ray:  # no cluster: local processes, whatever the work
        log.info("compact: units run on local processes")
        return _compact_all(args, roots, None)
    log.info("compact: units run as %s", choice.reason)
    from pipeline.ray_runtime import ray_session

    with ray_session(ray_address(args), ray_storage_env(storage_options(args))):
        from pipeline.codes.compact_runners import RayTasks

        return _compact_all(args, roots, RayTasks())


def _compact_all(args, roots, runner) -> dict:
    from pipeline.codes import compact, compact_runners, pending, vacuum

    runner = runner or compact_runners.LocalProcesses(args.workers or os.cpu_count() or 1)
    out = {}
    for root in roots:
        res = compact.compact(
            root,
            target_rows=args.target_rows,
            group_depth=args.group_depth,
            runner=runner,
            batch_rows=args.batch_rows,
        )
        # what it consumed is no longer listed by readers: O(pending), not O(unvacuumed)
        res["pending_marks"] = pending.retire(root)
        if not args.no_vacuum:
            res["vacuum"] = vacuum.vacuum(root, args.grace_hours)
        out[root.uri] = res
    summary = {"models": out}
    if len(out) == 1:
        summary.update(next(iter(out.values())))
    return summary
