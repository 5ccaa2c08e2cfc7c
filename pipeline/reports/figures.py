"""The retrieval figures of every report and script, drawn from `RetrievalMetrics` in the house
style (`plots`): PR curves, precision@k, per-class AP and MAP against code length.

Why one module: train, evaluate, benchmark, the demo and the benchmark scripts show the same
numbers, so they draw them with the same code and look alike. A series is `{name: metrics}`;
its legend reads "<name> · <bits> bits". Every function returns PNG bytes (`write_png` puts them
in a local file for --plot and the scripts).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from pipeline.reports import plots

if TYPE_CHECKING:
    from pipeline.metrics import RetrievalMetrics

    Series = dict[str, RetrievalMetrics]

PR_CAPTION = (
    "Left: precision against recall when every database frame within Hamming radius r of the "
    "query is retrieved, one point per radius r = 0..bits (averaged over queries). Right: the "
    "same precision (solid) and recall (dashed) against the radius."
)
PK_CAPTION = (
    "Precision of the first k ranked frames (tie-aware: frames at equal distance count in "
    "expectation), averaged over queries; k on a log scale up to the whole database."
)
CLASS_CAPTION = "Average precision per query class (index ties)."
BITS_CAPTION = "MAP (solid) and tie-aware MAP (hollow) against the code length of each model."
GREY = "#5b6670"


def label(name: str, m: RetrievalMetrics) -> str:
    return f"{name} \u00b7 {m.nbits} bits"


def _below(ax, n: int) -> None:
    """The legend under the axes: a PR curve can pass through every corner."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=min(3, max(n, 1)))


def _pr_axes(ax, series: Series) -> None:
    """Precision against recall, one point per Hamming radius."""
    for i, (name, m) in enumerate(series.items()):
        if m.pr_precision is not None:
            ax.plot(m.pr_recall, m.pr_precision, label=label(name, m), **plots.series_style(i))
    ax.set(xlabel="recall", ylabel="precision", xlim=(-0.02, 1.02), ylim=(0, 1.02))
    ax.set_title("Precision-recall by Hamming radius")


def pr_figure(series: Series) -> bytes:
    """PR curves (left) and precision and recall against the radius (right)."""
    with plots.figure(ncols=2) as (fig, (left, right)):
        _pr_axes(left, series)
        _below(left, len(series))
        for i, (name, m) in enumerate(series.items()):
            if m.pr_precision is None:
                continue
            radius, colour = range(len(m.pr_precision)), plots.series_style(i)["color"]
            right.plot(radius, m.pr_precision, color=colour, label=label(name, m))
            right.plot(radius, m.pr_recall, color=colour, ls="--")
        right.set(xlabel="Hamming radius r", ylabel="precision / recall", ylim=(0, 1.02))
        right.set_xlim(0, max(m.nbits for m in series.values()))
        right.set_title("Within radius r")
        right.plot([], [], label="precision", color=GREY, lw=1.5)
        right.plot([], [], ls="--", label="recall", color=GREY, lw=1.5)
        handles, labels = right.get_legend_handles_labels()
        keep = [i for i, lab in enumerate(labels) if lab in ("precision", "recall")]
        right.legend([handles[i] for i in keep], [labels[i] for i in keep], loc="center right")
    return plots.to_png(fig)


def precision_at_k_figure(series: Series) -> bytes:
    """Tie-aware P@k (index ties where that is all there is), k up to the database size."""
    with plots.figure() as (fig, (ax,)):
        for i, (name, m) in enumerate(series.items()):
            pk = m.precision_at_k_tie_aware or m.precision_at_k
            ks = sorted(k for k in pk if not m.n_database or k <= m.n_database)
            ax.plot(ks, [pk[k] for k in ks], label=label(name, m), **plots.series_style(i))
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(plots.plain_numbers())
        ax.set(xlabel="k (ranked frames retrieved)", ylabel="precision@k", ylim=(0, 1.02))
        ax.set_title("Precision at k")
        ax.legend(loc="lower left")
    return plots.to_png(fig)


