"""One record of retrieval scores, whichever job measured them.

Why a record of its own: train and evaluate score codes in memory
(`pipeline.training.evaluate.retrieval_metrics`), the benchmark scores a whole archive task by task
(`pipeline.codes.search.evaluate_map`); the reports draw both with the same figures
(`pipeline.reports.figures`). So both produce a `RetrievalMetrics`, and the reports read it.

Its JSON has the two layouts that the jobs have always printed, and they stay as they are:
`to_dict()` is what train and evaluate print (`bits`, `queries`, `database`, `pr_curve`, P@k by
`"k"`); `benchmark_summary()` and `benchmark_dict()` are what the benchmark prints and writes
(`n_queries`, `n_database`, run time, `pr_radius`..., tie-aware P@k as lists, per-class AP).
`from_dict` reads either back (reports of saved runs). A leaf: NumPy, and kernels inside two
helpers only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _r6(v) -> float:
    return round(float(v), 6)


@dataclass(frozen=True)
class ClassAP:
    """Mean AP of the queries of one class (index ties and tie-aware)."""

    label: int
    name: str
    queries: int
    ap: float
    ap_tie_aware: float

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "name": self.name,
            "queries": self.queries,
            "ap": _r6(self.ap),
            "ap_tie_aware": _r6(self.ap_tie_aware),
        }


@dataclass(kw_only=True)
class RetrievalMetrics:
    """Every query ranked against the whole database by Hamming distance: MAP (ties by database
    index, and tie-aware), MAP of the first `topk`, P@k, precision/recall per Hamming radius
    0..nbits and, where measured, the class head's accuracy, per-class AP and the run's cost."""

    nbits: int
    n_queries: int
    n_database: int
    map: float
    map_tie_aware: float
    topk: int | None = None
    map_at_k: float | None = None  # MAP of the first `topk` ranked items
    accuracy: float | None = None  # class head on the queries (train / evaluate)
    precision_at_k: dict[int, float] = field(default_factory=dict)  # ties by index
    precision_at_k_tie_aware: dict[int, float] = field(default_factory=dict)
    pr_precision: list[float] | None = None  # per Hamming radius 0..nbits
    pr_recall: list[float] | None = None
    per_class: list[ClassAP] = field(default_factory=list)  # benchmark
    seconds: float | None = None  # benchmark: the run's time and tasks
    tasks: int = 0

    @property
    def comparisons_per_s(self) -> float:
        return self.n_queries * self.n_database / max(self.seconds or 0.0, 1e-9)

    def _pr_curve(self) -> dict:
        return {
            "radius": list(range(len(self.pr_precision))),
            "precision": [_r6(v) for v in self.pr_precision],
            "recall": [_r6(v) for v in self.pr_recall],
        }

    def to_dict(self) -> dict:
        """The train and evaluate jobs' keys (their JSON line, metrics.json, report.json)."""
        out = {
            "bits": int(self.nbits),
            "queries": int(self.n_queries),
            "database": int(self.n_database),
            "map": float(self.map),
            "map_tie_aware": float(self.map_tie_aware),
        }
        if self.map_at_k is not None:
            out[f"map@{self.topk}"] = float(self.map_at_k)
        if self.accuracy is not None:
            out["accuracy"] = float(self.accuracy)
        out["precision_at_k"] = {str(k): _r6(v) for k, v in self.precision_at_k.items()}
        aware = self.precision_at_k_tie_aware
        out["precision_at_k_tie_aware"] = {str(k): _r6(v) for k, v in aware.items()}
        if self.pr_precision is not None:
            out["pr_curve"] = self._pr_curve()
        return out

    def benchmark_summary(self) -> dict:
        """The benchmark job's numbers per model (its JSON line)."""
        out = {
            "map": _r6(self.map),
            "map_tie_aware": _r6(self.map_tie_aware),
            "n_queries": self.n_queries,
            "n_database": self.n_database,
            "tasks": self.tasks,
            "seconds": round(self.seconds or 0.0, 3),
            "comparisons_per_s": float(f"{self.comparisons_per_s:.4g}"),
        }
        if self.map_at_k is not None:
            out[f"map@{self.topk}"] = _r6(self.map_at_k)
        return out

    def benchmark_dict(self) -> dict:
        """`benchmark_summary()` plus the curves and per-class AP (--out, report.json)."""
        pr = self._pr_curve() if self.pr_precision is not None else {}
        pk = self.precision_at_k_tie_aware
        return {
            **self.benchmark_summary(),
            "topk": self.topk,
            "pr_radius": pr.get("radius", []),
            "pr_precision": pr.get("precision", []),
            "pr_recall": pr.get("recall", []),
            "precision_at_k": {"k": list(pk), "precision": [_r6(v) for v in pk.values()]},
            "per_class": [c.to_dict() for c in self.per_class],
        }

    @classmethod
    def from_dict(cls, d: dict) -> RetrievalMetrics:
        """A record back from either layout (a saved metrics.json, results.json or benchmark
        record); keys it does not know are ignored."""
        topk = d.get("topk")
        if topk is None:
            topk = next((int(k[4:]) for k in d if k.startswith("map@")), None)
        pk, aware = d.get("precision_at_k") or {}, d.get("precision_at_k_tie_aware") or {}
        if "k" in pk:  # benchmark layout: tie-aware, as lists
            pk, aware = {}, dict(zip(pk["k"], pk["precision"], strict=True))
        pr = d.get("pr_curve") or {
            "precision": d.get("pr_precision"),
            "recall": d.get("pr_recall"),
        }
        return cls(
            nbits=int(d.get("nbits", d.get("bits", 0))),
            n_queries=int(d.get("n_queries", d.get("queries", 0))),
            n_database=int(d.get("n_database", d.get("database", 0))),
            map=float(d["map"]),
            map_tie_aware=float(d.get("map_tie_aware", np.nan)),
            topk=topk,
            map_at_k=d.get(f"map@{topk}") if topk is not None else None,
            accuracy=d.get("accuracy"),
            precision_at_k={int(k): float(v) for k, v in pk.items()},
            precision_at_k_tie_aware={int(k): float(v) for k, v in aware.items()},
            pr_precision=pr["precision"] or None,
            pr_recall=pr["recall"] or None,
            per_class=[ClassAP(**c) for c in d.get("per_class") or []],
            seconds=d.get("seconds"),
            tasks=int(d.get("tasks") or 0),
        )


