"""Reports that people read: one self-contained HTML page, its JSON and PNG figures per run.

Why a package of its own: benchmark, train, evaluate and search reports should look alike and be
safe to open anywhere (no network, images inline), so the jobs build a `Report` of blocks and
leave the layout, the figure style and the writing of the dated folder to these modules.

    from pipeline.reports import Figure, Report, Section, Table, write_report
    from pipeline.reports import plots, thumbnail

    with plots.figure() as (fig, (ax,)):    # matplotlib (Agg) in the house style
        ax.plot(recall, precision, label="32 bits", **plots.series_style(0))
    rep = Report(
        kind="benchmark",
        title="MAP benchmark",
        facts=[("database", uri)],
        sections=[Section("Results", [Table(cols, rows, "MAP per model"),
                                      Figure("pr", plots.to_png(fig), "PR curves")])],
        data={...},                         # what report.json holds beside report.html
    )
    folder = write_report(rep, "reports/", storage_options)  # reports/2026-11-30T231500Z-benchmark
    tile_png = thumbnail.thumbnail_png(frame_uint16, size=160)  # for Gallery / Tile
"""

from pipeline.reports.folder import report_name, write_report
from pipeline.reports.html import render_html
from pipeline.reports.model import Figure, Gallery, Report, Section, Table, Text, Tile

__all__ = [
    "Figure",
    "Gallery",
    "Report",
    "Section",
    "Table",
    "Text",
    "Tile",
    "render_html",
    "report_name",
    "write_report",
]
