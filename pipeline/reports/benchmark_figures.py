"""The benchmark report's figures, from the JSON records of `pipeline.reports.benchmark`."""

from __future__ import annotations

import numpy as np

from pipeline.reports import plots

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


def _label(r: dict) -> str:
    return f"{r['model12']} \u00b7 {r['nbits']} bits"


def pr_figure(records: list[dict]) -> bytes:
    with plots.figure(ncols=2) as (fig, (left, right)):
        for i, r in enumerate(records):
            st = plots.series_style(i)
            left.plot(r["pr_recall"], r["pr_precision"], label=_label(r), **st)
            right.plot(r["pr_radius"], r["pr_precision"], color=st["color"], label=_label(r))
            right.plot(r["pr_radius"], r["pr_recall"], color=st["color"], ls="--")
        left.set(xlabel="recall", ylabel="precision", xlim=(-0.02, 1.02), ylim=(0, 1.02))
        left.set_title("Precision-recall by Hamming radius")
        right.set(xlabel="Hamming radius r", ylabel="precision / recall", ylim=(0, 1.02))
        right.set_xlim(0, max(r["nbits"] for r in records))
        right.set_title("Within radius r")
        # below the axes: a PR curve can pass through every corner (rising at recall 0)
        left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=min(3, len(records)))
        grey = {"color": "#5b6670", "lw": 1.5}
        right.plot([], [], label="precision", **grey)
        right.plot([], [], ls="--", label="recall", **grey)
        handles, labels = right.get_legend_handles_labels()
        keep = [i for i, lab in enumerate(labels) if lab in ("precision", "recall")]
        right.legend([handles[i] for i in keep], [labels[i] for i in keep], loc="center right")
    return plots.to_png(fig)


def precision_at_k_figure(records: list[dict]) -> bytes:
    with plots.figure() as (fig, (ax,)):
        for i, r in enumerate(records):
            pk = r["precision_at_k"]
            ax.plot(pk["k"], pk["precision"], label=_label(r), **plots.series_style(i))
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(plots.plain_numbers())
        ax.set(xlabel="k (ranked frames retrieved)", ylabel="precision@k", ylim=(0, 1.02))
        ax.set_title("Precision at k")
        ax.legend(loc="lower left")
    return plots.to_png(fig)


def per_class_figure(records: list[dict]) -> bytes:
    names = {}
    for r in records:
        for c in r["per_class"]:
            names.setdefault(c["label"], c["name"])
    labels = sorted(names)
    x = np.arange(len(labels))
    width = 0.8 / len(records)
    with plots.figure() as (fig, (ax,)):
        for i, r in enumerate(records):
            ap = {c["label"]: c["ap"] for c in r["per_class"]}
            vals = [ap.get(lab, np.nan) for lab in labels]
            pos = x - 0.4 + width * (i + 0.5)
            bars = ax.bar(
                pos, vals, width * 0.92, color=plots.series_style(i)["color"], label=_label(r)
            )
            if len(records) <= 3:
                ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
        ax.set_xticks(x, [names[lab].replace("_", "\n") for lab in labels])
        ax.set(ylabel="average precision", ylim=(0, 1.08))
        ax.grid(axis="x", visible=False)
        ax.set_title("AP per query class")
        if len(records) > 1:
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=min(3, len(records)))
    return plots.to_png(fig)


def map_vs_bits_figure(records: list[dict]) -> bytes:
    rs = sorted(records, key=lambda r: r["nbits"])
    bits = [r["nbits"] for r in rs]
    one_per_length = len(set(bits)) == len(bits)
    with plots.figure() as (fig, (ax,)):
        st = plots.series_style(0)
        ls = "-" if one_per_length else "none"
        ax.plot(bits, [r["map"] for r in rs], ls=ls, label="MAP", **st)
        ax.plot(
            bits,
            [r["map_tie_aware"] for r in rs],
            ls=ls,
            color=st["color"],
            marker="o",
            mfc="white",
            label="MAP (tie-aware)",
        )
        for r in rs:
            ax.annotate(
                r["model12"][:6],
                (r["nbits"], r["map"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
                color="#5b6670",
            )
        ax.set_xticks(sorted(set(bits)))
        ax.set(xlabel="code length (bits)", ylabel="MAP", ylim=(0, 1.02))
        ax.set_title("MAP against code length")
        ax.legend(loc="lower right")
    return plots.to_png(fig)
