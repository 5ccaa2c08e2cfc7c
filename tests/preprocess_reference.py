"""Today's preprocessing arithmetic, frozen as an oracle (NumPy levels and stretch, torch resize):
`pipeline.model.preprocess` as it was before its core moved to torch (issue 10). The torch core must
give these numbers bit for bit on the CPU, so that no stored code changes."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.errors import BadInput
from pipeline.model.preprocess import PreprocessConfig, fov_mask

CHUNK = 128
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _as_nchw(stack: np.ndarray) -> np.ndarray:
    """(n, H, W) or (n, H, W, C) of any numeric dtype -> float32 (n, C, H, W), C in {1, 3}."""
    x = stack.astype(np.float32, copy=False)
    if x.ndim == 3:
        return x[:, None]
    c = x.shape[-1]
    if c == 1:
        return x[..., 0][:, None]
    if c in (3, 4):
        return np.ascontiguousarray(np.moveaxis(x[..., :3], -1, 1))
    raise BadInput(f"cannot preprocess images with {c} channels")


def _dtype_max(dtype: np.dtype) -> float:
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    return 1.0


def _levels(x: np.ndarray, cfg: PreprocessConfig, dtype_max: float):
    """Per-image background and white levels, (n, 1, 1, 1) each."""
    n, _, h, w = x.shape
    want_bg, want_white = cfg.background == "auto", cfg.white == "auto"
    qs = [
        q
        for q, want in ((cfg.background_percentile, want_bg), (cfg.white_percentile, want_white))
        if want
    ]
    bg_est = white_est = None
    if qs:
        sub = x[:, :, ::2, ::2]
        if cfg.mask:
            flat = sub[:, :, fov_mask(h, w, cfg.mask_radius)[::2, ::2]].reshape(n, -1)
        else:
            flat = sub.reshape(n, -1)
        if flat.shape[1] == 0:  # a frame too small for the subsampled mask
            flat = x.reshape(n, -1)
        vals = iter(np.percentile(flat, qs, axis=1).astype(np.float32))  # each (n,)
        bg_est = next(vals) if want_bg else None
        white_est = next(vals) if want_white else None
    shape = (n, 1, 1, 1)
    if cfg.background == "auto":
        bg = bg_est.reshape(shape)
    elif cfg.background is None:
        bg = np.zeros(shape, np.float32)
    else:
        bg = np.full(shape, float(cfg.background), np.float32)
    if cfg.white == "auto":
        white = white_est.reshape(shape)
    elif cfg.white is None:
        white = np.full(shape, dtype_max, np.float32)
    else:
        white = np.full(shape, float(cfg.white), np.float32)
    return bg, white


def _chunk(stack: np.ndarray, cfg: PreprocessConfig) -> torch.Tensor:
    x = _as_nchw(stack)
    if cfg.channels == 1 and x.shape[1] == 3:
        # written out in one order (np.tensordot's BLAS kernel depends on the CPU)
        x = (x[:, 0:1] * LUMA[0] + x[:, 1:2] * LUMA[1]) + x[:, 2:3] * LUMA[2]
    bg, white = _levels(x, cfg, _dtype_max(stack.dtype))
    x = (x - bg) / np.maximum(white - bg, np.float32(1e-6))
    np.clip(x, 0.0, 1.0, out=x)
    a = np.float32(cfg.stretch_scale)
    if cfg.stretch == "asinh":
        x = np.arcsinh(x / a) / np.float32(math.asinh(1.0 / a))
    elif cfg.stretch == "log":
        x = np.log1p(x / a) / np.float32(math.log1p(1.0 / a))
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    s = cfg.size
    if t.shape[-2:] != (s, s):
        t = F.interpolate(t, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
    c = cfg.channels
    if t.shape[1] != c:
        t = t.expand(-1, c, -1, -1)
    mean = torch.tensor(cfg.mean, dtype=torch.float32).expand(c).view(1, c, 1, 1)
    std = torch.tensor(cfg.std, dtype=torch.float32).expand(c).view(1, c, 1, 1)
    t = (t - mean) / std
    if cfg.mask:
        t = t.masked_fill(torch.from_numpy(~fov_mask(s, s, cfg.mask_radius)), 0.0)
    return t.contiguous()


def _check(p) -> np.ndarray:
    a = np.asarray(p)
    if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (1, 3, 4)):
        if a.shape[0] == 0 or a.shape[1] == 0:
            raise BadInput("cannot preprocess an empty image")
        if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
            raise BadInput(f"cannot preprocess pixels of dtype {a.dtype}")
        return a
    raise BadInput(f"pixels must be (H, W) or (H, W, 1|3|4), not {a.shape}")


def reference_batch(pixels: Sequence[np.ndarray], cfg: PreprocessConfig) -> np.ndarray:
    """List of frames (any mix of sizes and dtypes) -> float32 (n, channels, size, size)."""
    arrays = [_check(p) for p in pixels]
    out = np.empty((len(arrays), cfg.channels, cfg.size, cfg.size), dtype=np.float32)
    # frames of one shape and dtype are stacked and processed together, in input order
    groups: dict[tuple, list[int]] = {}
    for i, a in enumerate(arrays):
        groups.setdefault((a.shape, a.dtype.str), []).append(i)
    for idx in groups.values():
        for k in range(0, len(idx), CHUNK):
            part = idx[k : k + CHUNK]
            out[part] = _chunk(np.stack([arrays[i] for i in part]), cfg).numpy()
    return out
