"""Encoding and retrieval metrics: codes, MAP (ties by index and tie-aware), accuracy, P@k, PR.

    h, logp = encode(model, x, settings)         # relaxed codes, log-probabilities (shipped path)
    metrics = retrieval_metrics(qh, ql, qlogits, dbh, dbl, topk=None)  # RetrievalMetrics

Codes are `kernels.pack_codes(h)` (bit = h > 0). MAP uses `kernels.mean_average_precision`
(ties="index" -> `map`, ties="aware" -> `map_tie_aware`); with `topk` the MAP is over the first K
ranked items (`map_at_k`; `map@K` in `to_dict()`). The PR curve is the usual hashing one
(kernels.pr_curve_from_histograms): precision and recall of the items within Hamming radius r of
the query, r = 0..bits, averaged over queries (a query with nothing within r counts precision 0
there, one without relevant items recall 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipeline.metrics import RetrievalMetrics

DEFAULT_PK = (1, 10, 100, 500, 1000)


def encode(model, x, settings: dict, batch: int = 1000, device: str = "cpu", preprocess=None):
    """(h float32 (n, bits), log-probabilities (n, classes) or None without a class head) for
    dataset images x (NCHW), in batches through the one encode step
    (`pipeline.model.encode.encode_inputs`) under the checkpoint's encode `settings`.

    x: preprocessed float inputs, or uint8 images with their photo `preprocess` dict.
    """
    from pipeline.model.encode import encode_inputs
    from pipeline.training.loop import to_input

    xt = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    hs, ls = [], []
    for i in range(0, len(xt), batch):
        h, logp = encode_inputs(model, to_input(xt[i : i + batch], preprocess), settings, device)
        hs.append(h)
        ls.append(logp)
    if not hs:
        return np.zeros((0, model.body.head.hash.out_features), np.float32), None
    return np.concatenate(hs), (None if ls[0] is None else np.concatenate(ls))


def pr_curve(q_codes, db_codes, q_labels, db_labels, nbits) -> tuple[list, list]:
    """Precision and recall within Hamming radius r = 0..nbits (kernels' histograms)."""
    from kernels import distance_histograms, pr_curve_from_histograms

    a, r = distance_histograms(q_codes, db_codes, q_labels, db_labels)
    prec, rec = pr_curve_from_histograms(a[:, : nbits + 1], r[:, : nbits + 1])
    return [float(v) for v in prec], [float(v) for v in rec]


def precision_at_k(q_codes, db_codes, q_labels, db_labels, ks=DEFAULT_PK, ties="index") -> dict:
    """{k: mean precision of the first k ranked items} (ties by database index, or "aware":
    the expectation over orderings inside Hamming-tie groups)."""
    from kernels import precision_at_k as pk

    ks = sorted({int(k) for k in ks if int(k) > 0})
    if not ks or len(db_codes) == 0 or len(q_codes) == 0:
        return {}
    return {k: float(pk(q_codes, db_codes, q_labels, db_labels, k, ties=ties).mean()) for k in ks}


def retrieval_metrics(
    q_h, q_labels, q_logits, db_h, db_labels, topk: int | None = None, pk=DEFAULT_PK, pr=True
) -> RetrievalMetrics:
    """The evaluation of the train and evaluate jobs (`to_dict()`: the keys they print)."""
    from kernels import mean_average_precision, pack_codes

    nbits = q_h.shape[1]
    qc, dc = pack_codes(q_h), pack_codes(db_h)
    ql, dl = np.asarray(q_labels), np.asarray(db_labels)
    m = RetrievalMetrics(
        nbits=int(nbits),
        n_queries=int(len(qc)),
        n_database=int(len(dc)),
        map=float(mean_average_precision(qc, dc, ql, dl, topk=None, ties="index")),
        map_tie_aware=float(mean_average_precision(qc, dc, ql, dl, topk=None, ties="aware")),
    )
    if topk:
        m.topk = int(topk)
        m.map_at_k = float(mean_average_precision(qc, dc, ql, dl, topk=m.topk, ties="index"))
    if q_logits is not None and ql.ndim == 1:
        m.accuracy = float((np.asarray(q_logits).argmax(1) == ql).mean())
    pks = set(pk) | ({int(topk)} if topk else set())
    m.precision_at_k = precision_at_k(qc, dc, ql, dl, pks)
    m.precision_at_k_tie_aware = precision_at_k(qc, dc, ql, dl, pks, ties="aware")
    if pr:
        m.pr_precision, m.pr_recall = pr_curve(qc, dc, ql, dl, nbits)
    return m


@dataclass
class EncodedSplits:
    """The relaxed codes and log-probabilities of a split's queries and database (reports pick
    retrieval examples from them)."""

    q_h: np.ndarray
    q_logp: np.ndarray | None
    db_h: np.ndarray
    db_logp: np.ndarray | None


def encode_splits(model, splits: dict, settings: dict, batch=1000, device="cpu") -> EncodedSplits:
    """Queries and database of `splits` encoded as ingest would (the checkpoint's encode
    `settings`, `pipeline.model.encode.encode_settings`)."""
    qx, dx = splits["query"][0], splits["db"][0]
    pre = splits.get("preprocess")
    q_h, q_logp = encode(model, qx, settings, batch, device, pre)
    if dx is qx:
        return EncodedSplits(q_h, q_logp, q_h, q_logp)
    return EncodedSplits(q_h, q_logp, *encode(model, dx, settings, batch, device, pre))


def labelled(splits: dict) -> bool:
    """Whether MAP can be scored on `splits`: queries and database exist and every one of them
    has a label (class ids >= 0, or multi-hot rows)."""
    ql, dl = (np.asarray(splits[k][1]) for k in ("query", "db"))
    if not len(ql) or not len(dl):
        return False
    return ql.ndim == 2 or bool((ql >= 0).all() and (dl >= 0).all())


def evaluate_model(
    model, splits: dict, settings: dict, batch=1000, device="cpu", topk=None
) -> RetrievalMetrics:
    """The retrieval metrics of `splits` encoded by `encode_splits`."""
    return evaluate_encoded(encode_splits(model, splits, settings, batch, device), splits, topk)


def evaluate_encoded(enc: EncodedSplits, splits: dict, topk=None) -> RetrievalMetrics:
    """The retrieval metrics of already encoded splits (the reports reuse the codes)."""
    return retrieval_metrics(
        enc.q_h, splits["query"][1], enc.q_logp, enc.db_h, splits["db"][1], topk
    )
