"""Labelled image sets for training and evaluation, split into training, query and database sets.

    splits = load_splits("cifar10", "../shared/data/cifar10", protocol="cifar10-2")
    splits["train"|"query"|"db"] -> (x, y): x (n, c, s, s) model inputs, y (n,) int64 labels
    splits["classes"], splits["preprocess"] (PreprocessConfig dict), splits["info"] (provenance)

Model inputs are what `pipeline.model.preprocess.preprocess` makes of the raw pixels with
splits["preprocess"]. For CIFAR-10 the images stay uint8 (four times less memory, faster
batches) and `pipeline.model.preprocess.inputs_of` applies the photo preprocessing
(x / 255 - mean) / std per batch, which is exactly what `preprocess_batch` computes for 32x32
uint8 RGB images (a test checks it).

Datasets and protocols:
- `cifar10`: `cifar10-1`, `cifar10-2` (pipeline.training.datasets.cifar10); `unlabelled=
  "database"` adds cifar10-1's 54,000 database images that are not training images to the
  training set with label -1 (semi-supervised training: `train --method semi`).
- `synthetic-aurora`: protocol `synthetic`; the seeded split of pipeline.synth.split_indices,
  sizes n_train / n_query / n_database (default 2000 / 400 / 4000; the training set is part of
  the database). Frames are archive-shaped: written by the archive writer (256 px, 16 bit) and
  read back through ingest's reader and preprocessing at `size` px (default 64)
  (pipeline.training.datasets.synthetic).
- `archive`: protocol `holdout`; any labelled archive on disk or S3 (THEMIS PGM/CDF, images,
  Parquet, tar shards), read exactly as ingest reads it (pipeline.training.datasets.archive). Labels
  come from the frames' own label header, or from a catalogue table (`labels`: CSV or Parquet with
  columns id,label, ids as ingest writes them: "RELATIVE/PATH#FRAME"). For a method that learns
  without labels (`need_labels=False`: cibhash) an archive needs none: `label_free_split`.
- `parquet` (a labelled table or a folder of them, read by pipeline.readers) and `folder` (one
  sub-folder per class, any image/archive format pipeline.readers reads): protocol `holdout`, a
  seeded split: n_query items (default: 10%, at most 1,000) are the queries, the rest is the
  database, and the training set is the database (or its first n_train items, shuffled).
  Preprocessing: `aurora` for 16-bit grey frames, else `photo` (RGB or grey), unless given.

An option a dataset does not use (say --size for cifar10) is refused, not ignored.
"""

from __future__ import annotations

import logging
import posixpath

import numpy as np

from pipeline.choices import DATASETS
from pipeline.errors import BadInput

log = logging.getLogger("aurorahash.datasets")

PROTOCOLS = {
    "cifar10": ("cifar10-2", "cifar10-1"),
    "synthetic-aurora": ("synthetic",),
    "parquet": ("holdout",),
    "folder": ("holdout",),
    "archive": ("holdout",),
}


def _nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _check_photo_fast_path(p: dict, size: int) -> None:
    ok = (
        p["background"] is None
        and p["white"] is None
        and p["stretch"] == "linear"
        and not p["mask"]
        and p["size"] == size
    )
    if not ok:
        raise BadInput("uint8 fast path needs the plain photo preprocessing at the native size")


def _cifar10(
    data, protocol, data_seed, limit, storage_options=None, preprocess=None, unlabelled=None
):
    from pipeline.model.preprocess import PreprocessConfig
    from pipeline.training.datasets.cifar10 import CLASSES, cifar10_protocol, load_cifar10

    if unlabelled not in (None, "none", "database"):
        raise BadInput(f"--unlabelled must be none or database, not {unlabelled!r}")
    extra = unlabelled == "database"
    sp = cifar10_protocol(load_cifar10(data), protocol, data_seed, limit, unlabelled=extra)
    if isinstance(preprocess, dict):
        pre = PreprocessConfig.from_dict(preprocess).to_dict()
    else:
        pre = PreprocessConfig.photo(32, 3).to_dict()
    _check_photo_fast_path(pre, 32)
    out = {k: (_nchw(x), y) for k, (x, y) in sp.items()}
    if sp["db"][0] is sp["train"][0]:
        out["db"] = out["train"]
    out.update(classes=list(CLASSES), preprocess=pre)
    return out


