"""Numba/NumPy compute for aurorahash: packed binary codes, exact Hamming k-NN, AP/MAP.

Imports only numpy and numba, and numba only when a compiled kernel is first used: the names
below load their module on first access (PEP 562), so a job that packs codes or searches a few
queries never pays numba's start (most of a second). Compiled kernels are cached
(``cache=True``) next to the sources; `_layout` starts numba's threads when it is imported.
"""

import importlib

_WHERE = {
    "hamming_knn": "knn",
    "merge_knn": "knn",
    "pack_codes": "packing",
    "unpack_codes": "packing",
    "ap_from_neighbors": "metrics",
    "ap_index_partial": "metrics",
    "ap_tie_aware_from_histograms": "metrics",
    "average_precision": "metrics",
    "distance_histograms": "metrics",
    "mean_average_precision": "metrics",
    "pr_curve_from_histograms": "metrics",
    "precision_at_k": "metrics",
    "precision_at_k_from_histograms": "metrics",
}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_WHERE))
