"""Exact Hamming k-NN over one model's codes (compacted segments plus shards not yet compacted).

The catalogue is cut into tasks of about a million codes; each is searched by a Ray task (or in
this process with --no-ray) and the per-task top-k lists are merged exactly, ties broken by the
canonical frame order (archive relative path, then frame index). Queries are the frames of another
code dataset (--queries) or frames of the database picked by id (--query-id, read from the one
segment or shard that holds that file, without scanning the archive).

Example:
  aurorahash search --codes out/codes/3f2a9c1b0d4e --query-id 'stream0/.../x.pgm.gz#3' --k 10
"""

import logging

import numpy as np

from jobs.common import (
    UsageError,
    add_ray_options,
    add_s3_options,
    ray_address,
    ray_storage_env,
    storage_options,
)

HELP = __doc__
log = logging.getLogger("aurorahash.search")


def add_arguments(p):
    p.add_argument("--codes", required=True, help="database: a shard dataset (dir, prefix or file)")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--queries", help="query frames: another shard dataset of the same model")
    q.add_argument(
        "--query-id", action="append", help="a frame id of the database to query (repeatable)"
    )
    p.add_argument("--k", type=int, default=10, help="neighbours per query (default 10)")
    p.add_argument("--n-queries", type=int, default=None, help="use only the first N queries")
    p.add_argument("--model", default=None, help="model sha256 (prefix) when --codes holds several")
    p.add_argument(
        "--out",
        default=None,
        help="write neighbours to this .parquet or .jsonl (local or s3://), or into DIR/ as "
        "neighbours.parquet; without it the summary lists them when there are at most 1,000",
    )
    p.add_argument("--no-ray", action="store_true", help="search in this process, without Ray")
    add_ray_options(p)
    add_s3_options(p)


def _query_codes(args, so, cat):
    from pipeline import catalogue, search

    if args.queries:
        qcat = catalogue.open_catalogue(args.queries, so, cat.meta.model)
        codes, _, ids = search.load_all(qcat)
    else:
        wanted = list(dict.fromkeys(args.query_id))
        found = catalogue.lookup_ids(cat, wanted)  # reads only the parts that hold these files
        got = dict(zip(found.column("id").to_pylist(), range(found.num_rows), strict=True))
        missing = [w for w in wanted if w not in got]
        if missing:
            raise UsageError(f"--query-id not in {args.codes}: {', '.join(missing[:5])}")
        all_codes, _ = catalogue.codes_labels(found, cat.meta)
        codes = all_codes[[got[w] for w in wanted]]
        ids = np.asarray(wanted, dtype=object)
    if args.n_queries is not None:
        codes, ids = codes[: args.n_queries], ids[: args.n_queries]
    return codes, ids


def _write_neighbours(uri, so, qids, res):
    import io
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline import storage

    q, k = res.indices.shape
    cols = {
        "query_id": np.repeat(qids, k),
        "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), q),
        "id": res.ids.reshape(-1),
        "distance": res.distances.reshape(-1),
        "index": res.indices.reshape(-1),
    }
    if uri.endswith(".jsonl"):
        lines = [
            json.dumps(
                {c: (v[i].item() if hasattr(v[i], "item") else v[i]) for c, v in cols.items()}
            )
            for i in range(q * k)
        ]
        storage.atomic_write_bytes(uri, ("\n".join(lines) + "\n").encode(), so)
    else:
        buf = io.BytesIO()
        pq.write_table(
            pa.table({c: pa.array(list(v) if v.dtype == object else v) for c, v in cols.items()}),
            buf,
        )
        storage.atomic_write_bytes(uri, buf.getvalue(), so)


def out_file(uri: str, default_name: str) -> str:
    """`--out DIR/` (a trailing slash) means a file named `default_name` inside DIR."""
    return f"{uri}{default_name}" if uri.endswith("/") else uri


def run(args):
    from pipeline import catalogue, search
    from pipeline.ray_runtime import session_with

    if args.k < 1:
        raise UsageError(f"--k must be >= 1, got {args.k}")
    out = out_file(args.out, "neighbours.parquet") if args.out else None
    if out and not out.endswith((".parquet", ".jsonl")):
        raise UsageError(f"--out must end in .parquet, .jsonl or /: {args.out}")
    so = storage_options(args)

    def prepare():
        cat = catalogue.open_catalogue(args.codes, so, args.model)
        queries, qids = _query_codes(args, so, cat)
        log.info(
            "%d queries over ~%d codes in %d segments + %d shards (%d-bit codes)",
            len(queries),
            cat.n_rows,
            len(cat.segments),
            len(cat.shards),
            cat.meta.nbits,
        )
        return cat, queries, qids

    use_ray = not args.no_ray
    with session_with(prepare, ray_address(args), ray_storage_env(so), use_ray) as prepared:
        cat, queries, qids = prepared
        res = search.search(queries, cat, args.k, search.RayExecutor() if use_ray else None)
    summary = {
        "n_queries": len(queries),
        "k": int(res.indices.shape[1]),
        "n_database": res.n_database,
        "segments": len(cat.segments),
        "shards": len(cat.shards),
        "tasks": res.tasks,
        "nbits": cat.meta.nbits,
        "seconds": round(res.seconds, 3),
        "comparisons_per_s": float(f"{len(queries) * res.n_database / max(res.seconds, 1e-9):.4g}"),
    }
    if out:
        _write_neighbours(out, so, qids, res)
        summary["out"] = out
    elif res.indices.size <= 1000:
        summary["neighbors"] = {
            str(qid): [[str(i), int(d)] for i, d in zip(res.ids[r], res.distances[r], strict=True)]
            for r, qid in enumerate(qids)
        }
    return summary
