"""Argument checks for the public functions; each failure is a ValueError naming the argument."""

import numpy as np


def codes(x, name):
    """A 2-D uint64 array of packed codes, C-contiguous (copied only if needed)."""
    if not isinstance(x, np.ndarray):
        raise ValueError(
            f"{name} must be a numpy array of packed uint64 codes, got {type(x).__name__}"
        )
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, words) packed codes, got {x.ndim}-D")
    if x.dtype != np.uint64:
        raise ValueError(f"{name} must have dtype uint64 (packed codes), got {x.dtype}")
    if x.shape[1] < 1:
        raise ValueError(f"{name} must have at least one 64-bit word per code")
    return np.ascontiguousarray(x)


def code_pair(queries, database):
    q = codes(queries, "queries")
    x = codes(database, "database")
    if q.shape[1] != x.shape[1]:
        raise ValueError(
            f"queries and database must have the same number of words per code, "
            f"got {q.shape[1]} and {x.shape[1]}"
        )
    return q, x


def positive_int(v, name):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if v < 1:
        raise ValueError(f"{name} must be >= 1, got {v}")
    return int(v)


def topk(v):
    return None if v is None else positive_int(v, "topk")


def ties(v):
    if v not in ("index", "aware"):
        raise ValueError(f"ties must be 'index' or 'aware', got {v!r}")
    return v


def labels(query_labels, db_labels, nq, n):
    """Normalise labels.

    Returns ``("single", ql int64 (q,), dl int64 (n,))`` for 1-D class ids, or
    ``("multi", qm uint64 (q, lw), dm uint64 (n, lw))`` with multi-hot rows packed into bit masks
    (relevant = the masks share a bit).
    """
    ql = np.asarray(query_labels)
    dl = np.asarray(db_labels)
    for arr, name, rows in ((ql, "query_labels", nq), (dl, "db_labels", n)):
        if arr.ndim not in (1, 2):
            raise ValueError(f"{name} must be 1-D class ids or 2-D multi-hot, got {arr.ndim}-D")
        if arr.shape[0] != rows:
            what = "queries" if name == "query_labels" else "database"
            raise ValueError(f"{name} has {arr.shape[0]} rows but {what} has {rows} codes")
        if arr.dtype.kind not in "biu":
            raise ValueError(
                f"{name} must hold integers (class ids) or 0/1 (multi-hot), got {arr.dtype}"
            )
    if ql.ndim != dl.ndim:
        raise ValueError(
            f"query_labels and db_labels must both be 1-D class ids or both 2-D multi-hot, "
            f"got {ql.ndim}-D and {dl.ndim}-D"
        )
    if ql.ndim == 1:
        return (
            "single",
            np.ascontiguousarray(ql, dtype=np.int64),
            np.ascontiguousarray(dl, dtype=np.int64),
        )
    if ql.shape[1] != dl.shape[1]:
        raise ValueError(
            f"query_labels and db_labels must have the same number of classes, "
            f"got {ql.shape[1]} and {dl.shape[1]}"
        )
    from .packing import pack_codes

    return "multi", pack_codes(ql != 0), pack_codes(dl != 0)
