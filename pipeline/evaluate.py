"""Encoding and retrieval metrics: codes, MAP (ties by index and tie-aware), accuracy, P@k, PR.

    h, logits = encode(model, x, tta=1)         # relaxed codes (averaged over TTA views), logits
    metrics = retrieval_metrics(qh, ql, qlogits, dbh, dbl, topk=None)

Codes are `kernels.pack_codes(h)` (bit = h > 0). MAP uses `kernels.mean_average_precision`
(ties="index" -> `map`, ties="aware" -> `map_tie_aware`); with `topk` the MAP is over the first K
ranked items (`map@K`). The PR curve is the usual hashing one (kernels.pr_curve_from_histograms):
precision and recall of the items within Hamming radius r of the query, r = 0..bits, averaged
over queries (a query with nothing within r counts precision 0 there, one without relevant items
recall 0).
"""

from __future__ import annotations

import numpy as np
import torch

DEFAULT_PK = (1, 10, 100, 500, 1000)


def _views(x: torch.Tensor, tta: int):
    """TTA views with weights: 0 none; 1 + mirror; 2 + mirror of 1 px translations."""
    if tta <= 0:
        return [(x, 1.0)]
    if tta == 1:
        return [(x, 0.5), (x.flip(-1), 0.5)]
    s = x.shape[-1]
    xp = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    a, b = xp[..., 0:s, 0:s], xp[..., 2 : s + 2, 2 : s + 2]
    return [
        (x, 0.25),
        (x.flip(-1), 0.25),
        (a, 0.125),
        (a.flip(-1), 0.125),
        (b, 0.125),
        (b.flip(-1), 0.125),
    ]


@torch.no_grad()
def encode(
    model,
    x,
    tta: int = 1,
    batch: int = 1000,
    device: str = "cpu",
    amp: bool = True,
    preprocess=None,
):
    """(h float32 (n, bits), log-probabilities (n, classes)) for dataset images x (NCHW).

    x: preprocessed float inputs, or uint8 images with their photo `preprocess` dict.
    """
    from pipeline.train import to_input

    model.eval()
    dev = torch.device(device)
    hs, ls = [], []
    xt = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    dtype = torch.bfloat16
    for i in range(0, len(xt), batch):
        xb = to_input(xt[i : i + batch], preprocess).to(dev)
        if dev.type == "cpu":
            xb = xb.contiguous(memory_format=torch.channels_last)
        h_acc, l_acc = 0.0, 0.0
        for v, w in _views(xb, tta):
            with torch.autocast(dev.type, dtype=dtype, enabled=amp):
                h, logits = model(v)
            h_acc = h_acc + w * h.float()
            l_acc = l_acc + w * torch.log_softmax(logits.float(), 1)
        hs.append(h_acc.cpu())
        ls.append(l_acc.cpu())
    if not hs:
        return np.zeros((0, model.body.head.hash.out_features), np.float32), None
    return torch.cat(hs).numpy(), torch.cat(ls).numpy()


def pr_curve(q_codes, db_codes, q_labels, db_labels, nbits) -> dict:
    """Precision/recall within Hamming radius r = 0..nbits (kernels' histograms)."""
    from kernels import distance_histograms, pr_curve_from_histograms

    a, r = distance_histograms(q_codes, db_codes, q_labels, db_labels)
    prec, rec = pr_curve_from_histograms(a[:, : nbits + 1], r[:, : nbits + 1])
    return {
        "radius": list(range(nbits + 1)),
        "precision": [round(float(v), 6) for v in prec],
        "recall": [round(float(v), 6) for v in rec],
    }


def precision_at_k(q_codes, db_codes, q_labels, db_labels, ks=DEFAULT_PK, ties="index") -> dict:
    """Mean precision of the first k ranked items, per k (ties by database index, or "aware":
    the expectation over orderings inside Hamming-tie groups)."""
    from kernels import precision_at_k as pk

    ks = sorted({int(k) for k in ks if int(k) > 0})
    if not ks or len(db_codes) == 0 or len(q_codes) == 0:
        return {}
    return {
        str(k): round(float(pk(q_codes, db_codes, q_labels, db_labels, k, ties=ties).mean()), 6)
        for k in ks
    }


def retrieval_metrics(
    q_h, q_labels, q_logits, db_h, db_labels, topk: int | None = None, pk=DEFAULT_PK, pr=True
) -> dict:
    """The evaluation summary used by the train and evaluate jobs."""
    from kernels import mean_average_precision, pack_codes

    nbits = q_h.shape[1]
    qc, dc = pack_codes(q_h), pack_codes(db_h)
    ql, dl = np.asarray(q_labels), np.asarray(db_labels)
    out = {
        "bits": int(nbits),
        "queries": int(len(qc)),
        "database": int(len(dc)),
        "map": float(mean_average_precision(qc, dc, ql, dl, topk=None, ties="index")),
        "map_tie_aware": float(mean_average_precision(qc, dc, ql, dl, topk=None, ties="aware")),
    }
    if topk:
        out[f"map@{int(topk)}"] = float(
            mean_average_precision(qc, dc, ql, dl, topk=int(topk), ties="index")
        )
    if q_logits is not None and ql.ndim == 1:
        out["accuracy"] = float((np.asarray(q_logits).argmax(1) == ql).mean())
    pks = set(pk) | ({int(topk)} if topk else set())
    out["precision_at_k"] = precision_at_k(qc, dc, ql, dl, pks)
    out["precision_at_k_tie_aware"] = precision_at_k(qc, dc, ql, dl, pks, ties="aware")
    if pr:
        out["pr_curve"] = pr_curve(qc, dc, ql, dl, nbits)
    return out


def evaluate_model(
    model, splits: dict, tta=1, batch=1000, device="cpu", topk=None, amp=True, db_tta=None
):
    """Encode queries and database of `splits` and compute the retrieval metrics."""
    qx, qy = splits["query"]
    dx, dy = splits["db"]
    pre = splits.get("preprocess")
    q_h, q_logits = encode(model, qx, tta, batch, device, amp, pre)
    if dx is qx:
        d_h = q_h
    else:
        d_h, _ = encode(model, dx, tta if db_tta is None else db_tta, batch, device, amp, pre)
    return retrieval_metrics(q_h, qy, q_logits, d_h, dy, topk=topk)
