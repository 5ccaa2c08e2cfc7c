"""The aurora half of the synthetic imager: emission of the four dayside classes.

Why a (crude) 3-D model rather than 2-D stamps: aurora is emission from field-aligned sheets and
rays 100-250 km up. Sampling each pixel's line of sight at a few altitudes and projecting through
the fisheye makes bands bend and thin toward the horizon, rays fan out from the magnetic zenith
and curtains show a sharp lower border with rays above it, the way real frames look, without any
per-class hand drawing in image space. Radial corona and hot spots are drawn in image space,
where their look is defined (rays converging at the magnetic zenith; irregular patches).

The classes follow Hu et al. (2009) and Yang et al. (2012) for dayside aurora: arc, drapery
corona, radial corona, hot spot. Parameters are drawn wide on purpose (weak rays on some arcs,
barely folded curtains, sparse coronae, elongated hot spots) so that the classes overlap a
little and classifying them is not trivial. Every function returns emission in relative units
(peak about 1) as float32 (S, S).
"""

from __future__ import annotations

import numpy as np

from pipeline.synth.optics import Geometry, ground_distance, periodic_profile, smooth_field

ALTITUDES_KM = np.array([100, 114, 132, 155, 185, 225], dtype=np.float32)
REF_ALT_KM = 110.0
P_EXTENT_KM = 1800.0  # along-arc range covered by the lookup tables
P_STEP_KM = 1.0


class _Lut:
    """A function of one coordinate (km) tabulated on a grid; lookup is a single gather."""

    def __init__(self, values: np.ndarray):
        self.values = values.astype(np.float32)

    @staticmethod
    def index(p: np.ndarray) -> np.ndarray:
        """Grid index of coordinates p (shared by all tables on the same grid)."""
        idx = ((p + np.float32(P_EXTENT_KM)) * np.float32(1.0 / P_STEP_KM)).astype(np.int32)
        return np.clip(idx, 0, int(2 * P_EXTENT_KM / P_STEP_KM) - 1, out=idx)

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        return self.values[idx]


def _p_grid() -> np.ndarray:
    return np.arange(-P_EXTENT_KM, P_EXTENT_KM, P_STEP_KM, dtype=np.float64)


def _harmonics(rng, p, n, amp_km, wl_km) -> np.ndarray:
    out = np.zeros_like(p)
    for _ in range(n):
        wl = rng.uniform(*wl_km)
        out += rng.uniform(*amp_km) * np.sin(2 * np.pi * p / wl + rng.uniform(0, 2 * np.pi))
    return out


def _ray_lut(rng, spacing_km, width_km, depth) -> _Lut:
    """Along-sheet brightness: a base level plus narrow rays at random positions (two ray
    widths per sheet, drawn from width_km)."""
    p = _p_grid()
    rays = np.zeros_like(p)
    for _ in range(2):
        n = int(P_EXTENT_KM / rng.uniform(*spacing_km))
        impulses = np.zeros_like(p)
        np.add.at(impulses, rng.integers(0, len(p), n), rng.uniform(0.3, 1.0, n))
        w = rng.uniform(*width_km) / P_STEP_KM
        k = np.arange(-int(4 * w) - 1, int(4 * w) + 2)
        rays += np.convolve(impulses, np.exp(-((k / w) ** 2)), mode="same")
    rays = np.minimum(rays, 1.5)
    return _Lut((1.0 - depth) + depth * rays)


def _smooth_lut(rng, strength, fade_ends: bool) -> _Lut:
    """Slow along-arc brightness changes; sometimes the band fades out inside the sky."""
    p = _p_grid()
    v = 1.0 + strength * _harmonics(rng, p, 3, (0.2, 1.0), (150, 900)) / 1.5
    if fade_ends:
        end = rng.uniform(50, 500) * rng.choice([-1, 1])
        v *= 1.0 / (1.0 + np.exp(np.clip(np.sign(end) * (p - end) / rng.uniform(20, 80), -50, 50)))
    return _Lut(np.clip(v, 0.05, None))


