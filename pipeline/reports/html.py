"""Render a `Report` as one self-contained HTML page (jinja2, autoescaped).

Why self-contained: reports are mailed, archived and opened offline years later, so the CSS is
inline, images are data: URIs, and the page loads nothing from the network (no fonts, no
scripts, no CDN). Figures and tables are numbered in order of appearance.
"""

from __future__ import annotations

import base64
import math
import numbers
from pathlib import Path

import jinja2

from pipeline.reports.model import Figure, Gallery, Report, Table, Text

TEMPLATES = Path(__file__).with_name("templates")


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _cell(v, float_format: str) -> tuple[str, bool]:
    """(text, numeric) of one table cell."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "\u2013", True
    if isinstance(v, bool) or not isinstance(v, numbers.Number):
        return str(v), False
    if isinstance(v, numbers.Integral):
        return f"{int(v):,}", True
    return float_format.format(v), True


def _table_view(t: Table) -> dict:
    best = {}
    for name in t.best:
        j = t.columns.index(name)
        vals = [r[j] for r in t.rows if isinstance(r[j], numbers.Number) and r[j] == r[j]]
        if len(vals) > 1:
            best[j] = max(vals)
    fmts = [t.formats.get(c, t.float_format) for c in t.columns]
    mono = [c in t.mono for c in t.columns]
    rows = []
    for r in t.rows:
        cells = []
        for j, v in enumerate(r):
            text, numeric = _cell(v, fmts[j])
            cls = ("num" if numeric else "txt") + (" mono" if mono[j] else "")
            cells.append(
                {"text": text, "cls": cls + (" best" if j in best and v == best[j] else "")}
            )
        rows.append(cells)
    numeric = [bool(rows) and all("num" in row[j]["cls"] for row in rows) for j in range(len(mono))]
    return {
        "kind": "table",
        "caption": t.caption,
        "columns": t.columns,
        "rows": rows,
        "numeric": numeric,
        "wide": t.wide,
    }


def _block_view(b, counters: dict) -> dict:
    if isinstance(b, Table):
        counters["table"] += 1
        return {**_table_view(b), "number": counters["table"]}
    if isinstance(b, Figure):
        counters["figure"] += 1
        return {
            "kind": "figure",
            "number": counters["figure"],
            "src": data_uri(b.png),
            "caption": b.caption,
            "alt": b.alt or b.caption or b.name,
            "wide": b.wide,
            "name": b.name,
        }
    if isinstance(b, Gallery):
        counters["figure"] += 1
        rows = [
            (
                head,
                [
                    {"src": data_uri(t.png), "title": t.title, "note": t.note, "mark": t.mark or ""}
                    for t in tiles
                ],
            )
            for head, tiles in b.rows
        ]
        return {"kind": "gallery", "number": counters["figure"], "rows": rows, "caption": b.caption}
    if isinstance(b, Text):
        return {"kind": "text", "text": b.text}
    raise TypeError(f"not a report block: {type(b).__name__}")


def render_html(report: Report, created: str = "") -> str:
    """The page as a string; `created` (ISO time) is shown in the header and footer."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    counters = {"table": 0, "figure": 0}
    sections = [
        {"title": s.title, "intro": s.intro, "blocks": [_block_view(b, counters) for b in s.blocks]}
        for s in report.sections
    ]
    return env.get_template("report.html.j2").render(
        title=report.title,
        subtitle=report.subtitle,
        kind=report.kind,
        facts=report.facts,
        sections=sections,
        created=created,
    )
