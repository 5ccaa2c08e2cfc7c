"""Training augmentations of model inputs, chosen per kind of data and recorded in config.json.

Why per kind of data: a contrastive method (CIBHash) learns exactly the invariances its two views
differ by, so the views must differ the way frames of one auroral form differ, and in no way
that tells forms apart. Three policies (`POLICIES`):

- `shift-flip`: the recipe's own (pipeline.training.loop: random translation of up to `translate`
  px from reflect-padded images, alternating horizontal flips). Every supervised method's default;
  its batches are unchanged by this module.
- `allsky` (`AllSky`), for all-sky frames (the aurora preprocessing, whose field-of-view mask
  `mask` is on): rotation about the zenith (the image centre) by any angle, since an all-sky
  camera's azimuth orientation is a property of the site, not of the aurora; horizontal flips;
  brightness and gamma jitter (exposure, sky background and the stretch of faint emission vary
  night to night); Gaussian sensor noise; star speckle (a few single bright pixels inside the
  field of view, as stars and cosmic-ray hits are). The field-of-view mask is applied again
  last, so no rotated corner leaks into the sky disk's outside (exactly 0, as preprocessing
  leaves it).
- `photo` (`Photo`), for photographs (CIFAR-10, the photo preprocessing): the published CIBHash
  views (github.com/qiuzx2/CIBHash utils/data.py: RandomResizedCrop scale (0.5, 1), horizontal
  flip, colour jitter 0.4 with p 0.7, grayscale p 0.2) as cheap tensor operations: a resized crop
  by one affine resampling, flips, brightness/contrast/saturation jitter, grayscale. Their hue
  jitter and Gaussian blur are left out (hue needs an HSV round trip; blur is a low-pass the
  small inputs barely survive).

Everything runs on batches of model inputs (float32 (n, C, S, S) after preprocessing and the
photo normalisation) on their device. Every random number comes from the loop's generator (CPU,
seeded per epoch) in a fixed order, so a resumed run draws the same views. Intensity changes
act on the display values v = x * std + mean (in [0, 1] after the stretch), clipped to [0, 1]
and normalised back.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from pipeline.choices import POLICIES

LUMA = (0.299, 0.587, 0.114)


def choose(policy: str | None, views: int, preprocess: dict | None) -> str:
    """The policy that runs: the one asked for, else `shift-flip` for one view and, for a
    two-view method, `allsky` for masked (all-sky) inputs or `photo` otherwise."""
    if policy not in (None, "auto"):
        return policy
    if views == 1:
        return "shift-flip"
    return "allsky" if (preprocess or {}).get("mask") else "photo"


def build(policy: str, preprocess: dict | None):
    """The augmentation of `policy` for inputs made by `preprocess` (None for shift-flip, which
    the loop runs on its padded images)."""
    if policy == "shift-flip":
        return None
    pre = dict(preprocess or {})
    norm = dict(mean=tuple(pre.get("mean", (0.0,))), std=tuple(pre.get("std", (1.0,))))
    if policy == "allsky":
        return AllSky(**norm, mask=bool(pre.get("mask")), mask_radius=pre.get("mask_radius", 0.95))
    if policy == "photo":
        return Photo(**norm)
    raise ValueError(f"unknown augmentation {policy!r}; choose one of {POLICIES}")


def _uniform(gen, n, lo, hi):
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _log_uniform(gen, n, lo, hi):
    return torch.exp(_uniform(gen, n, math.log(lo), math.log(hi)))


def _per_item(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.to(x.device, x.dtype).view(-1, 1, 1, 1)


def _affine(a, b, c, d, e, f) -> torch.Tensor:
    """(n, 2, 3) affine matrices [[a, b, c], [d, e, f]] from (n,) entries."""
    return torch.stack([torch.stack([a, b, c], 1), torch.stack([d, e, f], 1)], 1)


def _resample(x: torch.Tensor, theta: torch.Tensor, padding: str) -> torch.Tensor:
    """x sampled at theta (n, 2, 3) applied to the output's normalised coordinates (centre 0)."""
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)


@dataclass(frozen=True)
class _Normalised:
    """What both intensity policies share: model inputs <-> display values in [0, 1]."""

    mean: tuple
    std: tuple

    def _stats(self, x):
        c = x.shape[1]
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).expand(c).view(1, c, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).expand(c).view(1, c, 1, 1)
        return mean, std

    def to_display(self, x):
        mean, std = self._stats(x)
        return x * std + mean

    def to_input(self, v):
        mean, std = self._stats(v)
        return (v.clamp(0.0, 1.0) - mean) / std

    def record(self) -> dict:
        """config.json `augment`: the policy and its parameters."""
        d = asdict(self)
        for k in ("mean", "std"):
            d.pop(k)
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
        return {"policy": self.policy, **d}


