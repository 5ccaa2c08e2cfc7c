"""Seeded train / query / database sets of synthetic aurora for hashing experiments: which
frames of the seeded stream each set holds. The frames themselves are rendered as the archive
holds them and read as ingest reads them (pipeline.training.datasets.synthetic), by that one path
only.

Why index ranges of one seeded stream: the sets are disjoint by construction, need no shuffling
state, and can be regenerated (or generated lazily, in parallel) from (seed, indices) alone.
Like the CIFAR-10 protocols, the training set is by default part of the database; queries never
are. Ranges start at multiples of 4, so every set of a multiple-of-4 size is exactly balanced.
"""

from __future__ import annotations

import numpy as np

DEFAULT_SIZES = {"train": 2000, "query": 400, "database": 4000}


def split_indices(
    n_train: int = DEFAULT_SIZES["train"],
    n_query: int = DEFAULT_SIZES["query"],
    n_database: int = DEFAULT_SIZES["database"],
    train_in_database: bool = True,
) -> dict[str, np.ndarray]:
    """Stream indices of each set: database first, then queries, then (if separate) training."""
    if min(n_train, n_query, n_database) < 0:
        raise ValueError("set sizes must be >= 0")
    if train_in_database and n_train > n_database:
        raise ValueError("n_train > n_database while the training set is part of the database")
    db = np.arange(n_database)
    q0 = -(-n_database // 4) * 4
    query = np.arange(q0, q0 + n_query)
    if train_in_database:
        train = db[:n_train]
    else:
        t0 = -(-(q0 + n_query) // 4) * 4
        train = np.arange(t0, t0 + n_train)
    return {"train": train, "query": query, "database": db}
