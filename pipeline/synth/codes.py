"""Synthetic code shards in the THEMIS archive layout, without running a model.

Why: compaction, search and benchmark tests and the scale benchmarks need what ingest writes
(one shard per 20-frame minute file, under stream0/YYYY/MM/DD/SITE_themisNN/utHH/) by the tens
of thousands, in seconds. Codes are class centres plus bit noise, so neighbours and MAP mean
something and distances tie often.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import numpy as np

from pipeline import storage
from pipeline.codes import pending, store
from pipeline.synth.writers import FRAMES_PER_MINUTE, stream0_dir

START = datetime(2014, 3, 10, 0, 0, tzinfo=timezone.utc)


def minute_relpath(minute: int, site: str, imager: str = "themis19") -> str:
    t = START + timedelta(minutes=minute)
    return f"{stream0_dir(t, site, imager)}/{t:%Y%m%d_%H%M}_{site}_{imager}_full.pgm.gz"


def archive_relpaths(n_files: int, sites=("gill", "fsmi", "rank", "snkq")) -> list[str]:
    """`n_files` minute files: each minute of each site in turn, nights in date order."""
    return [minute_relpath(i // len(sites), sites[i % len(sites)]) for i in range(n_files)]


def make_codes(n: int, nbits: int, n_classes: int, seed: int, flip: float = 0.15):
    """(packed codes (n, words) uint64, labels (n,)): class centre bits with `flip` noise."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 2, size=(n_classes, nbits), dtype=np.uint8)
    labels = rng.integers(0, n_classes, size=n)
    bits = centres[labels] ^ (rng.random((n, nbits)) < flip).astype(np.uint8)
    words = store.words_for(nbits)
    padded = np.zeros((n, words * 64), np.uint8)
    padded[:, :nbits] = bits
    codes = np.packbits(padded, axis=1, bitorder="little").view("<u8").astype(np.uint64)
    return codes.reshape(n, words), labels


def write_code_shards(
    out: str,
    relpaths: list[str],
    rows_per_file: int = FRAMES_PER_MINUTE,
    nbits: int = 64,
    n_classes: int = 10,
    seed: int = 0,
    model: str = "c" * 64,
    storage_options: dict | None = None,
    threads: int = 8,
    codes_labels=None,
    classes: list[str] | None = None,
    mark: bool = True,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One shard per relpath under out/<model12>/; returns (codes, labels, ids) in canonical
    (relpath, frame) order. Class names default to c0, c1, ... With `mark`, their folders'
    pending marks follow, as ingest writes them (without: a root from before marks existed)."""
    order = sorted(relpaths)
    n = len(order) * rows_per_file
    codes, labels = codes_labels or make_codes(n, nbits, n_classes, seed)
    classes = classes or [f"c{i}" for i in range(n_classes)]
    meta = store.ShardMeta(nbits=nbits, model=model, classes=classes)

    def write(i):
        rel = order[i]
        sl = slice(i * rows_per_file, (i + 1) * rows_per_file)
        t0 = START + timedelta(seconds=3 * i * rows_per_file)
        store.write_shard(
            storage.location(store.shard_uri(out, rel, model), options=storage_options or {}),
            {
                "id": [store.frame_id(rel, j) for j in range(rows_per_file)],
                "source": [f"archive/{rel}"] * rows_per_file,
                "frame": np.arange(rows_per_file, dtype=np.int32),
                "site": [rel.split("/")[4].split("_")[0]] * rows_per_file,
                "time": [t0 + timedelta(seconds=3 * j) for j in range(rows_per_file)],
                "code": codes[sl],
                "label": labels[sl],
                "pred": labels[sl],
                "score": np.ones(rows_per_file, np.float32),
            },
            meta,
        )

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(write, range(len(order))))
    if mark:
        root = storage.location(store.model_prefix(out, model), options=storage_options or {})
        pending.mark(root, order)
    ids = [store.frame_id(rel, j) for rel in order for j in range(rows_per_file)]
    return codes, labels, ids
