"""Exact Hamming k-NN over one model's codes (compacted segments plus shards not yet compacted).

The catalogue is cut into tasks of about a million codes; each is searched in this process or by
a Ray task (`pipeline.codes.placement`: Ray when a cluster is named or the catalogue is large;
--ray / --no-ray force either) and the per-task top-k lists are merged exactly, ties broken by the
canonical frame order (archive relative path, then frame index). Queries are the frames of another
code dataset (--queries), frames of the database picked by id (--query-id, read from the one
segment or shard that holds that file, without scanning the archive), or image files (--image:
any file the readers take, `FILE#N` for frame N of a multi-frame file such as a THEMIS minute
file; read, preprocessed and encoded as ingest does it, with the checkpoint --model, which must
be the model that made the codes).

--report DIR writes a report to read into a new folder DIR/<UTC time>-search/: report.html
(self-contained) shows each query frame and its neighbours as thumbnails read back from the
archive, with distance, predicted class and probability, site and time; report.json beside it.

Examples:
  aurorahash search --codes out/codes/3f2a9c1b0d4e --query-id 'stream0/.../x.pgm.gz#3' --k 10
  aurorahash search --codes out/codes/ --model runs/aurora --image night/x.pgm.gz#3 \\
      --report reports/search/
"""

import logging
import time
from dataclasses import dataclass, replace

from jobs import common
from jobs.common import UsageError, location, storage_options
from pipeline.errors import BadInput

HELP = __doc__
log = logging.getLogger("aurorahash.search")


def add_arguments(p):
    p.add_argument("--codes", required=True, help="database: a shard dataset (dir, prefix or file)")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--queries", help="query frames: another shard dataset of the same model")
    q.add_argument(
        "--query-id", action="append", help="a frame id of the database to query (repeatable)"
    )
    q.add_argument(
        "--image",
        nargs="+",
        metavar="FILE",
        help="image files to query (local or s3://, any format the readers take; FILE#N: frame "
        "N of a multi-frame file such as a THEMIS minute file; needs --model CKPT)",
    )
    p.add_argument("--k", type=int, default=10, help="neighbours per query (default 10)")
    p.add_argument("--n-queries", type=int, default=None, help="use only the first N queries")
    p.add_argument(
        "--model",
        default=None,
        help="a checkpoint directory (its model id must be the codes' model: --image encodes "
        "with it), or a model id prefix when --codes holds several models",
    )
    p.add_argument(
        "--out",
        default=None,
        help="write neighbours to this .parquet or .jsonl (local or s3://), or into a folder (DIR/ "
        "or an existing one) as neighbours.parquet; without it the summary lists them when "
        "there are at most 1,000",
    )
    p.add_argument(
        "--report",
        default=None,
        metavar="DIR",
        help="write an HTML report (thumbnails of each query and its neighbours, read from the "
        "archive) and report.json into a new folder DIR/<UTC time>-search/",
    )
    p.add_argument(
        "--report-queries",
        type=int,
        default=10,
        metavar="N",
        help="queries shown in the report: the first N (default 10)",
    )
    common.add_executor_options(p, "search in this process, without Ray")


@dataclass
class Queries:
    """Query codes, their ids, and where the report finds their frames."""

    codes: object  # (q, words) uint64
    ids: object  # (q,) object
    cat: object = None  # the catalogue holding the query rows (--queries, --query-id)
    images: object = None  # pipeline.ingest.query_images.ImageQueries (--image)


def _checkpoint(args, so):
    """The --model checkpoint, opened once (`open_model`), or None when --model is an id
    prefix."""
    if not args.model:
        return None
    from pipeline.model.checkpoint import checkpoint_exists, open_model

    if args.image or checkpoint_exists(args.model, so):
        return open_model(args.model, so)
    return None


def _open_codes(args, info):
    """The codes' catalogue; with a checkpoint, only codes that this model made."""
    from pipeline.codes import catalogue

    codes = location(args, args.codes)
    if info is None:
        return catalogue.open_catalogue(codes, args.model)
    try:
        return catalogue.open_catalogue(codes, info.id)
    except BadInput:
        try:
            roots = catalogue.model_roots(codes)
            have = [catalogue.open_catalogue(r).meta.model12 for r in roots]
        except BadInput:
            raise UsageError(f"--codes {args.codes}: no code shards there") from None
    raise UsageError(
        f"--model {args.model} (model id {info.id[:12]}) did not make the codes under "
        f"{args.codes} (model {', '.join(have)}): codes of another model, preprocessing or "
        "encode settings are not comparable; give the checkpoint that ingested them"
    )


def _query_codes(args, so, cat, info) -> Queries:
    import numpy as np

    from pipeline.codes import catalogue, search

    if args.image:
        from pipeline.ingest.query_images import encode_images

        im = encode_images(args.image, info, so)
        q = Queries(im.codes, np.asarray(im.ids, dtype=object), images=im)
    elif args.queries:
        qcat = catalogue.open_catalogue(location(args, args.queries), cat.meta.model)
        codes, _, ids = search.load_all(qcat)
        q = Queries(codes, ids, cat=qcat)
    else:
        wanted = list(dict.fromkeys(args.query_id))
        found = catalogue.lookup_ids(cat, wanted)  # reads only the parts that hold these files
        got = dict(zip(found.column("id").to_pylist(), range(found.num_rows), strict=True))
        missing = [w for w in wanted if w not in got]
        if missing:
            raise UsageError(f"--query-id not in {args.codes}: {', '.join(missing[:5])}")
        all_codes, _ = catalogue.codes_labels(found, cat.meta)
        codes = all_codes[[got[w] for w in wanted]]
        q = Queries(codes, np.asarray(wanted, dtype=object), cat=cat)
    if args.n_queries is not None:
        q.codes, q.ids = q.codes[: args.n_queries], q.ids[: args.n_queries]
    return q


