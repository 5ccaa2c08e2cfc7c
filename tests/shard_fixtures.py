"""Small code-shard datasets for search, benchmark and export tests (made in tmp dirs)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipeline.codes import catalogue, store

SHA_A = "a" * 64
SHA_B = "b" * 64


def write_dataset(root, sizes=(7, 0, 13, 5), nbits=12, n_classes=3, seed=0, model=SHA_A, dup=True):
    """Shards under root/<model12>/f<i>.parquet with random codes (many ties) and labels.

    Returns (codes (n, words) uint64, labels (n,), ids (n,), shard URIs) in global order.
    """
    rng = np.random.default_rng(seed)
    words = store.words_for(nbits)
    meta = store.ShardMeta(nbits=nbits, model=model, classes=[f"c{i}" for i in range(n_classes)])
    all_codes, all_labels, all_ids, uris = [], [], [], []
    for s, n in enumerate(sizes):
        bits = rng.integers(0, 2, size=(n, words * 64), dtype=np.uint8)
        bits[:, nbits:] = 0
        codes = np.packbits(bits, axis=1, bitorder="little").view("<u8").astype(np.uint64)
        if dup and n > 2:
            codes[1] = codes[0]  # exact duplicates: ties at distance 0
        labels = rng.integers(0, n_classes, size=n)
        rel = f"f{s}.pgm.gz"
        ids = [store.frame_id(rel, i) for i in range(n)]
        uri = store.shard_uri(str(root), rel, model)
        store.write_shard(
            uri,
            {
                "id": ids,
                "source": [f"/archive/{rel}"] * n,
                "frame": np.arange(n),
                "site": ["synt"] * n,
                "time": [None] * n,
                "code": codes.reshape(n, words),
                "label": labels,
                "pred": labels,
                "score": np.ones(n),
            },
            meta,
        )
        uris.append(uri)
        all_codes.append(codes.reshape(n, words))
        all_labels.append(labels)
        all_ids += ids
    return (
        np.concatenate(all_codes),
        np.concatenate(all_labels).astype(np.int64),
        np.asarray(all_ids, dtype=object),
        uris,
    )


def read_codes(where, model=None, columns=None) -> pa.Table:
    """Every row of one model's codes under `where` as production reads them: through the
    catalogue (segments + shards not yet compacted), task by task, in canonical (file, frame)
    order. `columns` default to all shard columns; the schema metadata is the codes' ShardMeta
    (`store.shard_meta(table)` reads it)."""
    cat = catalogue.open_catalogue(where, model)
    cols = tuple(columns or store.all_columns())
    tables = [
        catalogue.read_task(task, cat.meta, cat.loc, cols)
        for task in catalogue.plan_tasks(cat.parts)
    ]
    if tables:
        table = pa.concat_tables(tables, promote_options="permissive")
    else:
        table = store.shard_schema(cat.meta.nbits, store.OPTIONAL_COLUMNS).empty_table()
    return table.select(list(cols)).replace_schema_metadata(cat.meta.to_kv())


def popcount_distances(a, b):
    """Reference: full Hamming distance matrix, bit by bit."""
    ab = np.unpackbits(a.view(np.uint8), axis=1, bitorder="little").astype(np.int32)
    bb = np.unpackbits(b.view(np.uint8), axis=1, bitorder="little").astype(np.int32)
    return (ab[:, None, :] != bb[None, :, :]).sum(-1)


def reference_ap(dist_row, relevant):
    """AP with ties broken by index: stable sort, cumulative precision at relevant ranks."""
    order = np.argsort(dist_row, kind="stable")
    rel = relevant[order]
    if rel.sum() == 0:
        return 0.0
    hits = np.cumsum(rel)
    ranks = np.arange(1, len(rel) + 1)
    return float((hits / ranks)[rel.astype(bool)].sum() / rel.sum())