def _synthetic(
    data,
    protocol,
    data_seed,
    limit,
    storage_options=None,
    size=None,
    n_train=None,
    n_query=None,
    n_database=None,
    preprocess=None,
    workers=None,
):
    from pipeline.training.datasets.synthetic import synthetic_splits

    pre = preprocess if isinstance(preprocess, dict) else None
    if preprocess is not None and pre is None:
        raise BadInput("synthetic-aurora takes its own aurora preprocessing, not --preprocess")
    return synthetic_splits(data_seed, limit, size, n_train, n_query, n_database, pre, workers)


def _read_labelled(files, storage_options, label_of=None):
    from pipeline.readers import CorruptFile, FrameError, SkipFile, read_frames

    pixels, labels = [], []
    skipped = 0
    for f in files:
        try:
            for item in read_frames(f, storage_options):
                if isinstance(item, FrameError):
                    skipped += 1
                    continue
                lab = label_of(f) if label_of else item.label
                if lab is None:
                    skipped += 1
                    continue
                pixels.append(item.pixels)
                labels.append(int(lab))
        except SkipFile:
            continue
        except CorruptFile as exc:
            log.warning("skipping %s: %s", f, exc)
            skipped += 1
    if skipped:
        log.warning("%d unlabelled or unreadable frames left out", skipped)
    return pixels, np.asarray(labels, dtype=np.int64)


def _preprocess_cfg(pixels, kind, size):
    from pipeline.model.preprocess import PreprocessConfig

    if isinstance(kind, dict):  # a checkpoint's own preprocessing
        return PreprocessConfig.from_dict(kind)
    if kind in (None, "auto"):
        grey16 = all(p.ndim == 2 and p.dtype.itemsize > 1 for p in pixels[:64])
        kind = "aurora" if grey16 else "photo"
    if kind == "aurora":
        return PreprocessConfig.aurora(int(size or 64))
    if kind == "photo":
        colour = any(p.ndim == 3 and p.shape[-1] >= 3 for p in pixels[:64])
        return PreprocessConfig.photo(int(size or 32), 3 if colour else 1)
    raise BadInput(f"unknown preprocessing {kind!r}; choose auto, aurora or photo")


