"""The demo's one-page report: how the model trained, how its ingested codes score, and what a
search finds, from one `make demo` run.

Why one page of other reports' parts: the demo is the project's first impression, so it shows
the same figures as the train, benchmark and search reports (same builders), in one file at a
fixed place (runs/demo/report.html).
"""

from __future__ import annotations

from pipeline.reports.benchmark import benchmark_report
from pipeline.reports.model import Figure, Report, Section, Table
from pipeline.reports.training import HISTORY_CAPTION, history_figure

STEPS = (
    ("synth_archive", "synthesise the archive"),
    ("synth_queries", "synthesise the queries"),
    ("train", "train the model"),
    ("ingest_archive", "ingest the archive (Ray)"),
    ("ingest_queries", "ingest the queries (Ray)"),
    ("compact", "compact into segments"),
    ("benchmark", "benchmark MAP"),
    ("search", "search one query"),
    ("export", "export FAISS index"),
)


def _steps_table(summary: dict) -> Table:
    rows = [
        [label, summary[key].get("seconds")]
        for key, label in STEPS
        if isinstance(summary.get(key), dict)
    ]
    rows.append(["total", summary.get("total_seconds")])
    caption = "Wall time of each step of this run (a step reused from an earlier run is absent)."
    return Table(["step", "seconds"], rows, caption, float_format="{:.1f}", wide=False)


def _map_table(summary: dict) -> Table:
    m = summary.get("map") or {}
    t = summary.get("train") or {}
    rows = [
        ["MAP, as training measured it", m.get("train")],
        ["MAP of the codes ingest stored", m.get("ingested")],
        ["classification accuracy (queries)", t.get("accuracy")],
    ]
    caption = (
        "Training encodes its query and database frames with the same read, preprocessing and "
        "encode path as ingest: the two MAPs measure the same kind of codes (on other frames)."
    )
    return Table(["measure", "value"], rows, caption, wide=False)


def demo_report(summary: dict, history: list[dict], records: list[dict], run: dict, gallery):
    """`summary`: the demo's summary; `history`: the model's per-epoch record; `records` and
    `run`: the benchmark's (`pipeline.reports.benchmark`); `gallery`: neighbours of a few
    queries (`pipeline.reports.search.search_gallery`)."""
    bench = benchmark_report(records, run)
    train = Section("Training", [_map_table(summary), _steps_table(summary)])
    if history:
        fig = Figure("training_history", history_figure(history), HISTORY_CAPTION, wide=True)
        train.blocks.insert(0, fig)
    rec = records[0]
    return Report(
        kind="demo",
        title="aurorahash demo: train, ingest, benchmark, search",
        subtitle="A compact hashing model trained on synthetic aurora, a synthetic THEMIS-style "
        "archive ingested through Ray into code shards, scored by MAP and searched by code.",
        facts=[
            ("workdir", summary["workdir"]),
            ("model", f"{rec['model12']} \u00b7 {rec['nbits']} bits"),
            ("archive frames", f"{rec['n_database']:,}"),
            ("query frames", f"{rec['n_queries']:,}"),
            ("MAP (ingested codes)", f"{rec['map']:.4f}"),
            ("total time", f"{summary.get('total_seconds', 0):.0f} s"),
        ],
        sections=[train, *bench.sections[:2], Section("Nearest frames", [gallery])],
        data={"summary": summary, "history": history, "benchmark": records},
    )
