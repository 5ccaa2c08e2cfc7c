"""The one preprocessing function shared by training and ingestion, on any torch device.

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
   then, when `flatten` is set (off by default), the frame's smooth sky is subtracted (`_flatten`);
5. per-channel mean/std normalisation;
6. the circular field-of-view mask at the output size, applied last so that everything outside
   the sky disk is exactly 0.

Where it runs: `preprocess_tensor` takes a batch of raw frames (uint16 as read) on any torch
device. Ingest's encoder actors run it on their own device (the GPU where they have one), so
read tasks only decode; training, evaluation and `check` run the same function on the CPU
(`preprocess_frames(..., device="cpu")`, `preprocess_batch`, `preprocess`).

On the CPU it gives the former NumPy implementation's numbers bit for bit (tests/
test_preprocess_device.py; stored codes do not change): percentiles follow NumPy's linear
interpolation exactly (`_percentile`), and the stretch on CPU tensors uses NumPy's vectorised
asinh/log1p (torch's CPU kernels for these are scalar and ~20x slower, and differ from NumPy's in
the last bit of ~13% of values). On a GPU, torch's kernels agree within float tolerance. (NumPy's
float32 asinh itself depends on the CPU: with AVX-512 it differed from the baseline build's in
the last bit of ~13% of values, measured 2026-12-01; so did the former implementation, so inputs
were, and are, bit-identical between machines of one SIMD level. The RGB-to-grey sum is written
out in one order, not a BLAS tensordot, whose kernel differed between CPUs: 2026-12-07.)

Frames are processed in chunks (by shape and dtype, a bounded number of bytes each), vectorised
over frames; percentiles use a 2x-subsampled grid.
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
CHUNK = 128  # frames per chunk at most
CHUNK_BYTES = 32 << 20  # float32 bytes per chunk at most (128 THEMIS frames of 256 x 256)
LUMA = (0.299, 0.587, 0.114)


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
    flatten: float | None = None  # sky removal window, a fraction of `size` (None: off)
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
        if self.flatten is not None and not 0 < float(self.flatten) <= 1:
            raise BadInput(f"preprocess flatten must be in (0, 1] or None, not {self.flatten!r}")
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


def check_pixels(p) -> np.ndarray:
    """One frame as preprocessing takes it, or BadInput: (H, W) or (H, W, 1|3|4) integers or
    finite floats, in native byte order (what torch and the read rows carry). Non-finite
    pixels would make the levels (percentiles) NaN: such a frame is refused whole."""
    a = np.asarray(p)
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (1, 3, 4))):
        raise BadInput(f"pixels must be (H, W) or (H, W, 1|3|4), not {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise BadInput("cannot preprocess an empty image")
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise BadInput(f"cannot preprocess pixels of dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        raise BadInput("non-finite pixel values")
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    return a


def _float_workspace(shape: tuple, device: torch.device) -> torch.Tensor:
    """An uninitialised float32 tensor; on the CPU from NumPy's allocator, which asks the kernel
    for huge pages for big arrays (a fresh 16 MiB torch buffer costs ~0.1 ms a frame in page
    faults, more than the arithmetic done in it)."""
    if device.type == "cpu":
        return torch.from_numpy(np.empty(shape, dtype=np.float32))
    return torch.empty(shape, dtype=torch.float32, device=device)


def _as_nchw(frames: torch.Tensor) -> torch.Tensor:
    """(n, H, W) or (n, H, W, C) of any numeric dtype -> float32 (n, C, H, W), C in {1, 3}."""
    n, h, w = frames.shape[:3]
    c = 1 if frames.ndim == 3 else frames.shape[-1]
    if c not in (1, 3, 4):
        raise BadInput(f"cannot preprocess images with {c} channels")
    src = frames[:, None] if frames.ndim == 3 else frames[..., : min(c, 3)].permute(0, 3, 1, 2)
    out = _float_workspace((n, min(c, 3), h, w), frames.device)
    try:
        return out.copy_(src)
    except (RuntimeError, NotImplementedError):  # a build without casts from uint16/uint32 there
        if src.dtype not in _WIDER:
            raise
        return out.copy_(_widened(src))


_WIDER = {  # unsigned dtype -> (signed of its size, a wider signed one, mask)
    torch.uint16: (torch.int16, torch.int32, 0xFFFF),
    torch.uint32: (torch.int32, torch.int64, 0xFFFFFFFF),
}


def _widened(t: torch.Tensor) -> torch.Tensor:
    """uint16/uint32 values as int32/int64 through ops every device has (a same-size view)."""
    signed, wide, mask = _WIDER[t.dtype]
    return t.view(signed).to(wide).bitwise_and_(mask)


def _dtype_max(dtype: torch.dtype) -> float:
    return 1.0 if dtype.is_floating_point else float(torch.iinfo(dtype).max)


def _percentile(flat: torch.Tensor, q: float) -> torch.Tensor:
    """Per-row q-th percentile of float32 (n, m), exactly as np.percentile(flat, q, axis=1)
    (linear method; its float64 index and interpolation), via a partial sort (topk)."""
    if not 0 <= q <= 100:
        raise ValueError("Percentiles must be in the range [0, 100]")
    m = flat.shape[1]
    virtual = (m - 1) * (q / 100)
    lo = hi = m - 1  # at the top: the maximum
    if virtual < m - 1:
        lo = math.floor(virtual)
        hi = lo + 1
    gamma = virtual - lo
    if hi + 1 <= m - lo:  # the smaller partial sort: from below or from above
        v = torch.topk(flat, hi + 1, dim=1, largest=False, sorted=True).values
        a, b = v[:, lo], v[:, hi]
    else:
        v = torch.topk(flat, m - lo, dim=1, largest=True, sorted=True).values
        a, b = v[:, m - 1 - lo], v[:, m - 1 - hi]
    diff = (b - a).double()  # NumPy: float32 difference, float64 interpolation
    if gamma >= 0.5:
        return (b.double() - diff * (1 - gamma)).float()
    return (a.double() + diff * gamma).float()


def _levels(x: torch.Tensor, cfg: PreprocessConfig, dtype_max: float):
    """Per-image background and white levels, (n, 1, 1, 1) float32 each."""
    shape = (x.shape[0], 1, 1, 1)
    sky = _sky(x, cfg) if "auto" in (cfg.background, cfg.white) else None
    levels = []
    for value, q, unset in (
        (cfg.background, cfg.background_percentile, 0.0),
        (cfg.white, cfg.white_percentile, dtype_max),
    ):
        if value == "auto":
            levels.append(_percentile(sky, q).view(shape))
        else:
            v = unset if value is None else float(value)
            levels.append(torch.full(shape, v, dtype=torch.float32, device=x.device))
    return levels


def _sky(x: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """(n, k) pixels of a 2x-subsampled grid inside the field of view (all if none fit)."""
    n, _, h, w = x.shape
    sub = x[:, :, ::2, ::2]
    if cfg.mask:
        m = np.ascontiguousarray(fov_mask(h, w, cfg.mask_radius)[::2, ::2])
        flat = sub[:, :, torch.from_numpy(m).to(x.device)].reshape(n, -1)
    else:
        flat = sub.reshape(n, -1)
    return flat if flat.shape[1] else x.reshape(n, -1)  # a frame too small for the mask


def _elementwise_(x: torch.Tensor, np_fn, torch_fn_) -> torch.Tensor:
    """A float32 transcendental, in place: NumPy's vectorised kernel on CPU tensors, torch's
    elsewhere (see the module docstring)."""
    if x.device.type == "cpu":
        np_fn(x.numpy(), out=x.numpy())
        return x
    return torch_fn_(x)


def _stretch_(x: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """The asinh/log stretch of [0, 1] values, in place (the same arithmetic as NumPy's
    `np.arcsinh(x / a) / np.float32(math.asinh(1 / a))`)."""
    a = np.float32(cfg.stretch_scale)
    if cfg.stretch == "asinh":
        c = np.float32(math.asinh(1.0 / a))
        return _elementwise_(x.div_(float(a)), np.arcsinh, torch.asinh_).div_(float(c))
    if cfg.stretch == "log":
        c = np.float32(math.log1p(1.0 / a))
        return _elementwise_(x.div_(float(a)), np.log1p, torch.log1p_).div_(float(c))
    return x


def _luma(x: torch.Tensor) -> torch.Tensor:
    """(n, 3, H, W) -> (n, 1, H, W): the weighted sum written out, in float32, in one order.
    Not tensordot: that goes to a BLAS whose kernel (and so the last bit of ~10% of values)
    depends on the CPU (NumPy's OpenBLAS differed from the plain sum on an AVX-512 host)."""
    w = [float(np.float32(v)) for v in LUMA]
    return (x[:, 0:1] * w[0] + x[:, 1:2] * w[1]) + x[:, 2:3] * w[2]


def preprocess_tensor(frames: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """Raw frames of one shape, (n, H, W) or (n, H, W, C) of their own dtype (uint16 as read),
    on any device -> float32 (n, channels, size, size) model inputs on that device."""
    dev = frames.device
    x = _as_nchw(frames)
    if cfg.channels == 1 and x.shape[1] == 3:
        x = _luma(x)
    bg, white = _levels(x, cfg, _dtype_max(frames.dtype))
    x = _stretch_(x.sub_(bg).div_(torch.clamp_min(white - bg, 1e-6)).clamp_(0.0, 1.0), cfg)
    s, c = cfg.size, cfg.channels
    if x.shape[-2:] != (s, s):
        x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
    outside = torch.from_numpy(~fov_mask(s, s, cfg.mask_radius)).to(dev) if cfg.mask else None
    if cfg.flatten:
        x = _flatten(x, cfg, outside)
    if x.shape[1] != c:
        x = x.expand(-1, c, -1, -1)
    mean = torch.tensor(cfg.mean, dtype=torch.float32, device=dev).expand(c).view(1, c, 1, 1)
    std = torch.tensor(cfg.std, dtype=torch.float32, device=dev).expand(c).view(1, c, 1, 1)
    x = (x - mean) / std
    if outside is not None:
        x = x.masked_fill(outside, 0.0)
    return x.contiguous()


def _flatten(x: torch.Tensor, cfg: PreprocessConfig, outside: torch.Tensor | None) -> torch.Tensor:
    """x minus its sky: a grey opening (a minimum, then a maximum filter of k x k pixels, k =
    flatten x size) taken inside the field of view (`outside`: the pixels beyond it, None: no
    mask, the mask step's own tensor), smoothed by a k x k mean. Outside the field of view the
    result is left to the mask step.

    Why: the sky under the aurora (airglow brightening to the horizon, moonlight, vignetting,
    a town's glow) changes slowly across the disk and from frame to frame, and was the suspected
    cue by which a label-free method tells frames apart; removing it did not change CIBHash's MAP
    on synthetic aurora (benchmarks/RESULTS.md), so it is off by default. An opening keeps the
    floor the aurora sits on and drops anything narrower than k (arcs, rays, patches, stars), as
    astronomy's background estimators do."""
    s = x.shape[-1]
    k = max(3, round(float(cfg.flatten) * s) | 1)
    big = torch.finfo(torch.float32).max
    sky_only = x if outside is None else x.masked_fill(outside, big)
    low = -F.max_pool2d(-sky_only, k, 1, k // 2)
    seen = low < big  # windows that hold a pixel of the sky: also just outside the rim, so
    # that the maximum filter at the rim sees the rim's own floor, not one half a window in
    floor = F.max_pool2d(low.masked_fill(~seen, -big), k, 1, k // 2).masked_fill(~seen, 0.0)
    weight = F.avg_pool2d(seen.float(), k, 1, k // 2, count_include_pad=False)
    sky = F.avg_pool2d(floor, k, 1, k // 2, count_include_pad=False) / weight.clamp_min(1e-6)
    return x - sky


def preprocess_frames(
    pixels: Sequence[np.ndarray], cfg: PreprocessConfig, device="cpu"
) -> torch.Tensor:
    """Frames (any mix of sizes and dtypes) -> float32 (n, channels, size, size) on `device`.

    Frames of one shape and dtype are stacked, moved to the device as they are (uint16 frames
    travel as uint16) and processed together, in chunks of at most CHUNK frames and CHUNK_BYTES.
    """
    arrays = [check_pixels(p) for p in pixels]
    dev = torch.device(device)
    out = torch.empty((len(arrays), cfg.channels, cfg.size, cfg.size), device=dev)
    groups: dict[tuple, list[int]] = {}
    for i, a in enumerate(arrays):
        groups.setdefault((a.shape, a.dtype.str), []).append(i)
    for idx in groups.values():
        step = max(1, min(CHUNK, CHUNK_BYTES // (4 * arrays[idx[0]].size)))
        for k in range(0, len(idx), step):
            part = idx[k : k + step]
            raw = torch.from_numpy(np.stack([arrays[i] for i in part])).to(dev)
            out[torch.tensor(part, device=dev)] = preprocess_tensor(raw, cfg)
    return out


def preprocess_batch(pixels: Sequence[np.ndarray], cfg: PreprocessConfig) -> np.ndarray:
    """List of frames (any mix of sizes and dtypes) -> float32 (n, channels, size, size)."""
    return preprocess_frames(pixels, cfg, "cpu").numpy()


def preprocess(pixels: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """One frame -> float32 (channels, size, size)."""
    return preprocess_batch([pixels], cfg)[0]


def inputs_of(x, preprocess: dict | None):
    """A batch of dataset images (torch tensor) -> float32 model inputs."""
    import torch

    if x.dtype != torch.uint8:
        return x.float()
    y = x.float().div_(255.0)
    if preprocess:
        c = y.shape[1]
        mean = torch.tensor(preprocess.get("mean", [0.0]), dtype=torch.float32, device=y.device)
        std = torch.tensor(preprocess.get("std", [1.0]), dtype=torch.float32, device=y.device)
        y = (y - mean.expand(c).view(1, c, 1, 1)) / std.expand(c).view(1, c, 1, 1)
    return y
