"""Code archives of several models (database + labelled queries) for benchmark report tests.

Codes are class centres with bit noise (`pipeline.synth.codes`), so MAP, P@k and per-class AP
mean something and differ by code length; class names are the synthetic aurora classes.
"""

from __future__ import annotations

import hashlib

from pipeline.synth import CLASSES
from pipeline.synth.codes import archive_relpaths, make_codes, write_code_shards

ROWS = 20  # frames per minute file


def model_sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def write_models(db_root, query_root, bits=(16, 32, 64), db_files=40, query_files=5, flip=0.3):
    """One model per code length under db_root and query_root; returns {nbits: model sha}."""
    models = {}
    db_rel = archive_relpaths(db_files)
    q_rel = [r.replace("/10/", "/11/") for r in archive_relpaths(query_files)]
    for i, nbits in enumerate(bits):
        sha = model_sha(f"report-fixture-{nbits}")
        n_db, n_q = len(db_rel) * ROWS, len(q_rel) * ROWS
        codes, labels = make_codes(n_db + n_q, nbits, len(CLASSES), seed=i, flip=flip)
        for root, rel, sl in (
            (db_root, db_rel, slice(0, n_db)),
            (query_root, q_rel, slice(n_db, None)),
        ):
            write_code_shards(
                str(root),
                rel,
                ROWS,
                nbits,
                len(CLASSES),
                model=sha,
                codes_labels=(codes[sl], labels[sl]),
                classes=list(CLASSES),
            )
        models[nbits] = sha
    return models
