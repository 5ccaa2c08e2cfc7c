"""Figures in one house style (matplotlib, Agg): sized for a half-page slot or a slide.

Why a style of its own: figures from every job should look alike and read well when projected:
a colour-blind-safe palette (Okabe-Ito), no top/right spines, a light grid, and PNGs at 200 dpi
so that they stay sharp in a talk.
"""

from __future__ import annotations

import contextlib
import io

PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#d9dee3",
    "grid.linewidth": 0.7,
    "axes.edgecolor": "#3b4650",
    "axes.labelcolor": "#16202a",
    "xtick.color": "#3b4650",
    "ytick.color": "#3b4650",
    "legend.frameon": False,
    "legend.fontsize": 9,
    "lines.linewidth": 1.8,
    "lines.markersize": 4.5,
    "savefig.dpi": 200,
    "figure.dpi": 100,
}
HALF = (6.0, 3.9)  # inches: a half-width slot of the page, 4:3-ish on a slide
WIDE = (11.0, 3.9)


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


@contextlib.contextmanager
def figure(ncols: int = 1, size: tuple[float, float] | None = None):
    """`with figure() as (fig, axes):` draw in the house style (axes: a list of `ncols` Axes);
    then `to_png(fig)`."""
    plt = _plt()
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, ncols, figsize=size or (HALF if ncols == 1 else WIDE))
        axes = list(axes) if ncols > 1 else [axes]
        for ax in axes:
            ax.set_axisbelow(True)
        try:
            yield fig, axes
        except BaseException:
            plt.close(fig)
            raise


def series_style(i: int) -> dict:
    """Colour and marker of the i-th series, the same in every figure of a report."""
    return {"color": PALETTE[i % len(PALETTE)], "marker": MARKERS[i % len(MARKERS)]}


def plain_numbers():
    """A tick formatter that writes 1, 10, 1,000 instead of 10^0, 10^1, 10^3 (log axes)."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}")


def to_png(fig) -> bytes:
    """The figure as PNG bytes (200 dpi, tight), then closed."""
    plt = _plt()
    buf = io.BytesIO()
    with plt.rc_context(STYLE):
        fig.tight_layout(pad=0.6)
        fig.savefig(buf, format="png", bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return buf.getvalue()
