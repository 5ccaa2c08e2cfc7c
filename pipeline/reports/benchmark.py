"""The MAP benchmark's results per model (JSON records) and its report (tables and figures).

Why here and not in the job: `aurorahash benchmark` writes the same records to `--out` (JSON)
and to `--report` (HTML + JSON + PNGs), and the nightly job reads them back; the numbers come
from one `RetrievalMetrics` per model (`search.evaluate_map`: P@k tie-aware, from the distance
histograms summed over the whole database, exact; per-class AP the mean AP of each class's
queries). The figures are `pipeline.reports.figures`, drawn from the records as written.
"""

from __future__ import annotations

from pipeline.metrics import RetrievalMetrics
from pipeline.reports import figures as figs
from pipeline.reports.model import Figure, Report, Section, Table


def model_record(cat, m: RetrievalMetrics) -> dict:
    """One model's results (--out, report.json): provenance of its codes, then the benchmark's
    numbers, PR per Hamming radius (0..nbits), tie-aware P@k and per-class AP."""
    return {
        "model": cat.meta.model,
        "model12": cat.meta.model12,
        "nbits": cat.meta.nbits,
        "classes": list(cat.meta.classes),
        "segments": len(cat.segments),
        "shards": len(cat.shards),
        **m.benchmark_dict(),
    }


def metrics_of(records: list[dict]) -> dict[str, RetrievalMetrics]:
    """{model12: metrics} of records (as written, so also those read back from --out)."""
    return {r["model12"]: RetrievalMetrics.from_dict(r) for r in records}


def series_label(rec: dict) -> str:
    return f"{rec['model12']} \u00b7 {rec['nbits']} bits"


def _map_table(records, topk) -> Table:
    cols = ["model", "bits", "queries", "database", "MAP", "MAP (tie-aware)"]
    if topk is not None:
        cols.append(f"MAP@{topk}")
    cols.append("seconds")
    rows = []
    for r in records:
        row = [r["model12"], r["nbits"], r["n_queries"], r["n_database"], r["map"]]
        row.append(r["map_tie_aware"])
        if topk is not None:
            row.append(r[f"map@{topk}"])
        rows.append([*row, r["seconds"]])
    best = ("MAP", "MAP (tie-aware)") + ((f"MAP@{topk}",) if topk is not None else ())
    caption = (
        "Mean average precision of every labelled query ranked against the whole database by "
        "Hamming distance. MAP breaks ties by the archive's canonical frame order; tie-aware "
        "MAP is the expectation over random orders within ties (He et al., CVPR 2018)"
        + (f"; MAP@{topk} scores the first {topk} ranked frames only." if topk else ".")
        + (" Best per column in bold." if len(records) > 1 else "")
    )
    return Table(cols, rows, caption, formats={"seconds": "{:.2f}"}, best=best, mono=("model",))


def _class_table(records, wide: bool) -> Table:
    names = {}
    for r in records:
        for c in r["per_class"]:
            names.setdefault(c["label"], (c["name"], c["queries"]))
    by_bits = len({r["nbits"] for r in records}) == len(records)
    heads = [f"{r['nbits']} bits" if by_bits else r["model12"] for r in records]
    cols = ["class", "queries"] + (["AP", "AP (tie-aware)"] if len(records) == 1 else heads)
    rows = []
    for label in sorted(names):
        if len(records) == 1:
            c = next(c for c in records[0]["per_class"] if c["label"] == label)
            rows.append([*names[label], c["ap"], c["ap_tie_aware"]])
            continue
        ap = [{c["label"]: c["ap"] for c in r["per_class"]}.get(label) for r in records]
        rows.append([*names[label], *ap])
    caption = "Average precision per query class: the mean AP of that class's queries" + (
        "." if len(records) == 1 else " (index ties), per model. Query counts: the first model's."
    )
    return Table(cols, rows, caption, wide=wide)


def _provenance_table(records) -> Table:
    cols = ["model id", "bits", "segments", "shards", "database codes", "tasks", "seconds"]
    rows = [
        [
            r["model"],
            r["nbits"],
            r["segments"],
            r["shards"],
            r["n_database"],
            r["tasks"],
            r["seconds"],
        ]
        for r in records
    ]
    caption = (
        "Provenance of the codes: the model id (sha256 of the weights, architecture, "
        "preprocessing and encode settings) under which they were ingested, their length, and "
        "the compacted segments and not-yet-compacted shards read."
    )
    return Table(cols, rows, caption, float_format="{:.2f}", mono=("model id",))


def _facts(records, run: dict) -> list[tuple[str, str]]:
    q = sorted({r["n_queries"] for r in records})
    n = sorted({r["n_database"] for r in records})
    return [
        ("database", run["database"]),
        ("queries", run["queries"]),
        ("models", ", ".join(series_label(r) for r in records)),
        ("queries scored", " / ".join(f"{v:,}" for v in q)),
        ("database codes", " / ".join(f"{v:,}" for v in n)),
        ("executor", run["executor"]),
        ("run time", f"{run['seconds']:.1f} s"),
    ]


def benchmark_report(records: list[dict], run: dict) -> Report:
    """The report of one benchmark run. `run`: database, queries, topk, executor, seconds.

    Layout: the MAP table; P@k beside MAP against code length (several lengths) or beside the
    per-class AP; the PR curves across the page; per-class AP beside its table.
    """
    records = sorted(records, key=lambda r: (r["nbits"], r["model"]))
    several = len({r["nbits"] for r in records}) > 1
    series = metrics_of(records)
    pk = Figure("precision_at_k", figs.precision_at_k_figure(series), figs.PK_CAPTION)
    bars = Figure("per_class_ap", figs.per_class_figure(series), figs.CLASS_CAPTION)
    if several:
        bits = Figure("map_vs_bits", figs.map_vs_bits_figure(series), figs.BITS_CAPTION)
        results, per_class = [bits, pk], [bars, _class_table(records, wide=False)]
    else:
        results, per_class = [pk, bars], [_class_table(records, wide=True)]
    pr = Figure("pr_curves", figs.pr_figure(series), figs.PR_CAPTION, wide=True)
    n = len(records)
    return Report(
        kind="benchmark",
        title="Hashing retrieval benchmark",
        subtitle=(
            f"Mean average precision of {n} model{'s' if n > 1 else ''} over the whole archive "
            "of codes, by exact Hamming ranking."
        ),
        facts=_facts(records, run),
        sections=[
            Section("Results", [_map_table(records, run.get("topk")), *results]),
            Section("Precision and recall", [pr]),
            Section("Per class", per_class),
            Section("Provenance", [_provenance_table(records)]),
        ],
        data={"run": run, "models": records},
    )
