"""Exact AP/MAP for real-valued similarity scores (the CNN retrieval peers), in NumPy.

Same conventions as `kernels.mean_average_precision(topk=None, ties="index")`: the database is
ranked by decreasing score, equal scores by database index (a stable sort); AP is the mean, over
the relevant items, of the precision at their rank (0 for a query with no relevant item). An item
is relevant when it shares a class with the query (1-D class ids, or 2-D multi-hot rows sharing a
label).
"""

from __future__ import annotations

import numpy as np

from pipeline.errors import BadInput


def _relevance(q_labels, db_labels) -> np.ndarray:
    ql, dl = np.asarray(q_labels), np.asarray(db_labels)
    if ql.ndim != dl.ndim or ql.ndim not in (1, 2):
        raise BadInput("labels must be both 1-D class ids or both 2-D multi-hot")
    if ql.ndim == 1:
        return ql[:, None] == dl[None, :]
    return (ql.astype(np.float64) @ dl.astype(np.float64).T) > 0


def average_precision_scores(scores, q_labels, db_labels) -> np.ndarray:
    """AP (q,) of a dense score block (q, n): higher score = more similar."""
    s = np.asarray(scores)
    if s.ndim != 2 or s.shape != (len(q_labels), len(db_labels)):
        raise BadInput(f"scores must be (queries, database), got {s.shape}")
    if s.size and not np.isfinite(s).all():
        raise BadInput("scores hold NaN or infinite values")
    order = np.argsort(-s, axis=1, kind="stable")
    rel = np.take_along_axis(_relevance(q_labels, db_labels), order, axis=1)
    hits = np.cumsum(rel, axis=1)
    ranks = np.arange(1, s.shape[1] + 1)
    nrel = hits[:, -1] if s.shape[1] else np.zeros(len(s), np.int64)
    num = (np.where(rel, hits, 0) / ranks).sum(1)
    return np.where(nrel > 0, num / np.maximum(nrel, 1), 0.0)


def l2n(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def cosine_average_precision(q, db, q_labels, db_labels, chunk: int = 100) -> np.ndarray:
    """AP of each query when the database is ranked by cosine similarity of the vectors."""
    qn, dn = l2n(q), l2n(db)
    ql = np.asarray(q_labels)
    out = np.zeros(len(qn))
    for i in range(0, len(qn), chunk):
        block = qn[i : i + chunk] @ dn.T
        out[i : i + chunk] = average_precision_scores(block, ql[i : i + chunk], db_labels)
    return out


def cosine_map(q, db, q_labels, db_labels, chunk: int = 100) -> float:
    aps = cosine_average_precision(q, db, q_labels, db_labels, chunk)
    return float(aps.mean()) if len(aps) else 0.0