def k_grid(n_database: int, topk: int | None = None) -> list[int]:
    """1, 2, 5, 10, 20, 50, ... below the database size, plus the size itself and topk."""
    ks = {m * 10**e for e in range(12) for m in (1, 2, 5) if m * 10**e < n_database}
    ks.add(n_database)
    if topk is not None:
        ks.add(min(topk, n_database))
    return sorted(k for k in ks if k >= 1)


def precision_at_k_from_histograms(hist_all, hist_rel, ks) -> dict[int, float]:
    """Tie-aware P@k averaged over queries, from per-distance counts (exact, no ranking)."""
    import kernels

    pk = kernels.precision_at_k_from_histograms(hist_all, hist_rel, ks).mean(axis=0)
    return {int(k): float(v) for k, v in zip(ks, pk, strict=True)}


def per_class(aps, aps_tie_aware, query_labels, classes) -> list[ClassAP]:
    """Mean AP (index ties and tie-aware) of the queries of each class, in class-id order."""
    out = []
    for c in np.unique(query_labels):
        m = query_labels == c
        name = classes[c] if 0 <= c < len(classes) else str(c)
        q = int(m.sum())
        out.append(ClassAP(int(c), name, q, float(aps[m].mean()), float(aps_tie_aware[m].mean())))
    return out
