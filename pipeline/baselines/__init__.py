"""Peer baselines the deep hashing model is measured against (benchmarks/bench_baselines.py).

Hashing baselines over real-valued feature vectors, faiss-style small::

    from pipeline.baselines import fit_hasher
    h = fit_hasher("itq", X_train, y_train=None, bits=32, seed=0)
    codes = h.encode(X)          # (n, ceil(bits/64)) uint64, kernels.pack_codes layout
    h.project(X)                 # (n, bits) real values; bit j = project(X)[:, j] > 0

| name | module | method |
| --- | --- | --- |
| `lsh` | lsh.py | sign random projections (Charikar 2002), data-independent |
| `pcah` | pcah.py | signs of the top principal components |
| `sh` | sh.py | spectral hashing (Weiss et al., NIPS 2008) |
| `itq` | itq.py | PCA + iterative orthogonal rotation (Gong & Lazebnik, CVPR 2011) |
| `ksh` | ksh.py | kernel supervised hashing with anchors (Liu et al., CVPR 2012); needs labels |

Real-valued CNN retrieval peers (ranked by cosine similarity, scored by `ranking`'s exact MAP):
`cnn.py` (MAC, R-MAC, MS-R-MAC over a checkpoint's last conv map, PCA-whitening),
`local.py` (VLAD and Hamming Embedding over the map's columns as local descriptors), and the
GIST descriptor `gist.py` (the classic papers' CIFAR-10 features, re-implemented).
"""

from __future__ import annotations

from pipeline.baselines import itq, ksh, lsh, pcah, sh
from pipeline.baselines._common import Hasher
from pipeline.errors import BadInput

HASHERS = {"lsh": lsh.fit, "pcah": pcah.fit, "sh": sh.fit, "itq": itq.fit, "ksh": ksh.fit}
SUPERVISED = frozenset({"ksh"})

__all__ = ["HASHERS", "SUPERVISED", "Hasher", "fit_hasher"]


def fit_hasher(name: str, X, y_train=None, bits: int = 32, seed: int = 0, **options) -> Hasher:
    """Fit baseline `name` (a key of HASHERS) on training features X (n, d)."""
    if name not in HASHERS:
        raise BadInput(f"unknown hashing baseline {name!r}; choose one of {sorted(HASHERS)}")
    if name in SUPERVISED and y_train is None:
        raise BadInput(f"{name} is supervised: pass y_train")
    return HASHERS[name](X, y_train, bits=bits, seed=seed, **options)