def _curtains(rng, g: Geometry, sheets: list[dict], scale_height: float) -> np.ndarray:
    """Sum over altitudes of field-aligned sheets; each sheet is a dict of lookup tables."""
    beta = rng.uniform(0, 2 * np.pi)  # orientation of the magnetic meridian in the image
    s = g.sin_phi * np.float32(np.cos(beta)) + g.cos_phi * np.float32(np.sin(beta))
    c = g.cos_phi * np.float32(np.cos(beta)) - g.sin_phi * np.float32(np.sin(beta))
    cot_dip = np.float32(1.0 / np.tan(np.deg2rad(rng.uniform(72, 82))))
    weights = np.exp(-(ALTITUDES_KM - ALTITUDES_KM[0]) / scale_height)
    weights /= weights.sum()
    out = np.zeros((g.size, g.size), np.float32)
    for h, w in zip(ALTITUDES_KM, weights, strict=True):
        if w < 0.04:
            continue
        dist = ground_distance(float(h))[g.rho_idx]
        idx = _Lut.index(dist * s)
        q = dist * c - (h - REF_ALT_KM) * cot_dip
        for sh in sheets:
            d = q - sh["centre"](idx)
            width = np.where(d < 0, np.float32(sh["w_lo"]), np.float32(sh["w_hi"]))
            d /= width
            prof = np.exp(-(d * d))
            prof *= sh["along"](idx)
            out += np.float32(w * sh["amp"]) * prof
    # van Rhijn: a thin emitting layer looks brighter toward the horizon (longer path)
    out *= np.minimum(np.float32(1.0) + np.float32(1.2) * g.rho**4, np.float32(2.2))
    return out


def arc(rng: np.random.Generator, g: Geometry) -> np.ndarray:
    """One to three long, thin east-west bands, curved, quiet (no or weak rays)."""
    p = _p_grid()
    n = rng.choice([1, 1, 2, 2, 3])
    q0 = float(np.clip(rng.normal(0, 150), -350, 350))
    sheets = []
    for i in range(n):
        centre = q0 + i * rng.uniform(25, 140) * rng.choice([-1, 1])
        curve = rng.uniform(-0.08, 0.08) * p**2 / 1000.0
        wave = _harmonics(rng, p, 2, (0, 8), (300, 1200))
        along = _smooth_lut(rng, rng.uniform(0.1, 0.5), rng.random() < 0.3)
        if rng.random() < 0.25:  # a few faint rays: overlaps with drapery
            rays = _ray_lut(rng, (8, 25), (1.5, 4), rng.uniform(0.1, 0.35))
            along = _Lut(along.values * rays.values)
        sheets.append(
            dict(
                centre=_Lut(centre + curve + wave),
                w_lo=rng.uniform(3, 12),
                w_hi=rng.uniform(8, 35),
                along=along,
                amp=rng.uniform(0.4, 1.0) if i else 1.0,
            )
        )
    return _curtains(rng, g, sheets, rng.uniform(12, 35))


def drapery_corona(rng: np.random.Generator, g: Geometry) -> np.ndarray:
    """Folded, rayed curtains that reach high: a sharp lower border with rays above it."""
    p = _p_grid()
    n = rng.choice([1, 2, 2, 3])
    q0 = float(np.clip(rng.normal(0, 130), -300, 300))
    sheets = []
    for i in range(n):
        centre = q0 + i * rng.uniform(30, 150) * rng.choice([-1, 1])
        folds = _harmonics(rng, p, 3, (4, 35), (40, 260))
        curve = rng.uniform(-0.06, 0.06) * p**2 / 1000.0
        rays = _ray_lut(rng, (5, 16), (1.5, 5), rng.uniform(0.45, 0.9))
        along = _smooth_lut(rng, rng.uniform(0.2, 0.6), rng.random() < 0.4)
        sheets.append(
            dict(
                centre=_Lut(centre + folds + curve),
                w_lo=rng.uniform(3, 10),
                w_hi=rng.uniform(10, 40),
                along=_Lut(rays.values * along.values),
                amp=rng.uniform(0.5, 1.0) if i else 1.0,
            )
        )
    return _curtains(rng, g, sheets, rng.uniform(35, 90))