def _holdout(x, labels, classes, pre: dict, data_seed, limit, n_query=None, n_train=None):
    """A seeded split of preprocessed inputs: queries, the rest the database, training its
    first n_train items (shuffled). Unlabelled inputs (classes [], labels all -1) split alike."""
    n = len(labels)
    what = "labelled " if classes else ""
    if n < 3:
        raise BadInput(f"need at least 3 {what}images, found {n}")
    if classes and len(np.unique(labels)) < 2:
        raise BadInput("need at least two classes among the labelled images")
    rng = np.random.default_rng(data_seed)
    perm = rng.permutation(n)
    nq = int(n_query) if n_query is not None else max(1, min(1000, n // 10))
    if not 1 <= nq < n:
        raise BadInput(f"--n-query must be in 1..{n - 1}")
    q, db = np.sort(perm[:nq]), perm[nq:]
    nt = len(db) if n_train is None else min(int(n_train), len(db))
    if limit is not None:
        nt = min(nt, int(limit))
    train = np.sort(db[:nt])
    db = np.sort(db)
    return {
        "train": (x[train], labels[train]),
        "query": (x[q], labels[q]),
        "db": (x[db], labels[db]),
        "classes": classes,
        "preprocess": pre,
    }


def _holdout_pixels(pixels, labels, classes, data_seed, limit, preprocess=None, size=None, **split):
    from pipeline.model.preprocess import preprocess_batch

    if len(labels) < 3:
        raise BadInput(f"need at least 3 labelled images, found {len(labels)}")
    pcfg = _preprocess_cfg(pixels, preprocess, size)
    x = preprocess_batch(pixels, pcfg)
    return _holdout(x, labels, classes, pcfg.to_dict(), data_seed, limit, **split)


def _label_names(files, storage_options, n_classes):
    """Class names from a `label_name` column, where the tables carry one; else "0".."K-1"."""
    names = {}
    try:
        import pyarrow.parquet as pq

        from pipeline.storage import split_uri

        for f in files:
            fs, p, _ = split_uri(f, storage_options)
            with fs.open(p, "rb") as fh:
                pf = pq.ParquetFile(fh)
                if not {"label", "label_name"} <= set(pf.schema_arrow.names):
                    return [str(i) for i in range(n_classes)]
                t = pf.read(columns=["label", "label_name"])
            for lab, name in zip(
                t.column("label").to_pylist(), t.column("label_name").to_pylist(), strict=True
            ):
                if lab is not None and name is not None:
                    names.setdefault(int(lab), str(name))
    except Exception:  # names are a nicety; the labels are what counts
        return [str(i) for i in range(n_classes)]
    return [names.get(i, str(i)) for i in range(n_classes)]


def _parquet(
    data,
    protocol,
    data_seed,
    limit,
    storage_options=None,
    preprocess=None,
    size=None,
    n_query=None,
    n_train=None,
):
    from pipeline.readers import list_archive, parquet_table

    files = [
        f for f in list_archive(data, storage_options) if f.lower().endswith(parquet_table.SUFFIXES)
    ]
    if not files:
        raise BadInput(f"no Parquet tables under {data}")
    pixels, labels = _read_labelled(files, storage_options)
    if not len(labels):
        raise BadInput(f"{data}: no labelled rows (a `label` column is needed)")
    classes = _label_names(files, storage_options, int(labels.max()) + 1)
    split = dict(n_query=n_query, n_train=n_train)
    return _holdout_pixels(pixels, labels, classes, data_seed, limit, preprocess, size, **split)


def _folder(
    data,
    protocol,
    data_seed,
    limit,
    storage_options=None,
    preprocess=None,
    size=None,
    n_query=None,
    n_train=None,
):
    from pipeline.readers import list_archive
    from pipeline.storage import relative_path

    files = list_archive(data, storage_options)
    by_class = {}
    for f in files:
        rel = relative_path(f, data)
        if "/" not in rel:
            continue  # files at the top level belong to no class
        by_class.setdefault(rel.split("/", 1)[0], []).append(f)
    classes = sorted(by_class)
    if len(classes) < 2:
        raise BadInput(f"{data}: need at least two class sub-folders with images")
    index = {f: classes.index(c) for c, fs in by_class.items() for f in fs}
    pixels, labels = _read_labelled(
        [f for c in classes for f in by_class[c]], storage_options, label_of=index.get
    )
    split = dict(n_query=n_query, n_train=n_train)
    return _holdout_pixels(pixels, labels, classes, data_seed, limit, preprocess, size, **split)


def _archive(
    data,
    protocol,
    data_seed,
    limit,
    storage_options=None,
    labels=None,
    preprocess=None,
    size=None,
    n_query=None,
    n_train=None,
    workers=None,
    need_labels=True,
):
    """An archive read as ingest reads it (pipeline.training.datasets.archive): its labelled
    frames, or, for a method that needs no labels, every frame (`label_free_split`)."""
    from pipeline.ingest.local_read import read_archive
    from pipeline.synth import CLASSES
    from pipeline.training.datasets.archive import apply_catalogue, catalogue_labels

    pcfg = _archive_preprocess(data, storage_options, preprocess, size)
    frames = read_archive(data, pcfg.to_dict(), storage_options, int(workers or 1))
    if labels:
        y, classes = apply_catalogue(frames, catalogue_labels(labels, storage_options), labels)
    else:
        y = frames.labels
        top = int(y.max()) if len(y) else -1
        classes = list(CLASSES) if top < len(CLASSES) else [str(i) for i in range(top + 1)]
    split = (data_seed, limit, n_query, n_train)
    if not need_labels:
        return label_free_split(frames.x, y, classes, pcfg.to_dict(), *split)
    keep = y >= 0
    if not keep.any():
        raise BadInput(
            f"{data}: no labelled frames (label headers, or give --labels); "
            "--method cibhash trains without labels"
        )
    if not keep.all():
        log.warning("%d of %d frames have no label and are left out", int((~keep).sum()), len(y))
    return _holdout(frames.x[keep], y[keep], classes, pcfg.to_dict(), *split)


def label_free_split(x, y, classes, pre: dict, data_seed, limit, n_query=None, n_train=None):
    """Splits for a method that learns without labels: every frame may train.

    Without any label: classes [], labels -1, the seeded holdout split of all frames (no MAP
    can be scored). With some: the labelled frames split as for any method (queries and
    database, so MAP is scored on them), and the unlabelled ones join the training set."""
    keep, split = y >= 0, (data_seed, limit, n_query, n_train)
    if not keep.any():
        return _holdout(x, np.full(len(y), -1, np.int64), [], pre, *split)
    out = _holdout(x[keep], y[keep], classes, pre, *split)
    extra = np.flatnonzero(~keep)
    caps = [int(v) for v in (limit, n_train) if v is not None]
    if caps:
        extra = extra[: max(0, min(caps) - len(out["train"][1]))]
    if len(extra):
        tx, ty = out["train"]
        out["train"] = (np.concatenate([tx, x[extra]]), np.concatenate([ty, y[extra]]))
        log.info("%d unlabelled frames train beside the labelled ones", len(extra))
    return out


def _archive_preprocess(data, storage_options, preprocess, size):
    """The preprocessing for an archive: given, or chosen from its first readable frame."""
    from pipeline.ingest.local_read import archive_files
    from pipeline.readers import FrameError, read_frames

    if isinstance(preprocess, dict):
        return _preprocess_cfg([], preprocess, size)
    for uri, _ in archive_files(data, storage_options):
        for item in read_frames(uri, storage_options or {}):
            if not isinstance(item, FrameError):
                return _preprocess_cfg([item.pixels], preprocess, size)
    raise BadInput(f"{data}: no readable frame to choose the preprocessing from")


_LOADERS = {
    "cifar10": _cifar10,
    "synthetic-aurora": _synthetic,
    "parquet": _parquet,
    "folder": _folder,
    "archive": _archive,
}


def _reject_unused(dataset: str, given: dict) -> None:
    """An option the dataset does not use is an error, not silently ignored."""
    import inspect

    params = inspect.signature(_LOADERS[dataset]).parameters
    unused = sorted(k for k in given if k not in params or k in ("data", "protocol"))
    if unused:
        flags = ", ".join("--" + k.replace("_", "-") for k in unused)
        raise BadInput(f"{flags} does not apply to dataset {dataset}")


def load_splits(
    dataset: str,
    data: str | None = None,
    protocol: str | None = None,
    data_seed: int = 0,
    limit: int | None = None,
    storage_options: dict | None = None,
    need_labels: bool = True,
    **options,
) -> dict:
    """Training, query and database sets of `dataset` (see the module docstring).

    `need_labels=False` (a method that learns without labels: `train --method cibhash`) lets
    `archive` keep frames without labels (label -1; classes [] when none has one); the other
    datasets are labelled by construction."""
    if dataset not in _LOADERS:
        raise BadInput(f"unknown dataset {dataset!r}; choose one of {DATASETS}")
    protocol = protocol or PROTOCOLS[dataset][0]
    if protocol not in PROTOCOLS[dataset]:
        raise BadInput(
            f"protocol {protocol!r} does not apply to {dataset}; choose one of {PROTOCOLS[dataset]}"
        )
    if dataset != "synthetic-aurora" and not data:
        raise BadInput(f"--data is required for {dataset}")
    if limit is not None and limit < 2:
        raise BadInput("--limit must be at least 2")
    given = {k: v for k, v in options.items() if v is not None}
    _reject_unused(dataset, given)
    if dataset == "archive":
        given["need_labels"] = bool(need_labels)
    out = _LOADERS[dataset](data, protocol, data_seed, limit, storage_options, **given)
    out["info"] = {
        "dataset": dataset,
        "data": None if data is None else str(data),
        "protocol": protocol,
        "seed": int(data_seed),
        "limit": limit,
        "train": int(len(out["train"][1])),
        "query": int(len(out["query"][1])),
        "database": int(len(out["db"][1])),
        **{
            k: v
            for k, v in options.items()
            if v is not None and k != "storage_options" and not isinstance(v, dict)
        },
    }
    if dataset == "folder":
        out["info"]["root"] = posixpath.basename(str(data).rstrip("/"))
    return out
