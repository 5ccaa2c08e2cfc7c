"""Packed binary codes: ``ceil(nbits/64)`` little-endian uint64 words per code.

Bit ``j`` of a code is bit ``j % 64`` (least significant first) of word ``j // 64``; unused high
bits are zero. This is ``np.packbits(bits, axis=1, bitorder="little")`` zero-padded to a multiple
of 8 bytes and viewed as ``<u8``, so the byte view of a code is a FAISS binary code of dimension
``64 * words``.
"""

import numpy as np


def pack_codes(bits):
    """Pack (n, nbits) bits into (n, ceil(nbits/64)) uint64 words.

    ``bits`` is bool, or {0, 1} integers, or real values (bit = value > 0, e.g. hash-layer outputs
    in [-1, 1]).
    """
    b = np.asarray(bits)
    if b.ndim != 2:
        raise ValueError(f"bits must be 2-D (n, nbits), got {b.ndim}-D")
    if b.shape[1] < 1:
        raise ValueError("bits must have at least one column")
    if b.dtype == np.bool_:
        pass
    elif b.dtype.kind in "iu":
        if b.size and (b.min() < 0 or b.max() > 1):
            raise ValueError("integer bits must be 0 or 1 (pass real values to threshold at 0)")
        b = b != 0
    elif b.dtype.kind == "f":
        if b.size and not np.isfinite(b).all():
            raise ValueError("bits holds NaN or infinite values")
        b = b > 0
    else:
        raise ValueError(f"bits must be bool, integer 0/1 or real, got {b.dtype}")
    n, nbits = b.shape
    words = (nbits + 63) // 64
    packed = np.packbits(b, axis=1, bitorder="little")
    out = np.zeros((n, words * 8), dtype=np.uint8)
    out[:, : packed.shape[1]] = packed
    return out.view("<u8").astype(np.uint64, copy=False).reshape(n, words)


def unpack_codes(packed, nbits):
    """Inverse of :func:`pack_codes`: (n, words) uint64 -> (n, nbits) uint8 of {0, 1}."""
    p = np.asarray(packed)
    if p.ndim != 2:
        raise ValueError(f"packed must be 2-D (n, words), got {p.ndim}-D")
    if p.dtype != np.uint64:
        raise ValueError(f"packed must have dtype uint64, got {p.dtype}")
    if isinstance(nbits, (bool, np.bool_)) or not isinstance(nbits, (int, np.integer)) or nbits < 1:
        raise ValueError(f"nbits must be a positive integer, got {nbits!r}")
    if p.shape[1] != (nbits + 63) // 64:
        raise ValueError(
            f"packed has {p.shape[1]} words per code but nbits={nbits} needs {(nbits + 63) // 64}"
        )
    le = np.ascontiguousarray(p, dtype="<u8").view(np.uint8).reshape(p.shape[0], -1)
    return np.unpackbits(le, axis=1, count=nbits, bitorder="little")
