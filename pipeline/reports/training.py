"""The train and evaluate reports: how a model learned and how well its codes retrieve.

Why one builder for both: `evaluate` scores a checkpoint that `train` made, and a reader wants
the same page either way: the per-epoch loss and accuracy that training recorded in config.json
(`history`), MAP and accuracy on the protocol's queries, precision/recall by Hamming radius,
precision@k, and a few queries of the query set with their nearest database items. The dataset
arrays are model inputs (preprocessed), so example thumbnails are those inputs, display-stretched.
"""

from __future__ import annotations

import numpy as np

from pipeline.metrics import RetrievalMetrics
from pipeline.reports import figures, plots
from pipeline.reports.model import Figure, Gallery, Report, Section, Table, Text, Tile
from pipeline.reports.thumbnail import thumbnail_png

N_EXAMPLES, K_EXAMPLES = 4, 6  # queries shown, neighbours each (one gallery line at 7 tiles)
LOSS_TERMS = {  # the terms of every method's loss (pipeline/training/methods)
    "loss": "total",
    "ce": "cross-entropy",
    "pair": "pairwise",
    "quant": "quantisation",
    "binary": "binary regulariser",  # DSH
    "fit": "code regression",  # CNNH
    "contrast": "contrastive (NT-Xent)",  # CIBHash
    "kl": "views' bit KL",  # CIBHash
}
HISTORY_CAPTION = (
    "Left: training loss per epoch (mean over the epoch's batches), total and its terms. Right: "
    "accuracy of the classification head on the training batches (augmented; none for a "
    "method without one)."
)
EXAMPLES_CAPTION = (
    "Queries of the query set (dark frame) and their nearest database items by Hamming "
    "distance d, nearest first. Green: same class as the query; red: another class. Images are "
    "the model's inputs as preprocessing made them (background level, stretch, field-of-view "
    "mask, model size)."
)


UNLABELLED_CAPTION = (
    "Queries of the query set (dark frame) and their nearest database items by Hamming "
    "distance d, nearest first. The data has no labels, so no frame is marked right or wrong: "
    "judge the neighbours by eye. Images are the model's inputs as preprocessing made them."
)
NO_LABELS_TEXT = (
    "The queries and the database have no labels, so there is no MAP, precision or recall to "
    "report: the training history and the nearest neighbours of a few queries are below."
)


def history_figure(history: list[dict]) -> bytes:
    """Loss terms (left) and training accuracy (right) against the epoch."""
    epochs = [h["epoch"] for h in history]
    with plots.figure(ncols=2) as (fig, (left, right)):
        terms = [k for k in LOSS_TERMS if any(k in h for h in history)]
        for i, key in enumerate(terms):
            vals = [h.get(key, np.nan) for h in history]
            left.plot(epochs, vals, label=LOSS_TERMS[key], **plots.series_style(i))
        left.set(xlabel="epoch", ylabel="loss")
        left.set_title("Training loss")
        left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=len(terms))
        acc = [h.get("train_accuracy") for h in history]
        right.plot(epochs, [np.nan if a is None else a for a in acc], **plots.series_style(0))
        right.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02))
        right.set_title("Training accuracy")
        for ax in (left, right):
            ax.xaxis.get_major_locator().set_params(integer=True)
    return plots.to_png(fig)


def _results_table(metrics: dict) -> Table:
    """Metric / value rows: narrow, to sit beside the P@k figure."""
    names = [("map", "MAP"), ("map_tie_aware", "MAP (tie-aware)")]
    names += [(k, k.upper()) for k in metrics if k.startswith("map@")]
    names += [("accuracy", "accuracy (queries)")]
    rows = [[n, metrics[k]] for k, n in names if k in metrics]
    rows += [["queries", metrics.get("queries")], ["database items", metrics.get("database")]]
    caption = (
        "Every query ranked against the whole database by Hamming distance: MAP with ties by "
        "database index, tie-aware MAP (expected AP over orders within ties), MAP of the first "
        "K ranked; and the accuracy of the classification head on the queries."
    )
    return Table(["metric", "value"], rows, caption, wide=False)


def input_image(x: np.ndarray, preprocess: dict | None) -> np.ndarray:
    """(C, S, S) dataset item -> uint8 (S, S) grey or (S, S, 3) colour, as the model sees it.

    Float items are preprocessed frames: already background-subtracted and stretched, then
    normalised; undoing the normalisation gives that stretch in [0, 1] (a second display
    stretch would wash it out). Outside the field-of-view mask (exactly 0) is black. uint8
    items (photos) are shown as they are.
    """
    if x.dtype != np.uint8:
        c = x.shape[0]
        pre = preprocess or {}
        mean = np.resize(np.asarray(pre.get("mean", [0.5]), np.float32), c)[:, None, None]
        std = np.resize(np.asarray(pre.get("std", [0.25]), np.float32), c)[:, None, None]
        y = np.where(np.all(x == 0, axis=0), 0.0, x * std + mean)
        x = np.round(np.clip(y, 0.0, 1.0) * 255).astype(np.uint8)
    return x[0] if x.shape[0] == 1 else np.moveaxis(x[:3], 0, -1)


def _class(classes, c) -> str:
    if c < 0:
        return "no label"
    return str(classes[c]).replace("_", " ") if c < len(classes) else str(c)


def _mark(query_label, label) -> str | None:
    if query_label < 0 or label < 0:
        return None
    return "hit" if label == query_label else "miss"


