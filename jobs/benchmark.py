"""MAP benchmark of hashing models over whole archives of code shards.

For every model found under --database (or the one given by --model), the labelled frames of
--queries are ranked against every database frame by Hamming distance and scored by MAP, exactly:
ties broken by the canonical frame order (`map`) and tie-aware (`map_tie_aware`), plus MAP@K with
--topk, a precision/recall curve per Hamming radius (0..bits), tie-aware precision@k and AP per
query class. The database is read through its catalogue (compacted segments plus shards not yet
compacted) in tasks of about a million codes, two passes, run in this process or by Ray tasks
(`pipeline.codes.placement`: Ray when a cluster is named or the catalogue is large; --ray /
--no-ray force either).

--out writes these results as one JSON file. --report writes a report to read: a new dated folder
DIR/<UTC time>-benchmark/ holding report.html (self-contained: tables and figures inline),
report.json and the figures as PNGs; it never overwrites an older report.

Example:
  aurorahash benchmark --queries out/query-codes --database out/codes --topk 100 \\
      --report reports/map/
"""

import json
import logging
import time

from jobs import common
from jobs.common import UsageError, location, ray_address, storage_options

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
        metavar="FILE",
        help="write the results (JSON: per model MAPs, PR curve per Hamming radius, P@k, "
        "per-class AP, provenance) to this file; a folder (ending in / or existing) gets "
        "benchmark.json inside; replaces that file",
    )
    p.add_argument(
        "--report",
        default=None,
        metavar="DIR",
        help="write an HTML report (with report.json and PNG figures) into a new folder "
        "DIR/<UTC time>-benchmark/; never overwrites an older report",
    )
    common.add_executor_options(p, "run in this process, without Ray")


def _load(root, args):
    """One model's catalogue and its labelled queries (the driver's part, before any task)."""
    from pipeline.codes import catalogue, search

    cat = catalogue.open_catalogue(root)
    queries = catalogue.open_catalogue(location(args, args.queries), cat.meta.model)
    qcodes, qlabels, _ = search.load_all(queries)
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


def _run_info(args, seconds: float, executor) -> dict:
    """What the report says about the run itself."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        release = version("aurorahash")
    except PackageNotFoundError:
        release = None
    where = ray_address(args) or "a local instance"
    return {
        "database": args.database,
        "queries": args.queries,
        "topk": args.topk,
        "n_queries_limit": args.n_queries,
        "executor": "this process" if executor is None else f"Ray tasks on {where}",
        "seconds": round(seconds, 3),
        "aurorahash": release,
    }


def _write(args, so, records: list[dict], run: dict) -> dict:
    """--out (the records as JSON) and --report (a dated report folder); what the summary says."""
    from pipeline import storage
    from pipeline.reports.benchmark import benchmark_report

    written = {}
    if args.out:
        out = common.output_file(args.out, "benchmark.json", so)
        doc = json.dumps({r["model"]: r for r in records}, indent=2).encode()
        storage.atomic_write_bytes(out, doc, so)
        written["out"] = out
    if args.report:
        written["report"] = common.write_report(benchmark_report(records, run), args.report, so)
    return written


def run(args):
    from pipeline.codes import catalogue, search
    from pipeline.reports.benchmark import model_record

    t0 = time.perf_counter()
    if args.topk is not None and args.topk < 1:
        raise UsageError(f"--topk must be >= 1, got {args.topk}")
    so = storage_options(args)
    roots = catalogue.select_roots(location(args, args.database), args.model)
    results, records = {}, []
    prepare = lambda: [_load(r, args) for r in roots]  # noqa: E731
    catalogues = lambda models: [m[0] for m in models]  # noqa: E731
    passes = 2 if args.topk is None else 3  # two for MAP, one more for MAP@K's k-NN
    with common.catalogue_session(args, so, prepare, catalogues, passes) as (models, executor):
        for cat, qcodes, qlabels in models:
            res = search.evaluate_map(qcodes, qlabels, cat, executor, args.topk)
            results[cat.meta.model12] = {
                "nbits": cat.meta.nbits,
                "segments": len(cat.segments),
                "shards": len(cat.shards),
                **res.benchmark_summary(),
            }
            records.append(model_record(cat, res))
    summary = {"models": results, "executor": common.executor_name(executor)}
    run_info = _run_info(args, time.perf_counter() - t0, executor)
    summary.update(_write(args, so, records, run_info))
    if len(results) == 1:
        summary.update(next(iter(results.values())))
    return summary
