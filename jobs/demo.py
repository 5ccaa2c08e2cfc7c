"""End-to-end demo on built-in defaults: synthesise, train, ingest, compact, benchmark, search,
export.

1. synth: a labelled synthetic THEMIS-style archive (stream0 PGM minute files) for the database,
   and a second one, from another seed, for the queries;
2. train: a compact Im-AlexNet-SP-style hashing model on synthetic aurora frames, rendered as
   the archive holds them and read as ingest reads them (so the MAP train reports is the MAP of
   the codes ingest stores: the summary's "map" holds both);
3. ingest: both archives through Ray (read -> preprocess -> HashEncoder actors -> Parquet shards);
4. compact: the archive's per-file shards into search segments (a Delta Lake table);
5. benchmark: MAP of the query frames against the archive, from the catalogue;
6. search: the nearest frames of one query frame;
7. export: the archive's codes as FAISS binary index parts, one per segment;
8. report: WORKDIR/report.html, one self-contained page (training curves, the benchmark, the
   nearest frames of one query of each class), and WORKDIR/summary.json (the summary line).

Everything lands under --workdir; a re-run reuses what is there (training resumes, ingestion skips
committed shards). The summary line holds each step's figures and the report's path.
"""

import json
import logging
import os
import time

from jobs.common import JobFailed, add_ray_options

HELP = __doc__
log = logging.getLogger("aurorahash.demo")


def add_arguments(p):
    p.add_argument("--workdir", default="runs/demo", help="where everything goes (runs/demo)")
    # the sizes of train's own evaluation (400 queries against 2,000 frames), so that the two
    # MAPs the summary compares differ by the method, not by a small sample
    p.add_argument("--frames", type=int, default=2000, help="archive frames (default 2000)")
    p.add_argument("--query-frames", type=int, default=400, help="query frames (default 400)")
    p.add_argument("--bits", type=int, default=32, help="code length (default 32)")
    p.add_argument("--epochs", type=float, default=8, help="training epochs (default 8)")
    p.add_argument("--n-train", type=int, default=2000, help="training frames (default 2000)")
    p.add_argument("--size", type=int, default=64, help="model input size in px (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of data and training (default 0)")
    p.add_argument("--k", type=int, default=6, help="neighbours shown per query (default 6)")
    add_ray_options(p)


def _job(name: str, argv: list[str]) -> dict:
    """Run another job through its own parser (same validation as the CLI), without printing."""
    from jobs.cli import build_parser

    parser, mods = build_parser()
    args = parser.parse_args([name, *argv])
    t0 = time.perf_counter()
    log.info("demo: aurorahash %s %s", name, " ".join(argv))
    summary = mods[name].run(args)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    return summary


def _pick(summary: dict, *keys) -> dict:
    return {k: summary[k] for k in keys if k in summary}


def _synth(args, archive: str, queries: str, out: dict) -> None:
    """The archive and the query frames (kept from an earlier run in the same workdir)."""
    for key, dst, frames, seed in (
        ("synth_archive", archive, args.frames, args.seed),
        ("synth_queries", queries, args.query_frames, args.seed + 1),
    ):
        if not os.path.exists(dst):
            s = _job("synth", ["--out", dst, "--frames", str(frames), "--seed", str(seed)])
            out[key] = _pick(s, "frames", "files", "seconds")


def _train(args, model: str) -> dict:
    s = _job(
        "train",
        [
            "--dataset", "synthetic-aurora", "--size", str(args.size), "--arch", "compact",
            "--bits", str(args.bits), "--epochs", str(args.epochs), "--seed", str(args.seed),
            "--n-train", str(args.n_train), "--n-database", str(args.n_train),
            "--data-seed", str(args.seed + 2), "--out", model,
        ],
    )  # fmt: skip
    return _pick(s, "map", "accuracy", "params_mb", "train_seconds", "seconds")


