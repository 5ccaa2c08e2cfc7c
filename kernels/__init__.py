"""Numba/NumPy compute for aurorahash: packed binary codes, exact Hamming k-NN, AP/MAP.

Imports only numpy and numba. Compiled kernels are cached (``cache=True``) next to the sources.
"""

from ._layout import start_threads_keeping_torchs
from .knn import hamming_knn, merge_knn
from .metrics import (
    ap_from_neighbors,
    ap_index_partial,
    ap_tie_aware_from_histograms,
    average_precision,
    distance_histograms,
    mean_average_precision,
    pr_curve_from_histograms,
    precision_at_k,
    precision_at_k_from_histograms,
)
from .packing import pack_codes, unpack_codes

start_threads_keeping_torchs()

__all__ = [
    "ap_from_neighbors",
    "ap_index_partial",
    "ap_tie_aware_from_histograms",
    "average_precision",
    "distance_histograms",
    "hamming_knn",
    "mean_average_precision",
    "merge_knn",
    "pack_codes",
    "pr_curve_from_histograms",
    "precision_at_k",
    "precision_at_k_from_histograms",
    "unpack_codes",
]
