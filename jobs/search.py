"""Exact Hamming k-NN over a dataset of code shards.

Each database shard is searched by its own Ray task; per-shard top-k lists are merged exactly
(ordered by distance, then global index = shard order, then row order). Queries are the frames of
another shard dataset (--queries) or frames of the database picked by id (--query-id).

Example:
  aurorahash search --codes out/codes/3f2a9c1b0d4e --query-id 'stream0/.../x.pgm.gz#3' --k 10
"""

import logging

import numpy as np

from jobs.common import UsageError, add_ray_options, add_s3_options, ray_address, storage_options

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
        help="write neighbours to this .parquet or .jsonl (local or s3://); without it the "
        "summary lists them when there are at most 1,000",
    )
    p.add_argument("--no-ray", action="store_true", help="search in this process, without Ray")
    add_ray_options(p)
    add_s3_options(p)


def _query_codes(args, so, db_shards, meta):
    from pipeline import search

    if args.queries:
        qshards, qmeta = search.resolve_shards(args.queries, so, args.model or meta.model)
        parts = [search.load_shard(s, so) for s in qshards]
        codes = np.concatenate([p.codes for p in parts])
        ids = np.concatenate([p.ids for p in parts])
    else:
        wanted = list(dict.fromkeys(args.query_id))
        found = {}
        for s in db_shards:
            sc = search.load_shard(s, so)
            for i, fid in enumerate(sc.ids):
                if fid in wanted and fid not in found:
                    found[fid] = sc.codes[i]
            if len(found) == len(wanted):
                break
        missing = [w for w in wanted if w not in found]
        if missing:
            raise UsageError(f"--query-id not in {args.codes}: {', '.join(missing[:5])}")
        codes = np.stack([found[w] for w in wanted])
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
    elif uri.endswith(".parquet"):
        buf = io.BytesIO()
        pq.write_table(
            pa.table({c: pa.array(list(v) if v.dtype == object else v) for c, v in cols.items()}),
            buf,
        )
        storage.atomic_write_bytes(uri, buf.getvalue(), so)
    else:
        raise UsageError(f"--out must end in .parquet or .jsonl: {uri}")


def run(args):
    from pipeline import search
    from pipeline.ray_runtime import ray_session

    if args.k < 1:
        raise UsageError(f"--k must be >= 1, got {args.k}")
    so = storage_options(args)
    shards, meta = search.resolve_shards(args.codes, so, args.model)
    queries, qids = _query_codes(args, so, shards, meta)
    log.info("%d queries over %d shards (%d-bit codes)", len(queries), len(shards), meta.nbits)
    if args.no_ray:
        res = search.search(queries, shards, args.k, so, nbits=meta.nbits)
    else:
        env = {"AWS_ENDPOINT_URL": (so.get("client_kwargs") or {}).get("endpoint_url")}
        with ray_session(ray_address(args), env):
            res = search.search(queries, shards, args.k, so, search.RayExecutor(), meta.nbits)
    summary = {
        "n_queries": len(queries),
        "k": int(res.indices.shape[1]),
        "n_database": res.n_database,
        "shards": len(shards),
        "nbits": meta.nbits,
        "seconds": round(res.seconds, 3),
        "comparisons_per_s": float(f"{len(queries) * res.n_database / max(res.seconds, 1e-9):.4g}"),
    }
    if args.out:
        _write_neighbours(args.out, so, qids, res)
        summary["out"] = args.out
    elif res.indices.size <= 1000:
        summary["neighbors"] = {
            str(qid): [[str(i), int(d)] for i, d in zip(res.ids[r], res.distances[r], strict=True)]
            for r, qid in enumerate(qids)
        }
    return summary
