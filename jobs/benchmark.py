"""MAP benchmark of hashing models over whole archives of code shards.

For every model found under --database (or the one given by --model), the labelled frames of
--queries are ranked against every database frame by Hamming distance and scored by MAP, exactly:
ties broken by the canonical frame order (`map`) and tie-aware (`map_tie_aware`), plus MAP@K with
--topk and a precision/recall curve per Hamming radius. The database is read through its catalogue
(compacted segments plus shards not yet compacted) in tasks of about a million codes, run by Ray
tasks (or in this process with --no-ray), two passes.

Example:
  aurorahash benchmark --queries out/query-codes --database out/codes --topk 100
"""

import json
import logging

from jobs.common import (
    UsageError,
    add_ray_options,
    add_s3_options,
    ray_address,
    ray_storage_env,
    storage_options,
)

HELP = __doc__
log = logging.getLogger("aurorahash.benchmark")


def add_arguments(p):
    p.add_argument("--database", required=True, help="shard dataset(s): an ingest --out location")
    p.add_argument("--queries", required=True, help="labelled query shards (same model(s))")
    p.add_argument("--model", default=None, help="only this model (sha256 prefix)")
    p.add_argument("--topk", type=int, default=None, help="also report MAP@K")
    p.add_argument("--n-queries", type=int, default=None, help="use only the first N queries")
    p.add_argument(
        "--out",
        default=None,
        help="write the full report (JSON, with PR curves) to this file, or DIR/benchmark.json",
    )
    p.add_argument("--no-ray", action="store_true", help="run in this process, without Ray")
    add_ray_options(p)
    add_s3_options(p)


def _load(root, args, so):
    """One model's catalogue and its labelled queries (the driver's part, before any task)."""
    from pipeline import catalogue, search

    cat = catalogue.open_catalogue(root, so)
    qcodes, qlabels, _ = search.load_all(catalogue.open_catalogue(args.queries, so, cat.meta.model))
    if args.n_queries is not None:
        qcodes, qlabels = qcodes[: args.n_queries], qlabels[: args.n_queries]
    log.info(
        "model %s: ~%d codes in %d segments + %d shards, %d bits; %d queries",
        cat.meta.model12,
        cat.n_rows,
        len(cat.segments),
        len(cat.shards),
        cat.meta.nbits,
        len(qcodes),
    )
    return cat, qcodes, qlabels


def run(args):
    from jobs.search import out_file
    from pipeline import catalogue, search, storage
    from pipeline.ray_runtime import session_with

    if args.topk is not None and args.topk < 1:
        raise UsageError(f"--topk must be >= 1, got {args.topk}")
    so = storage_options(args)
    roots = catalogue.select_roots(args.database, so, args.model)
    results, report = {}, {}
    use_ray = not args.no_ray
    prepare = lambda: [_load(r, args, so) for r in roots]  # noqa: E731
    with session_with(prepare, ray_address(args), ray_storage_env(so), use_ray) as models:
        executor = search.RayExecutor() if use_ray else None
        for cat, qcodes, qlabels in models:
            res = search.evaluate_map(qcodes, qlabels, cat, executor, args.topk)
            results[cat.meta.model12] = {
                "nbits": cat.meta.nbits,
                "segments": len(cat.segments),
                "shards": len(cat.shards),
                **res.summary(),
            }
            report[cat.meta.model] = {
                **results[cat.meta.model12],
                "pr_precision": res.pr_precision.tolist(),
                "pr_recall": res.pr_recall.tolist(),
            }
    if args.out:
        out = out_file(args.out, "benchmark.json")
        storage.atomic_write_bytes(out, json.dumps(report, indent=2).encode(), so)
    summary = {"models": results}
    if len(results) == 1:
        summary.update(next(iter(results.values())))
    return summary
