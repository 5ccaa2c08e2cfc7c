"""Figures for the report: PR curves and MAP vs code length (matplotlib, Agg backend, PNG).

plot_pr_curves({"label": metrics_with_pr_curve, ...}, "pr.png")
plot_map_vs_bits({"series": {bits: map, ...}, ...}, "map.png", reference={...})
plot_report(results, "report.png")   # both side by side from a list of result dicts
"""

from __future__ import annotations

import os


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _pr_axes(ax, curves: dict) -> None:
    for label, m in curves.items():
        pr = m.get("pr_curve") if isinstance(m, dict) else None
        if not pr:
            continue
        pts = [(r, p) for r, p in zip(pr["recall"], pr["precision"], strict=True) if p is not None]
        if pts:
            ax.plot([r for r, _ in pts], [p for _, p in pts], marker=".", ms=3, label=label)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title("PR curves (Hamming radius 0..bits)")
    if ax.lines:
        ax.legend(fontsize=7)


def _map_axes(ax, series: dict, reference: dict | None = None) -> None:
    for label, pts in series.items():
        bits = sorted(int(b) for b in pts)
        ax.plot(bits, [pts[b] if b in pts else pts[str(b)] for b in bits], marker="o", label=label)
    for label, pts in (reference or {}).items():
        bits = sorted(int(b) for b in pts)
        ax.plot(
            bits,
            [pts[b] if b in pts else pts[str(b)] for b in bits],
            ls="--",
            marker="x",
            label=label,
        )
    ax.set_xlabel("code length (bits)")
    ax.set_ylabel("MAP")
    ax.grid(alpha=0.3)
    ax.set_title("MAP vs bits")
    if ax.lines:
        ax.legend(fontsize=7)


def _save(fig, path: str) -> str:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def plot_pr_curves(curves: dict, path: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    _pr_axes(ax, curves)
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_map_vs_bits(series: dict, path: str, reference: dict | None = None) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    _map_axes(ax, series, reference)
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_report(
    map_series: dict, pr_curves: dict, path: str, reference: dict | None = None, title=None
) -> str:
    """MAP vs bits (left) and PR curves (right) in one PNG."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    _map_axes(a, map_series, reference)
    _pr_axes(b, pr_curves)
    if title:
        fig.suptitle(title)
    out = _save(fig, path)
    plt.close(fig)
    return out
