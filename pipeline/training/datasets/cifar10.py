"""CIFAR-10 from the project's Parquet shards (JPEG bytes), decoded once and cached, plus protocols.

The shards (see ../shared/data/README.md) hold `id`, `image` (JPEG bytes), `label`, `label_name`.
Decoding 60,000 JPEGs takes a few seconds; the uint8 arrays are cached as one `.npz` (no pickle)
under the cache directory, keyed by the shards' names, sizes and modification times.

Protocols (seeded, class-balanced):
- `cifar10-1`: 1,000 queries (100 per class) drawn from all 60,000 images; 5,000 training
  images (500 per class) from the remaining 59,000; the database is those 59,000 (training
  images included).
- `cifar10-2`: the 10,000 test images are the queries; the 50,000 training images are both the
  training set and the database.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os

import numpy as np

from pipeline.errors import BadInput

log = logging.getLogger("aurorahash.datasets")

CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
PROTOCOLS = ("cifar10-1", "cifar10-2")


def cache_dir() -> str:
    d = os.environ.get("AURORAHASH_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "aurorahash"
    )
    os.makedirs(d, exist_ok=True)
    return d


def _shards(data: str) -> list[str]:
    from pipeline.storage import list_files

    files = [f for f in list_files(data, suffixes=(".parquet",))]
    if not files:
        raise BadInput(f"no CIFAR-10 Parquet shards under {data}")
    return files


def _decode(jpeg: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(jpeg)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def load_cifar10(data: str, cache: bool = True) -> dict:
    """All images of the shards under `data`.

    Returns {"train_x": (50000,32,32,3) uint8, "train_y": int64, "test_x", "test_y",
    "train_ids", "test_ids"}; split membership comes from the `id` prefix (`train/` or `test/`).
    """
    import pyarrow.parquet as pq

    files = _shards(data)
    key_src = []
    for f in files:
        p = f[len("file://") :] if f.startswith("file://") else f
        try:
            st = os.stat(p)
            key_src.append((os.path.basename(p), st.st_size, int(st.st_mtime)))
        except OSError:
            key_src.append((f, 0, 0))
    key = hashlib.sha256(json.dumps(key_src).encode()).hexdigest()[:16]
    path = os.path.join(cache_dir(), f"cifar10-{key}.npz")
    if cache and os.path.exists(path):
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except Exception as exc:  # a broken cache is rebuilt, never trusted
            log.warning("ignoring unreadable cache %s: %s", path, exc)
    parts = {"train": ([], [], []), "test": ([], [], [])}
    for f in files:
        from pipeline.storage import split_uri

        fs, p, _ = split_uri(f)
        with fs.open(p, "rb") as fh:
            t = pq.read_table(fh, columns=["id", "image", "label"])
        ids = t.column("id").to_pylist()
        imgs = t.column("image").to_pylist()
        labels = t.column("label").to_numpy()
        for i, jpeg, lab in zip(ids, imgs, labels, strict=True):
            split = "test" if i.startswith("test/") else "train"
            parts[split][0].append(_decode(jpeg))
            parts[split][1].append(int(lab))
            parts[split][2].append(i)
        log.info("decoded %s (%d images)", f, len(ids))
    out = {}
    for split, (xs, ys, ids) in parts.items():
        out[f"{split}_x"] = np.stack(xs) if xs else np.zeros((0, 32, 32, 3), np.uint8)
        out[f"{split}_y"] = np.asarray(ys, dtype=np.int64)
        out[f"{split}_ids"] = np.asarray(ids, dtype=str)
    if cache:
        tmp = path + f".tmp{os.getpid()}.npz"
        np.savez(tmp, **out)
        os.replace(tmp, path)
    return out


def _per_class(labels: np.ndarray, n_per_class: int, rng: np.random.Generator, what: str):
    picked = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < n_per_class:
            raise BadInput(f"{what}: class {c} has {len(idx)} images, {n_per_class} needed")
        picked.append(rng.choice(idx, n_per_class, replace=False))
    return np.sort(np.concatenate(picked))


def cifar10_protocol(
    d: dict, protocol: str, seed: int = 0, limit: int | None = None, unlabelled: bool = False
) -> dict:
    """Split the decoded images by `protocol`: {"train": (x, y), "query": (x, y), "db": (x, y)}.

    `limit` caps the training images (a seeded, class-balanced-as-possible subset) for quick runs;
    queries and database stay as the protocol says. `unlabelled` (cifar10-1 only: semi-supervised
    training) appends the database images that are not training images, with label -1 (capped
    at `limit` too), after the labelled ones.
    """
    rng = np.random.default_rng(seed)
    if protocol == "cifar10-2":
        train = (d["train_x"], d["train_y"])
        query = (d["test_x"], d["test_y"])
        db = train
    elif protocol == "cifar10-1":
        x = np.concatenate([d["train_x"], d["test_x"]])
        y = np.concatenate([d["train_y"], d["test_y"]])
        q = _per_class(y, 100, rng, "cifar10-1 queries")
        rest = np.setdiff1d(np.arange(len(y)), q)
        t = rest[_per_class(y[rest], 500, rng, "cifar10-1 training")]
        train, query, db = (x[t], y[t]), (x[q], y[q]), (x[rest], y[rest])
    else:
        raise BadInput(f"unknown CIFAR-10 protocol {protocol!r}; choose one of {PROTOCOLS}")
    if limit is not None and limit < len(train[1]):
        idx = np.sort(rng.permutation(len(train[1]))[:limit])
        train = (train[0][idx], train[1][idx])
    if unlabelled:
        if protocol != "cifar10-1":
            raise BadInput(
                f"--unlabelled database: {protocol}'s database is its training set; "
                "only cifar10-1 has database images that training does not see"
            )
        extra = np.setdiff1d(rest, t)[:limit]
        train = (
            np.concatenate([train[0], x[extra]]),
            np.concatenate([train[1], np.full(len(extra), -1, train[1].dtype)]),
        )
    return {"train": train, "query": query, "db": db}