def example_queries(labels: np.ndarray, n: int = N_EXAMPLES) -> list[int]:
    """The first query of each class (class order), then the next ones, n in all."""
    firsts = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels) if c >= 0]
    rest = [i for i in range(len(labels)) if i not in firsts]
    return sorted(firsts[:n]) + rest[: max(0, n - len(firsts))]


def examples_gallery(splits: dict, enc, classes, n=N_EXAMPLES, k=K_EXAMPLES) -> Gallery | None:
    """A few queries and their nearest database items (labels 1-D only)."""
    from kernels import hamming_knn, pack_codes

    (qx, qy), (dx, dy) = splits["query"], splits["db"]
    pre = splits.get("preprocess")
    if np.ndim(qy) != 1 or not len(qy) or not len(dy):
        return None
    picks = example_queries(np.asarray(qy), n)
    D, idx = hamming_knn(pack_codes(enc.q_h[picks]), pack_codes(enc.db_h), k)
    rows = []
    for r, i in enumerate(picks):
        note = _class(classes, qy[i])
        if enc.q_logp is not None:
            p = int(np.argmax(enc.q_logp[i]))
            note += f"\npredicted {_class(classes, p)} {100 * np.exp(enc.q_logp[i][p]):.0f}%"
        tiles = [Tile(thumbnail_png(input_image(qx[i], pre)), "query", note, "query")]
        for d, j in zip(D[r], idx[r], strict=True):
            mark = _mark(qy[i], dy[j])
            tiles.append(
                Tile(
                    thumbnail_png(input_image(dx[j], pre)), f"d = {d}", _class(classes, dy[j]), mark
                )
            )
        rows.append((f"query {i}: {_class(classes, qy[i])}", tiles))
    caption = EXAMPLES_CAPTION if (np.asarray(qy) >= 0).any() else UNLABELLED_CAPTION
    return Gallery(rows, caption)


def _facts(config: dict, metrics: dict, run: dict) -> list[tuple[str, str]]:
    data = config.get("data") or {}
    dataset = run.get("dataset") or data.get("dataset")
    protocol = run.get("protocol") or data.get("protocol")
    sizes = [config.get("train_images", 0), metrics.get("queries", 0), metrics.get("database", 0)]
    epochs = config.get("epochs_done", len(config.get("history") or []))
    encode = config.get("encode") or {}
    facts = [
        ("model", run["model"]),
        ("architecture", f"{config['arch']} \u00b7 {config['bits']} bits"),
        ("data", f"{dataset} / {protocol}"),
        ("train / query / database", " / ".join(f"{int(n):,}" for n in sizes)),
        ("epochs", f"{epochs} ({float(config.get('train_seconds', 0)):.0f} s of training)"),
        ("parameters", f"{float(config.get('params_mb', 0)):.3g} MB"),
        ("encode", ", ".join(f"{k} {v}" for k, v in encode.items()) or "defaults"),
        ("weights sha256", str(config.get("model_sha256", ""))[:16]),
        ("model id", str(config.get("model_id", ""))[:16]),
    ]
    return [(k, v) for k, v in facts if v]


def _history_blocks(history: list[dict]) -> list:
    if not history:
        return [Text("This checkpoint holds no per-epoch history (trained before it was kept).")]
    return [Figure("training_history", history_figure(history), HISTORY_CAPTION, wide=True)]


def model_report(
    kind: str, config: dict, m: RetrievalMetrics | None, run: dict, gallery=None
) -> Report:
    """The `train` or `evaluate` report. `run`: model (where the checkpoint is), dataset,
    protocol, seconds; `gallery`: `examples_gallery` (or None); `m` None: data without labels
    (no metrics, the history and the neighbours only)."""
    training = Section("Training", _history_blocks(config.get("history") or []))
    on = f" on {run.get('dataset')} / {run.get('protocol')}."
    if m is None:
        metrics, subtitle = {}, "No labels, no MAP" + on
        sections = [Section("Results", [Text(NO_LABELS_TEXT)]), training]
    else:
        series = {config["arch"]: m}
        pk = Figure("precision_at_k", figures.precision_at_k_figure(series), figures.PK_CAPTION)
        pr = Figure("pr_curves", figures.pr_figure(series), figures.PR_CAPTION, wide=True)
        metrics = m.to_dict()  # the numbers as the job prints them
        sections = [Section("Results", [_results_table(metrics), pk]), training]
        sections.append(Section("Precision and recall", [pr]))
        subtitle = f"MAP {metrics['map']:.4f}" + (
            f", accuracy {metrics['accuracy']:.4f}" if "accuracy" in metrics else ""
        )
        subtitle += on
    if gallery is not None:
        sections.append(Section("Retrieval examples", [gallery]))
    verb = "Training" if kind == "train" else "Evaluation"
    return Report(
        kind=kind,
        title=f"{verb} report: {config['arch']}, {config['bits']}-bit codes",
        subtitle=subtitle,
        facts=_facts(config, metrics, run),
        sections=sections,
        data={"run": run, "metrics": metrics or None, "history": config.get("history") or []},
    )


def write_model_report(kind, parent, storage_options, config, metrics, splits, enc, run) -> str:
    """Build the report of `metrics` (a `RetrievalMetrics`, with retrieval examples from `enc`)
    and write it into a new folder under `parent`; returns its report.html."""
    from pipeline.reports.folder import HTML, write_report

    gallery = examples_gallery(splits, enc, list(splits["classes"]))
    folder = write_report(
        model_report(kind, config, metrics, run, gallery), parent, storage_options
    )
    return f"{folder}/{HTML}"