@dataclass(frozen=True)
class AllSky(_Normalised):
    """All-sky frames: rotation about the centre, flips, brightness/gamma, noise, star speckle;
    the field-of-view mask re-applied (module docstring)."""

    policy = "allsky"
    mask: bool = True
    mask_radius: float = 0.95
    flip: float = 0.5  # probability of a horizontal flip (before the rotation)
    brightness: tuple = (0.75, 1.25)  # gain on display values, uniform
    gamma: tuple = (0.7, 1.4)  # v ** gamma, log-uniform
    noise: float = 0.03  # sensor noise: std drawn uniformly in [0, noise] (display units)
    stars: int = 4  # up to this many speckles (uniform 0..stars) per frame
    crop: tuple = (1.0, 1.0)  # side of the viewed square / the frame's, uniform (1: whole sky)
    glow: float = 0.0  # a linear sky-glow ramp across the disk: slope uniform in [0, glow]

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        n, _, h, w = x.shape
        angle = _uniform(gen, n, 0.0, 2 * math.pi)
        sx = torch.where(torch.rand(n, generator=gen) < self.flip, -1.0, 1.0)
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = _affine(cos * sx, -sin, torch.zeros(n), sin * sx, cos, torch.zeros(n))
        if tuple(self.crop) != (1.0, 1.0):  # no draws when off: the views stay as they were
            side = _uniform(gen, n, *self.crop)
            shift = (1 - side)[:, None] * _uniform(gen, 2 * n, -1.0, 1.0).view(n, 2)
            theta = torch.cat([theta[:, :, :2] * side.view(n, 1, 1), shift[:, :, None]], 2)
        v = self.to_display(_resample(x, theta, "zeros"))
        if self.glow > 0:
            v = v + self._ramp(gen, n, h, w).to(v.device, v.dtype)
        v = v.clamp(0.0, 1.0) ** _per_item(_log_uniform(gen, n, *self.gamma), v)
        v = v * _per_item(_uniform(gen, n, *self.brightness), v)
        sigma = _per_item(_uniform(gen, n, 0.0, self.noise), v)
        v = v + sigma * torch.randn(v.shape, generator=gen).to(v.device, v.dtype)
        v = torch.where(self._speckle(gen, n, h, w).to(v.device), 1.0, v)
        out = self.to_input(v)
        if self.mask:
            out = out.masked_fill(~self._inside(h, w).to(out.device), 0.0)
        return out

    def _ramp(self, gen, n: int, h: int, w: int) -> torch.Tensor:
        """(n, 1, h, w) display offsets: slope * (distance along a random azimuth), in
        [-slope, slope] across the frame, slope uniform in [0, glow]."""
        slope = _uniform(gen, n, 0.0, self.glow).view(n, 1, 1, 1)
        phi = _uniform(gen, n, 0.0, 2 * math.pi).view(n, 1, 1, 1)
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        return slope * (torch.cos(phi) * xx + torch.sin(phi) * yy)

    def _inside(self, h: int, w: int) -> torch.Tensor:
        from pipeline.model.preprocess import fov_mask

        if not self.mask:
            return torch.ones(h, w, dtype=torch.bool)
        return torch.from_numpy(fov_mask(h, w, self.mask_radius).copy())

    def _speckle(self, gen, n: int, h: int, w: int) -> torch.Tensor:
        """(n, 1, h, w) bool: 0..stars random pixels of each frame inside the field of view."""
        inside = torch.nonzero(self._inside(h, w).flatten()).flatten()
        k = max(int(self.stars), 0)
        pos = inside[torch.randint(0, len(inside), (n, k), generator=gen)]
        keep = torch.arange(k)[None, :] < torch.randint(0, k + 1, (n, 1), generator=gen)
        hits = torch.zeros(n, h * w).scatter_add_(1, pos, keep.float())
        return (hits > 0).view(n, 1, h, w)


@dataclass(frozen=True)
class Photo(_Normalised):
    """Photographs: resized crop, flips, colour jitter, grayscale (module docstring)."""

    policy = "photo"
    scale: tuple = (0.5, 1.0)  # area of the crop, as a fraction of the image
    ratio: tuple = (3 / 4, 4 / 3)  # its aspect ratio, log-uniform
    flip: float = 0.5
    jitter: float = 0.4  # brightness, contrast and saturation factors in [1 - j, 1 + j]
    jitter_p: float = 0.7  # probability that an image gets the colour jitter
    grayscale_p: float = 0.2

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        v = self.to_display(self._crop(x, gen))
        n, j = len(x), self.jitter
        factors = [_per_item(_uniform(gen, n, 1 - j, 1 + j), v) for _ in range(3)]
        on = _per_item(torch.rand(n, generator=gen) < self.jitter_p, v).bool()
        grey = _per_item(torch.rand(n, generator=gen) < self.grayscale_p, v).bool()
        jittered = v * factors[0]
        m = _luma(jittered).mean(dim=(2, 3), keepdim=True)
        jittered = ((jittered - m) * factors[1] + m).clamp(0.0, 1.0)
        lum = _luma(jittered)
        jittered = lum + (jittered - lum) * factors[2]
        v = torch.where(on, jittered.clamp(0.0, 1.0), v)
        v = torch.where(grey, _luma(v).expand_as(v), v)
        return self.to_input(v)

    def _crop(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """A random crop of scale x ratio, flipped or not, resampled to the full size."""
        n = len(x)
        area = _uniform(gen, n, *self.scale)
        ratio = _log_uniform(gen, n, *self.ratio)
        cw, ch = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)
        cx = (1 - cw) * _uniform(gen, n, -1.0, 1.0)
        cy = (1 - ch) * _uniform(gen, n, -1.0, 1.0)
        sx = torch.where(torch.rand(n, generator=gen) < self.flip, -1.0, 1.0)
        zero = torch.zeros(n)
        return _resample(x, _affine(cw * sx, zero, cx, zero, ch, cy), "border")


def _luma(v: torch.Tensor) -> torch.Tensor:
    """(n, 1, h, w) grey of display values (ITU-R 601; the image itself when it has one channel)."""
    if v.shape[1] != 3:
        return v[:, :1]
    w = torch.tensor(LUMA, dtype=v.dtype, device=v.device).view(1, 3, 1, 1)
    return (v * w).sum(1, keepdim=True)