def per_class_figure(series: Series) -> bytes:
    """Bars of each query class's AP, one colour per model."""
    names = {}
    for m in series.values():
        for c in m.per_class:
            names.setdefault(c.label, c.name)
    labels = sorted(names)
    x = np.arange(len(labels))
    width = 0.8 / len(series)
    with plots.figure() as (fig, (ax,)):
        for i, (name, m) in enumerate(series.items()):
            ap = {c.label: c.ap for c in m.per_class}
            pos = x - 0.4 + width * (i + 0.5)
            colour = plots.series_style(i)["color"]
            vals = [ap.get(c, np.nan) for c in labels]
            bars = ax.bar(pos, vals, width * 0.92, color=colour, label=label(name, m))
            if len(series) <= 3:
                ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
        ax.set_xticks(x, [names[c].replace("_", "\n") for c in labels])
        ax.set(ylabel="average precision", ylim=(0, 1.08))
        ax.grid(axis="x", visible=False)
        ax.set_title("AP per query class")
        if len(series) > 1:
            _below(ax, len(series))
    return plots.to_png(fig)


def map_vs_bits_figure(series: Series) -> bytes:
    """MAP and tie-aware MAP of each model at its code length, each point named."""
    items = sorted(series.items(), key=lambda kv: kv[1].nbits)
    bits = [m.nbits for _, m in items]
    ls = "-" if len(set(bits)) == len(bits) else "none"  # one model per length: a line
    with plots.figure() as (fig, (ax,)):
        st = plots.series_style(0)
        ax.plot(bits, [m.map for _, m in items], ls=ls, label="MAP", **st)
        aware = [m.map_tie_aware for _, m in items]
        mark = {"color": st["color"], "marker": "o", "mfc": "white"}
        ax.plot(bits, aware, ls=ls, label="MAP (tie-aware)", **mark)
        for name, m in items:
            at = {"textcoords": "offset points", "xytext": (4, 4), "fontsize": 7, "color": GREY}
            ax.annotate(name[:6], (m.nbits, m.map), **at)
        ax.set_xticks(sorted(set(bits)))
        ax.set(xlabel="code length (bits)", ylabel="MAP", ylim=(0, 1.02))
        ax.set_title("MAP against code length")
        ax.legend(loc="lower right")
    return plots.to_png(fig)


def _lengths_axes(ax, runs: dict[str, list], reference: dict | None) -> None:
    """MAP against code length, one line per group of runs, references dashed."""
    for i, (group, group_runs) in enumerate(runs.items()):
        pts = sorted((m.nbits, m.map) for m in group_runs)
        ax.plot(*zip(*pts, strict=True), label=group, **plots.series_style(i))
    for j, (name, pts) in enumerate((reference or {}).items()):
        bits = sorted(int(b) for b in pts)
        vals = [pts[b] if b in pts else pts[str(b)] for b in bits]
        st = plots.series_style(len(runs) + j)
        ax.plot(bits, vals, ls="--", color=st["color"], marker="x", label=name)
    ax.set(xlabel="code length (bits)", ylabel="MAP")
    ax.set_title("MAP against code length")
    if ax.lines:
        _below(ax, len(ax.lines))


def runs_figure(runs: dict[str, list], pr: Series, reference=None, title=None) -> bytes:
    """Training runs side by side: MAP against code length per group of runs `{group: [metrics,
    ...]}` with published `reference` figures `{name: {bits: map}}` (left), and the PR curves
    of `pr` (right)."""
    with plots.figure(ncols=2) as (fig, (left, right)):
        _lengths_axes(left, runs, reference)
        _pr_axes(right, pr)
        if pr:
            _below(right, len(pr))
        if title:
            fig.suptitle(title, fontweight="bold")
    return plots.to_png(fig)


def write_png(png: bytes, path: str) -> str:
    """PNG bytes into a local file (its folder made); returns the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(png)
    return path