def _write_neighbours(out, qids, res):
    """The neighbours as .jsonl or .parquet at `out` (a Location), written atomically."""
    import io
    import json

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    q, k = res.indices.shape
    cols = {
        "query_id": np.repeat(qids, k),
        "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), q),
        "id": res.ids.reshape(-1),
        "distance": res.distances.reshape(-1),
        "index": res.indices.reshape(-1),
    }
    if out.uri.endswith(".jsonl"):
        lines = [
            json.dumps(
                {c: (v[i].item() if hasattr(v[i], "item") else v[i]) for c, v in cols.items()}
            )
            for i in range(q * k)
        ]
        out.write_atomic(("\n".join(lines) + "\n").encode())
    else:
        buf = io.BytesIO()
        pq.write_table(
            pa.table({c: pa.array(list(v) if v.dtype == object else v) for c, v in cols.items()}),
            buf,
        )
        out.write_atomic(buf.getvalue())


def _report_queries(q: Queries, n: int) -> list:
    """The first n queries as the report shows them (`pipeline.reports.search.QueryFrame`)."""
    from pipeline.reports.search import QueryFrame, frame_rows, query_from_row

    ids = [str(i) for i in q.ids[:n]]
    if q.images is None:
        rows = frame_rows(q.cat, ids)
        return [query_from_row(i, rows[i]) for i in ids]
    im = q.images
    return [
        QueryFrame(i, im.sources[j], im.frames[j], int(im.pred[j]), float(im.score[j]))
        for j, i in enumerate(ids)
    ]


def _write_report(args, so, cat, q: Queries, res, seconds: float) -> str:
    """--report: a new dated folder under DIR; returns its report.html."""
    from pipeline.reports.search import frame_rows, search_report

    n = max(1, args.report_queries)
    queries = _report_queries(q, n)
    rows = frame_rows(cat, res.ids[:n].ravel())
    asked = args.queries or " ".join(args.image or args.query_id)
    run = {"codes": args.codes, "query": asked, "n_queries": len(q.ids), "k": args.k}
    run["seconds"] = round(seconds, 3)
    sub = replace(res, ids=res.ids[:n], distances=res.distances[:n], indices=res.indices[:n])
    return common.write_report(search_report(queries, sub, rows, cat, run, so), args.report, so)


def _summary(q: Queries, cat, res) -> dict:
    n = len(q.ids)
    return {
        "n_queries": n,
        "k": int(res.indices.shape[1]),
        "n_database": res.n_database,
        "segments": len(cat.segments),
        "shards": len(cat.shards),
        "tasks": res.tasks,
        "nbits": cat.meta.nbits,
        "model": cat.meta.model,
        "seconds": round(res.seconds, 3),
        "comparisons_per_s": float(f"{n * res.n_database / max(res.seconds, 1e-9):.4g}"),
    }


def _check_args(args, so) -> str | None:
    """Usage errors before any work; returns the --out file (or None)."""
    if args.k < 1:
        raise UsageError(f"--k must be >= 1, got {args.k}")
    if args.image and not args.model:
        raise UsageError("--image needs --model CKPT: the checkpoint that made the codes")
    if args.report_queries < 1:
        raise UsageError(f"--report-queries must be >= 1, got {args.report_queries}")
    out = common.output_file(args.out, "neighbours.parquet", so) if args.out else None
    if out and not out.endswith((".parquet", ".jsonl")):
        raise UsageError(f"--out must end in .parquet, .jsonl or /: {args.out}")
    return out


def run(args):
    from pipeline.codes import search

    t0 = time.perf_counter()
    so = storage_options(args)
    out = _check_args(args, so)

    def prepare():
        info = _checkpoint(args, so)
        cat = _open_codes(args, info)
        q = _query_codes(args, so, cat, info)
        log.info(
            "%d queries over ~%d codes in %d segments + %d shards (%d-bit codes)",
            *(len(q.ids), cat.n_rows, len(cat.segments), len(cat.shards), cat.meta.nbits),
        )
        return cat, q

    catalogues = lambda prepared: [prepared[0]]  # noqa: E731
    with common.catalogue_session(args, so, prepare, catalogues) as ((cat, q), executor):
        res = search.search(q.codes, cat, args.k, executor)
    summary = {**_summary(q, cat, res), "executor": common.executor_name(executor)}
    if out:
        _write_neighbours(location(args, out), q.ids, res)
        summary["out"] = out
    elif res.indices.size <= 1000:
        summary["neighbors"] = {
            str(qid): [[str(i), int(d)] for i, d in zip(res.ids[r], res.distances[r], strict=True)]
            for r, qid in enumerate(q.ids)
        }
    if args.report:
        summary["report"] = _write_report(args, so, cat, q, res, time.perf_counter() - t0)
    return summary
