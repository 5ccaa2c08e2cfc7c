"""The one preprocessing function shared by training and ingestion.

Why one function with its parameters in the checkpoint: codes are only comparable when every
frame, at training time and years later at ingestion, goes through the same arithmetic. The
steps, in order:

1. pixels -> float32; colour -> grey (ITU-R 601 luma) when `channels=1`;
2. background (dark + sky) level: "auto" = a low percentile of the pixels inside the circular
   field of view (so the dark corners of a THEMIS frame do not count), or a fixed number, or
   none; white level: "auto" = a high percentile inside the field of view (stars and saturated
   pixels above it are clipped), a fixed number, or the dtype's maximum;
3. (x - background) / (white - background), clipped to [0, 1], then an asinh or log stretch that
   keeps faint aurora visible next to bright arcs in 16-bit counts (or linear for photos);
4. resize to size x size (torch, bilinear with antialiasing: aliasing-free downsampling);
5. per-channel mean/std normalisation;
6. the circular field-of-view mask at the output size, applied last so that everything outside
   the sky disk is exactly 0.

Batches are processed in chunks, vectorised over frames; percentiles use a 2x-subsampled grid.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.errors import BadInput

STRETCHES = ("linear", "asinh", "log")
CHUNK = 128
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass
class PreprocessConfig:
    size: int = 64
    channels: int = 1
    background: str | float | None = "auto"
    background_percentile: float = 5.0
    white: str | float | None = "auto"
    white_percentile: float = 99.5
    stretch: str = "asinh"
    stretch_scale: float = 0.1  # asinh/log softening, as a fraction of the white level
    mask: bool = True
    mask_radius: float = 0.95  # field-of-view radius as a fraction of half the shorter side
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.25,)

    def __post_init__(self):
        self.mean = tuple(float(m) for m in np.atleast_1d(self.mean))
        self.std = tuple(float(s) for s in np.atleast_1d(self.std))
        if not isinstance(self.size, int) or self.size < 1:
            raise BadInput(f"preprocess size must be a positive integer, not {self.size!r}")
        if self.channels not in (1, 3):
            raise BadInput(f"preprocess channels must be 1 or 3, not {self.channels!r}")
        for name in ("background", "white"):
            v = getattr(self, name)
            if not (v is None or v == "auto" or isinstance(v, (int, float))):
                raise BadInput(f"preprocess {name} must be 'auto', a number or None, not {v!r}")
        if self.stretch not in STRETCHES:
            raise BadInput(f"preprocess stretch must be one of {STRETCHES}, not {self.stretch!r}")
        if len(self.mean) not in (1, self.channels) or len(self.std) not in (1, self.channels):
            raise BadInput("preprocess mean/std need 1 or `channels` values")
        if any(s <= 0 for s in self.std):
            raise BadInput("preprocess std values must be positive")
        if not 0 < self.mask_radius <= 2 or self.stretch_scale <= 0:
            raise BadInput("preprocess mask_radius must be in (0, 2], stretch_scale > 0")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise BadInput(f"unknown preprocess settings: {', '.join(sorted(unknown))}")
        return cls(**d)

    @classmethod
    def aurora(cls, size: int = 64) -> PreprocessConfig:
        """16-bit all-sky frames (THEMIS, synthetic): the defaults."""
        return cls(size=size)

    @classmethod
    def photo(cls, size: int = 32, channels: int = 3) -> PreprocessConfig:
        """8-bit photographs (CIFAR-10): no background, mask or stretch; CIFAR-10 mean/std."""
        if channels == 3:
            mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
        else:
            mean, std = (0.4809,), (0.2390,)
        return cls(
            size=size,
            channels=channels,
            background=None,
            white=None,
            stretch="linear",
            mask=False,
            mean=mean,
            std=std,
        )


MASK_CACHE_BYTES = 32 << 20  # field-of-view masks kept per process (1 byte per pixel)
_masks: OrderedDict = OrderedDict()
_masks_lock = threading.Lock()


def fov_mask(h: int, w: int, radius: float) -> np.ndarray:
    """(h, w) bool: inside the circle of `radius` x half the shorter side, at the centre.

    Cached (read-only arrays) up to MASK_CACHE_BYTES in all, least recently used first out; a
    mask larger than the whole budget is computed each time and not kept. Why by bytes: one
    16-megapixel frame's mask is 16 MB, and a count-bounded cache of 32 would hold 512 MB.
    """
    key = (int(h), int(w), float(radius))
    with _masks_lock:
        m = _masks.get(key)
        if m is not None:
            _masks.move_to_end(key)
            return m
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    r = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2)
    m = r <= radius * min(h, w) / 2
    m.flags.writeable = False
    if m.nbytes <= MASK_CACHE_BYTES:
        with _masks_lock:
            _masks[key] = m
            while sum(v.nbytes for v in _masks.values()) > MASK_CACHE_BYTES:
                _masks.popitem(last=False)
    return m


def mask_cache_bytes() -> int:
    """Bytes held by the field-of-view mask cache now."""
    with _masks_lock:
        return sum(v.nbytes for v in _masks.values())


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
        x = np.tensordot(LUMA, x, axes=([0], [1]))[:, None]
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


def preprocess_batch(pixels: Sequence[np.ndarray], cfg: PreprocessConfig) -> np.ndarray:
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


def preprocess(pixels: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """One frame -> float32 (channels, size, size)."""
    return preprocess_batch([pixels], cfg)[0]
