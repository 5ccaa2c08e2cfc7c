"""MAP benchmark of hashing models over whole archives of code shards.

For every model found under --database (or the one given by --model), the labelled frames of
--queries are ranked against every database frame by Hamming distance and scored by MAP, exactly:
ties broken by index (`map`) and tie-aware (`map_tie_aware`), plus MAP@K with --topk and a
precision/recall curve per Hamming radius. Shards are processed by Ray tasks, two passes.

Example:
  aurorahash benchmark --queries out/query-codes --database out/codes --topk 100
"""

import json
import logging

import numpy as np

from jobs.common import UsageError, add_ray_options, add_s3_options, ray_address, storage_options

HELP = __doc__
log = logging.getLogger("aurorahash.benchmark")


def add_arguments(p):
    p.add_argument("--database", required=True, help="shard dataset(s): an ingest --out location")
    p.add_argument("--queries", required=True, help="labelled query shards (same model(s))")
    p.add_argument("--model", default=None, help="only this model (sha256 prefix)")
    p.add_argument("--topk", type=int, default=None, help="also report MAP@K")
    p.add_argument("--n-queries", type=int, default=None, help="use only the first N queries")
    p.add_argument("--out", default=None, help="write the full report (JSON, with PR curves) here")
    p.add_argument("--no-ray", action="store_true", help="run in this process, without Ray")
    add_ray_options(p)
    add_s3_options(p)


def _bench_model(model, db_shards, args, so, executor):
    from pipeline import search

    qshards, _ = search.resolve_shards(args.queries, so, model)
    parts = [search.load_shard(s, so) for s in qshards]
    qcodes = np.concatenate([p.codes for p in parts])
    qlabels = np.concatenate([p.labels for p in parts])
    if args.n_queries is not None:
        qcodes, qlabels = qcodes[: args.n_queries], qlabels[: args.n_queries]
    res = search.evaluate_map(qcodes, qlabels, db_shards, so, executor, args.topk)
    return res


def run(args):
    from pipeline import search, storage
    from pipeline.ray_runtime import ray_session

    if args.topk is not None and args.topk < 1:
        raise UsageError(f"--topk must be >= 1, got {args.topk}")
    so = storage_options(args)
    models = search.models_under(args.database, so)
    if args.model:
        models = {m: s for m, s in models.items() if m.startswith(args.model)}
    if not models:
        raise UsageError(
            f"no code shards under {args.database}" + (f" for {args.model}" if args.model else "")
        )
    results, report = {}, {}
    env = {"AWS_ENDPOINT_URL": (so.get("client_kwargs") or {}).get("endpoint_url")}
    with ray_session(ray_address(args), env) if not args.no_ray else _nullcontext():
        executor = None if args.no_ray else search.RayExecutor()
        for model, shards in sorted(models.items()):
            meta = search.store.shard_meta(shards[0], so)
            log.info("model %s: %d shards, %d bits", model[:12], len(shards), meta.nbits)
            res = _bench_model(model, shards, args, so, executor)
            results[model[:12]] = {"nbits": meta.nbits, "shards": len(shards), **res.summary()}
            report[model] = {
                **results[model[:12]],
                "pr_precision": res.pr_precision.tolist(),
                "pr_recall": res.pr_recall.tolist(),
            }
    if args.out:
        storage.atomic_write_bytes(args.out, json.dumps(report, indent=2).encode(), so)
    summary = {"models": results}
    if len(results) == 1:
        summary.update(next(iter(results.values())))
    return summary


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
