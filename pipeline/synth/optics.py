"""The camera half of the synthetic all-sky imager: fisheye geometry, sky, stars, noise.

Why a camera model at all: the hashing network and the preprocessing must learn to ignore what
every THEMIS frame shares (a circular field of view with dark corners, a dark level of a few
thousand counts, sky brightening toward the horizon, a ragged horizon of trees, stars, shot and
read noise), so the synthetic frames carry all of it with the magnitudes measured on the real
frames in ../shared/data/themis (dark 2200-3600 counts, sky 300-5000 counts above dark, read
noise ~18 counts, shot noise ~40 counts at 700 counts of sky).

Everything is float32 and vectorised over the whole frame; each function takes the frame's own
`numpy.random.Generator` so that a frame depends only on its seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

EARTH_RADIUS_KM = 6371.0
RHO_BINS = 4096  # resolution of the rho -> ground distance tables (rho in [0, 1])


@lru_cache(maxsize=8)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return yy, xx


@lru_cache(maxsize=32)
def _smoothing_matrix(size: int, grid: int) -> np.ndarray:
    """(size, grid) Gaussian interpolation weights: M @ Z @ M.T is a smooth random field."""
    pos = (np.arange(size, dtype=np.float64) + 0.5) / size * grid - 0.5
    d = pos[:, None] - np.arange(grid)[None, :]
    w = np.exp(-0.5 * (d / 0.8) ** 2)
    w /= w.sum(axis=1, keepdims=True)
    return w.astype(np.float32)


def smooth_field(rng: np.random.Generator, size: int, grid: int) -> np.ndarray:
    """A zero-mean, roughly unit-variance random field with features ~size/grid pixels wide."""
    m = _smoothing_matrix(size, grid)
    z = rng.standard_normal((grid, grid)).astype(np.float32)
    f = m @ z @ m.T
    return f / max(float(f.std()), 1e-6)


def periodic_profile(rng: np.random.Generator, bins: int, harmonics: int) -> np.ndarray:
    """A smooth random function on a circle (bins samples), zero mean, unit variance."""
    t = np.linspace(0.0, 2 * np.pi, bins, endpoint=False)
    k = np.arange(1, harmonics + 1)[:, None]
    amp = rng.standard_normal((harmonics, 1)) / k
    ph = rng.uniform(0, 2 * np.pi, (harmonics, 1))
    f = (amp * np.cos(k * t[None, :] + ph)).sum(axis=0)
    return ((f - f.mean()) / max(f.std(), 1e-9)).astype(np.float32)


@lru_cache(maxsize=64)
def ground_distance(altitude_km: float) -> np.ndarray:
    """(RHO_BINS,) km along the ground from the station to below the point at `altitude_km` that
    a pixel at rho sees; finite at the horizon because the Earth is round (a flat-Earth tan()
    would run to infinity there and smear structure into radial spikes at the rim)."""
    zen = np.linspace(0.0, np.pi / 2, RHO_BINS)
    k = EARTH_RADIUS_KM / (EARTH_RADIUS_KM + altitude_km)
    return (EARTH_RADIUS_KM * (zen - np.arcsin(k * np.sin(zen)))).astype(np.float32)


@dataclass
class Geometry:
    """Per-frame fisheye geometry: where each pixel looks in the sky.

    rho is the distance from the optical centre in units of the field-of-view radius (1 at the
    horizon); the lens is taken as equidistant (zenith angle = rho * 90 deg), as the THEMIS
    optics nearly are. phi is the azimuth; the camera's rotation is random.
    """

    size: int
    cx: float
    cy: float
    radius: float  # field-of-view radius in pixels
    rho: np.ndarray  # (S, S) float32
    sin_phi: np.ndarray
    cos_phi: np.ndarray
    rho_idx: np.ndarray  # (S, S) int32 index into ground_distance() tables
    inside: np.ndarray  # (S, S) float32 in [0, 1]: the soft-edged field of view (horizon cut)


def make_geometry(rng: np.random.Generator, size: int) -> Geometry:
    yy, xx = _pixel_grid(size)
    cx = size / 2 - 0.5 + rng.uniform(-0.015, 0.015) * size
    cy = size / 2 - 0.5 + rng.uniform(-0.015, 0.015) * size
    radius = size * rng.uniform(0.455, 0.49)
    dx = xx - np.float32(cx)
    dy = yy - np.float32(cy)
    r = np.hypot(dx, dy)
    rho = r / np.float32(radius)
    rinv = 1.0 / np.maximum(r, 1e-3)
    sin_phi, cos_phi = dx * rinv, -dy * rinv
    rho_idx = np.minimum(rho * np.float32(RHO_BINS - 1), np.float32(RHO_BINS - 1)).astype(np.int32)
    # The horizon: trees and buildings cut into the edge of the disk over part of the azimuths.
    bins = 720
    prof = periodic_profile(rng, bins, 12)
    cut = np.clip(prof - rng.uniform(0.5, 1.5), 0, None) * rng.uniform(0.005, 0.025)
    if rng.random() < 0.5:  # a stand of trees over one stretch of the horizon: narrow spikes
        n = rng.integers(3, 20)
        at = (rng.integers(0, bins) + rng.normal(0, rng.uniform(10, 60), n).astype(int)) % bins
        cut[at] += rng.uniform(0.01, 0.05, n).astype(np.float32)
        for _ in range(int(rng.integers(0, 3))):
            cut = np.maximum(cut, np.roll(cut, 1))
    phi_idx = ((np.arctan2(dx, -dy) + np.pi) * (bins / (2 * np.pi))).astype(np.int32) % bins
    edge = (1.0 - cut)[phi_idx]
    soft = rng.uniform(1.0, 2.5) / radius  # edge width in rho units (1-2.5 px)
    inside = np.clip((edge - rho) / np.float32(soft), 0.0, 1.0)
    return Geometry(size, cx, cy, radius, rho, sin_phi, cos_phi, rho_idx, inside)


def sky_background(rng: np.random.Generator, g: Geometry) -> np.ndarray:
    """Sky counts above dark inside the field of view: airglow or moonlit haze that brightens
    toward the horizon (van Rhijn; gako sample) or fades toward it (hazy moonlit sky seen
    through strong vignetting; gill sample, a factor ~4 from zenith to horizon), and now and
    then the glow of the moon in the sky or of twilight or a town low on one side."""
    level = np.float32(np.exp(rng.normal(np.log(900.0), 0.7)))
    level = np.clip(level, 150.0, 6000.0)
    rho = g.rho
    a = np.float32(rng.uniform(-0.75, 0.5))
    limb = 1.0 + a * np.minimum(rho, 1.0) ** np.float32(rng.uniform(2.0, 4.0))
    sky = level * limb
    sky += level * 0.15 * smooth_field(rng, g.size, 3)  # uneven airglow / thin cloud
    if rng.random() < 0.35:
        # a glow low on the horizon at azimuth psi (moon, twilight, a town)
        psi = rng.uniform(0, 2 * np.pi)
        toward = g.sin_phi * np.float32(np.sin(psi)) + g.cos_phi * np.float32(np.cos(psi))
        strength = level * rng.uniform(0.5, 4.0)
        sharp = rng.uniform(3.0, 10.0)
        sky += np.float32(strength) * np.exp(np.float32(sharp) * (rho * toward - 1.0))
    if rng.random() < 0.2:
        # the moon's glare through haze: a broad bright patch inside the sky
        rc, psi = rng.uniform(0.3, 0.85), rng.uniform(0, 2 * np.pi)
        toward = g.sin_phi * np.float32(np.sin(psi)) + g.cos_phi * np.float32(np.cos(psi))
        d2 = rho * rho + np.float32(rc * rc) - np.float32(2 * rc) * rho * toward
        sigma2 = np.float32(rng.uniform(0.05, 0.3) ** 2)
        sky += np.float32(level * rng.uniform(0.3, 1.5)) * np.exp(-d2 / sigma2)
    return np.clip(sky, 0, None)


def vignetting(rng: np.random.Generator, g: Geometry) -> np.ndarray:
    """Optical throughput: falls off over the outer 15% of the field of view."""
    return 1.0 - np.float32(rng.uniform(0.1, 0.4)) * np.clip(g.rho - 0.85, 0, None) / 0.15


def add_stars(rng: np.random.Generator, img: np.ndarray, g: Geometry, sky_level: float) -> None:
    """Point sources splatted bilinearly; fewer show through a bright sky."""
    mean_n = 60.0 * (g.size / 256.0) ** 1.0 * min(1.0, 900.0 / max(sky_level, 1.0)) ** 0.5
    n = int(rng.poisson(mean_n))
    if n == 0:
        return
    rr = np.sqrt(rng.uniform(0, 0.97**2, n)) * g.radius
    az = rng.uniform(0, 2 * np.pi, n)
    x = g.cx + rr * np.sin(az)
    y = g.cy - rr * np.cos(az)
    flux = np.exp(rng.normal(np.log(350.0), 0.9, n)).astype(np.float32)
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    fx = (x - x0).astype(np.float32)
    fy = (y - y0).astype(np.float32)
    s = g.size
    for ox, oy, w in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        xi, yi = x0 + ox, y0 + oy
        ok = (xi >= 0) & (xi < s) & (yi >= 0) & (yi < s)
        np.add.at(img, (yi[ok], xi[ok]), (flux * w)[ok])


def expose(rng: np.random.Generator, signal: np.ndarray, g: Geometry) -> np.ndarray:
    """Counts above dark -> uint16 frame: dark level, scattered light outside the disk, a faint
    reflection ring at the rim, hot pixels, shot and read noise, 16-bit clipping."""
    s = g.size
    dark = np.float32(rng.uniform(2200.0, 3600.0))
    gain = np.float32(rng.uniform(1.5, 3.0))  # counts per photo-electron
    read = np.float32(rng.uniform(12.0, 22.0))
    inside = g.inside
    total = signal * inside
    outside_level = np.float32(rng.uniform(0.0, 0.04)) * float(np.median(signal[inside > 0.5]))
    total += outside_level * (1.0 - inside)
    if rng.random() < 0.5:
        ring = np.exp(-(((g.rho - rng.uniform(1.01, 1.05)) * g.radius / 0.8) ** 2))
        total += np.float32(rng.uniform(50, 400)) * ring.astype(np.float32)
    noise = rng.standard_normal((s, s), dtype=np.float32)
    total += noise * np.sqrt(gain * np.clip(total, 0, None) + read * read)
    total += dark
    n_hot = int(rng.poisson(3 * (s / 256.0) ** 2))
    if n_hot:
        total[rng.integers(0, s, n_hot), rng.integers(0, s, n_hot)] += rng.uniform(
            300, 4000, n_hot
        ).astype(np.float32)
    return np.clip(np.rint(total), 0, 65535).astype(np.uint16)