def radial_corona(rng: np.random.Generator, g: Geometry) -> np.ndarray:
    """Rays converging toward the magnetic zenith, a little off the optical centre."""
    off = rng.uniform(0.0, 0.25) * g.radius
    psi = rng.uniform(0, 2 * np.pi)
    yy = g.cy - g.cos_phi * g.rho * g.radius  # pixel coordinates from the geometry
    xx = g.cx + g.sin_phi * g.rho * g.radius
    dx = xx - np.float32(g.cx + off * np.sin(psi))
    dy = yy - np.float32(g.cy - off * np.cos(psi))
    r = np.hypot(dx, dy) / np.float32(g.radius)
    bins = 1440
    a_idx = ((np.arctan2(dx, dy) + np.pi) * (bins / (2 * np.pi))).astype(np.int32) % bins
    t = np.linspace(0, 2 * np.pi, bins, endpoint=False)
    rays = np.zeros(bins)
    k = rng.integers(10, 50)
    for centre, width, amp in zip(
        rng.uniform(0, 2 * np.pi, k),
        np.deg2rad(rng.uniform(1.0, 5.0, k)),
        rng.uniform(0.3, 1.0, k),
        strict=True,
    ):
        d = np.angle(np.exp(1j * (t - centre)))
        rays += amp * np.exp(-((d / width) ** 2))
    rays = np.minimum(rays, 1.5) + rng.uniform(0.05, 0.35)
    if rng.random() < 0.35:  # only part of the sky shows rays
        sector = periodic_profile(rng, bins, 2)
        rays *= 1.0 / (1.0 + np.exp(-3.0 * (sector + rng.uniform(-0.5, 0.5))))
    length = rng.uniform(0.35, 0.9) * np.exp(0.35 * periodic_profile(rng, bins, 24))
    r_in = np.float32(rng.uniform(0.04, 0.2))
    env = (1.0 - np.exp(-((r / r_in) ** 2))) * np.exp(
        -((r / length.astype(np.float32)[a_idx]) ** 2)
    )
    out = rays.astype(np.float32)[a_idx] * env
    out += np.float32(rng.uniform(0.0, 0.4)) * np.exp(
        -((r / np.float32(rng.uniform(0.05, 0.2))) ** 2)
    )
    return out


def hot_spot(rng: np.random.Generator, g: Geometry) -> np.ndarray:
    """Irregular bright patches and spots, often grouped in one part of the sky."""
    f = smooth_field(rng, g.size, int(rng.integers(7, 15)))
    patches = np.clip(f - np.float32(rng.uniform(0.5, 1.4)), 0, None) ** np.float32(1.3)
    yy = g.cy - g.cos_phi * g.rho * g.radius
    xx = g.cx + g.sin_phi * g.rho * g.radius
    cr = rng.uniform(0, 0.7) * g.radius
    ca = rng.uniform(0, 2 * np.pi)
    ext = np.float32(rng.uniform(0.3, 0.9) * g.radius)
    region = np.exp(
        -(
            (xx - np.float32(g.cx + cr * np.sin(ca))) ** 2
            + (yy - np.float32(g.cy - cr * np.cos(ca))) ** 2
        )
        / (ext * ext)
    )
    out = patches * region
    for _ in range(int(rng.integers(1, 7))):
        rr = np.sqrt(rng.uniform(0, 0.85**2)) * g.radius
        aa = rng.uniform(0, 2 * np.pi)
        sx = rng.uniform(0.02, 0.09) * g.radius
        sy = sx * rng.uniform(1.0, 3.0)
        th = rng.uniform(0, np.pi)
        dx = xx - np.float32(g.cx + rr * np.sin(aa))
        dy = yy - np.float32(g.cy - rr * np.cos(aa))
        u = (dx * np.float32(np.cos(th)) + dy * np.float32(np.sin(th))) / np.float32(sx)
        v = (-dx * np.float32(np.sin(th)) + dy * np.float32(np.cos(th))) / np.float32(sy)
        out += np.float32(rng.uniform(0.3, 1.0)) * np.exp(-(u * u + v * v))
    peak = float(np.percentile(out[g.rho < 1][::7], 99.5)) if out.any() else 1.0
    return out / max(peak, 1e-6)


def diffuse_glow(rng: np.random.Generator, g: Geometry) -> np.ndarray:
    """Faint diffuse aurora under every class."""
    return np.exp(smooth_field(rng, g.size, 4) * np.float32(0.8)) * np.float32(rng.uniform(0, 0.2))


SHAPES = {
    "arc": arc,
    "drapery_corona": drapery_corona,
    "radial_corona": radial_corona,
    "hot_spot": hot_spot,
}