def _ingest_and_benchmark(args, w, archive, queries, model, codes, qcodes, out: dict) -> None:
    """Ingest both, compact, benchmark: the MAP of the codes ingest stored, beside train's."""
    from pipeline.ray_runtime import ray_session

    with ray_session(args.ray_address):
        for name, src, dst in (
            ("ingest_archive", archive, codes),
            ("ingest_queries", queries, qcodes),
        ):
            s = _job("ingest", ["--source", src, "--out", dst, "--model", model])
            if s.get("files_failed"):
                raise JobFailed(f"demo: ingesting {src} failed", {name: s})
            out[name] = _pick(
                s, "files_done", "files_skipped", "frames", "quarantined", "frames_per_s", "seconds"
            )
        s = _job("compact", ["--codes", codes])
        out["compact"] = _pick(s, "files", "rows", "segments_written", "seconds")
        bench = ["--database", codes, "--queries", qcodes, "--topk", "50"]
        s = _job("benchmark", [*bench, "--out", f"{w}/benchmark.json"])
        out["benchmark"] = _pick(
            s, "map", "map_tie_aware", "map@50", "n_queries", "n_database", "seconds", "executor"
        )
    out["map"] = {  # the model's MAP as train measured it, and over the codes ingest stored
        "train": out["train"].get("map"),
        "ingested": out["benchmark"].get("map"),
    }


def run(args):
    w = os.path.abspath(args.workdir)
    archive, queries = f"{w}/archive", f"{w}/queries"
    model, codes, qcodes = f"{w}/model", f"{w}/codes", f"{w}/query-codes"
    out = {"workdir": w}
    t0 = time.perf_counter()
    _synth(args, archive, queries, out)
    out["train"] = _train(args, model)
    _ingest_and_benchmark(args, w, archive, queries, model, codes, qcodes, out)
    s = _job(
        "search",
        ["--codes", codes, "--queries", qcodes, "--n-queries", "1", "--k", str(args.k), "--no-ray"],
    )
    ((qid, neighbours),) = s["neighbors"].items()
    out["search"] = {"query": qid, "neighbors": neighbours, "seconds": s["seconds"]}
    s = _job("export", ["--codes", codes, "--out", f"{w}/export", "--format", "faiss"])
    out["export"] = _pick(s, "out", "count", "segments", "parts", "seconds")
    out["total_seconds"] = round(time.perf_counter() - t0, 1)
    return _finish(out, w, model, codes, qcodes, args.k)


def _finish(out: dict, w: str, model: str, codes: str, qcodes: str, k: int) -> dict:
    """WORKDIR/report.html and WORKDIR/summary.json (the summary, with the report's path)."""
    out["report"] = _report(out, w, model, codes, qcodes, k)
    with open(f"{w}/summary.json", "w") as f:
        json.dump(out, f, indent=2, sort_keys=True, default=str)
    log.info("demo report: %s", out["report"])
    return out


def _neighbours(codes: str, qcodes: str, k: int):
    """The nearest archive frames of the first query frame of each class (a gallery)."""
    import numpy as np

    from pipeline.codes import catalogue, search
    from pipeline.reports.search import search_gallery

    cat, qcat = catalogue.open_catalogue(codes), catalogue.open_catalogue(qcodes)
    qc, ql, qids = search.load_all(qcat)
    picks = [int(np.flatnonzero(ql == c)[0]) for c in np.unique(ql) if c >= 0] or [0]
    res = search.search(qc[picks], cat, k)
    return search_gallery(cat, qcat, [str(i) for i in qids[picks]], res)


def _shown(path: str) -> str:
    """A path as the page shows it: relative to the current folder when under it (a report or
    a screenshot should not carry the machine's folders)."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _report(out: dict, w: str, model: str, codes: str, qcodes: str, k: int) -> str:
    """WORKDIR/report.html from the steps' results; returns its path."""
    from pipeline.model.checkpoint import read_config
    from pipeline.reports import write_page
    from pipeline.reports.demo import demo_report

    with open(f"{w}/benchmark.json") as f:
        records = list(json.load(f).values())
    run = {"database": _shown(codes), "queries": _shown(qcodes), "topk": 50}
    ran = out["benchmark"].get("executor")  # small work runs in this process (placement)
    executor = "Ray tasks (local)" if ran == "ray" else "this process"
    run.update(executor=executor, seconds=out["benchmark"]["seconds"])
    history = read_config(model).get("history") or []
    shown = {**out, "workdir": _shown(w)}
    rep = demo_report(shown, history, records, run, _neighbours(codes, qcodes, k))
    return write_page(rep, f"{w}/report.html")
