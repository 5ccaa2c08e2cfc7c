"""Which way up do our THEMIS readers give frames? An independent check against the sky.

Why: the PGM reader flips stream0 rows to match pyucalgarysrs and asilib, and the CDF reader
flips cdflib's records to match the PGM reader. The sample data hold no PGM and CDF of the same
camera and time, so the two readers cannot be compared frame against frame. The sky can: a
camera looking up sees the sky mirror-free ("as seen from below": with north up, east is on the
left and azimuth runs counterclockwise); a frame whose rows are flipped shows its mirror image
(azimuth clockwise). A camera's mounting can turn the image, never mirror it, so the handedness
of each reader's output says whether PGM and CDF frames come out the same way up.

- PGM (gill, 2014-03-10 06:00-06:05, overcast but moonlit): the moon's track over 120 frames.
  West of the meridian its azimuth grows, so its sense of rotation about the zenith (the image
  centre) on screen gives the handedness; its predicted azimuth gives north.
- CDF (gako, 2011-01-06 17:00, clear): bright stars fitted to the frame (centre, scale, turn)
  once as seen from below and once mirrored; the right handedness matches many stars, the
  wrong one only chance coincidences.
- Both: fixed-pattern noise along columns vs along rows (a transposed raster would swap them).

Screen: column x to the right, row y downwards (matplotlib's default origin="upper"). Run:
`python benchmarks/themis_orientation.py [--data ../shared/data/themis] [--file-order] [--json]`;
prints JSON lines (--json: also a result file, benchmarks/results/themis-orientation-<date>/).
--file-order undoes the readers' flip first: rows as stored (PGM) / as cdflib gives
them (CDF).
Positions: a low-precision moon (~1 deg) and J2000 stars, fine at ~0.7 deg a pixel.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from scipy import ndimage, optimize

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _record  # noqa: E402

from pipeline.readers import read_frames  # noqa: E402

GILL = (56.3539, -94.6557)  # from the PGM headers
GAKO = (62.39, -145.15)  # Gakona, Alaska
CDF_TIME = datetime(2011, 1, 6, 17, 0, 30, tzinfo=timezone.utc)  # mid-file (23 frames, 66 s)
STARS = {  # name: (RA, Dec) in degrees, J2000; magnitude < ~2.5
    "Arcturus": (213.915, 19.182), "Vega": (279.235, 38.784), "Capella": (79.172, 45.998),
    "Deneb": (310.358, 45.280), "Alioth": (193.507, 55.960), "Dubhe": (165.932, 61.751),
    "Alkaid": (206.885, 49.313), "Menkalinan": (89.882, 44.947), "Polaris": (37.955, 89.264),
    "Rasalhague": (263.734, 12.560), "Mizar": (200.981, 54.925), "Kochab": (222.676, 74.156),
    "Schedar": (10.127, 56.537), "Caph": (2.295, 59.150), "Denebola": (177.265, 14.572),
    "Merak": (165.460, 56.383), "Eltanin": (269.152, 51.489), "GammaCas": (14.177, 60.717),
    "Alderamin": (319.645, 62.586), "Sadr": (305.557, 40.257), "Phecda": (178.458, 53.695),
    "Alphecca": (233.672, 26.715), "Algieba": (154.993, 19.842), "Pollux": (116.329, 28.026),
    "Castor": (113.650, 31.888), "Regulus": (152.093, 11.967), "Mirfak": (51.081, 49.861),
}  # fmt: skip


def _days(t: datetime) -> float:
    return t.timestamp() / 86400 + 2440587.5 - 2451545.0  # since J2000.0


def altaz(t: datetime, site: tuple, ra: float, dec: float) -> tuple[float, float, float]:
    """(altitude, azimuth from north through east, hour angle in hours) in degrees/hours."""
    gmst = (280.46061837 + 360.98564736629 * _days(t)) % 360
    ha, la, de = (math.radians(v) for v in (gmst + site[1] - ra, site[0], dec))
    alt = math.asin(math.sin(la) * math.sin(de) + math.cos(la) * math.cos(de) * math.cos(ha))
    y = -math.sin(ha) * math.cos(de)
    x = math.cos(la) * math.sin(de) - math.sin(la) * math.cos(de) * math.cos(ha)
    return math.degrees(alt), math.degrees(math.atan2(y, x)) % 360, math.degrees(ha) / 15 % 24


def moon_radec(t: datetime) -> tuple[float, float]:
    """Low-precision lunar position (degrees), good to about a degree."""
    d = _days(t)
    lon = math.radians(218.316 + 13.176396 * d)
    lam = lon + math.radians(6.289) * math.sin(math.radians(134.963 + 13.064993 * d))
    beta = math.radians(5.128) * math.sin(math.radians(93.272 + 13.229350 * d))
    eps = math.radians(23.439)
    y = math.sin(lam) * math.cos(eps) - math.tan(beta) * math.sin(eps)
    ra = math.atan2(y, math.cos(lam))
    dec = math.asin(math.sin(beta) * math.cos(eps) + math.cos(beta) * math.sin(eps) * math.sin(lam))
    return math.degrees(ra) % 360, math.degrees(dec)


def fov_centre(img: np.ndarray) -> tuple[float, float]:
    """(x, y) centre of the lit field of view (mean of the pixels well above the corners)."""
    corners = np.concatenate([img[:12, :12], img[:12, -12:], img[-12:, :12], img[-12:, -12:]])
    dark, sky = np.median(corners), np.median(img[100:156, 100:156])
    ys, xs = np.nonzero(img > dark + 0.3 * (sky - dark))
    return float(xs.mean()), float(ys.mean())


def frames_of(paths: list[Path], file_order: bool) -> list:
    """The readers' frames, or with the rows as stored (file_order: the flip undone)."""
    frames = [f for p in paths for f in read_frames(str(p))]
    for f in frames if file_order else ():
        f.pixels = f.pixels[::-1]
    return frames


def pgm_by_moon(frames: list) -> dict:
    """Handedness and north of PGM frames, from the moon's track."""
    img = np.median(np.stack([f.pixels for f in frames[:20]]).astype(float), 0)
    cx, cy = fov_centre(img)
    y0, x0 = np.unravel_index(np.argmax(ndimage.uniform_filter(img, 7)), img.shape)
    track, secs = [], []
    for f in frames:
        win = f.pixels[y0 - 20 : y0 + 20, x0 - 20 : x0 + 20].astype(float)
        w = np.clip(win - np.percentile(win, 97), 0, None)
        yy, xx = np.mgrid[y0 - 20 : y0 + 20, x0 - 20 : x0 + 20]
        track.append(((w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()))
        secs.append(f.time.timestamp())
    track, secs = np.array(track), np.array(secs) - secs[0]
    (vx, px), (vy, py) = (np.polyfit(secs, track[:, k], 1) for k in (0, 1))
    clockwise = (px - cx) * vy - (py - cy) * vx > 0  # y points down on screen
    _, az0, ha = altaz(frames[0].time, GILL, *moon_radec(frames[0].time))
    _, az1, _ = altaz(frames[-1].time, GILL, *moon_radec(frames[-1].time))
    assert 0 < ha < 12 and az1 > az0, "the moon must be west of the meridian (azimuth growing)"
    mirrored = bool(clockwise)  # azimuth grows clockwise only in a mirror image
    screen = math.degrees(math.atan2(-(py - cy), px - cx))  # counterclockwise from +x
    north = screen + az0 if mirrored else screen - az0
    drift = float(np.hypot(vx, vy) * secs[-1])
    return {"reader": "pgm", "frames": len(frames), "moon_azimuth": round(az0, 1),
            "moon_drift_px": round(drift, 2), "mirrored": mirrored,
            "north_deg_ccw_from_right": round(north % 360, 1)}  # fmt: skip


def _stars(img: np.ndarray, n: int = 80) -> np.ndarray:
    d = img - ndimage.median_filter(img, size=9)
    yy, xx = np.nonzero((d == ndimage.maximum_filter(d, size=5)) & (d > 0))
    top = np.argsort(-d[yy, xx])[:n]
    return np.stack([xx[top], yy[top]], 1).astype(float)


def _miss(p, az, zen, pts, mirrored: bool) -> np.ndarray:
    cx, cy, turn, scale = p
    ux, uy = (1 if mirrored else -1) * np.sin(az), -np.cos(az)  # north up: as seen, E left
    x = cx + scale * zen * (np.cos(turn) * ux - np.sin(turn) * uy)
    y = cy + scale * zen * (np.sin(turn) * ux + np.cos(turn) * uy)
    d = np.hypot(x[:, None] - pts[None, :, 0], y[:, None] - pts[None, :, 1]).min(1)
    return np.minimum(d, 4.0)  # a star with nothing near costs 4 px, whatever the distance


def cdf_by_stars(frames: list, t: datetime) -> dict:
    """Stars matched within 2 px by the best fit of each handedness to the CDF frames."""
    img = np.median(np.stack([f.pixels for f in frames]).astype(float), 0)
    pts, (cx, cy) = _stars(img), fov_centre(img)
    cat = [altaz(t, GAKO, *radec)[:2] for radec in STARS.values()]
    cat = np.array([c for c in cat if c[0] > 25])
    az, zen = np.radians(cat[:, 1]), 90 - cat[:, 0]
    out = {"reader": "cdf", "frames": len(frames), "stars_up": len(cat)}
    for mirrored in (False, True):
        best = (0, None)
        for turn in np.radians(np.arange(0, 360, 5)):
            fit = optimize.least_squares(
                _miss, [cx, cy, turn, 1.45], args=(az, zen, pts, mirrored),
                bounds=([cx - 10, cy - 10, -10, 1.2], [cx + 10, cy + 10, 20, 1.7]),
            )  # fmt: skip
            hits = int((_miss(fit.x, az, zen, pts, mirrored) < 2.0).sum())
            best = max(best, (hits, fit.x), key=lambda b: b[0])
        key = "mirrored" if mirrored else "as_seen"
        out[f"stars_matched_{key}"] = best[0]
        turn = math.degrees(best[1][2]) if best[1] is not None else float("nan")
        out[f"north_deg_ccw_from_right_{key}"] = round((90 - turn) % 360, 1)
    out["mirrored"] = out["stars_matched_mirrored"] > out["stars_matched_as_seen"]
    return out


def stripes(frames: list) -> dict:
    """Fixed-pattern offsets of whole columns vs whole rows in the central field (high-passed),
    with the correlation of each between the two halves of the frames (how reproducible)."""
    cols, rows = [], []
    for f in frames:
        a = f.pixels.astype(float)
        d = (a - ndimage.median_filter(a, size=9))[60:196, 60:196]
        cols.append(np.median(d, 0))
        rows.append(np.median(d, 1))
    h = len(frames) // 2
    out = {}
    for name, v in (("column", np.array(cols)), ("row", np.array(rows))):
        out[f"{name}_offset_sd"] = round(float(v.mean(0).std()), 2)
        out[f"{name}_split_half_r"] = round(
            float(np.corrcoef(v[:h].mean(0), v[h:].mean(0))[0, 1]), 2
        )
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "themis"
    p.add_argument("--data", type=Path, default=default, help=f"default {default}")
    p.add_argument("--file-order", action="store_true", help="undo the readers' flip first")
    _record.add_json_argument(p, "themis-orientation")
    a = p.parse_args(argv)
    pgm_frames = frames_of(
        sorted(a.data.glob("20140310_060*_gill_themis19_full.pgm*")), a.file_order
    )
    pgm = {"file_order": a.file_order, **pgm_by_moon(pgm_frames), **stripes(pgm_frames[:40])}
    cdf_frames = frames_of([a.data / "thg_l1_asf_gako_2011010617_v01.cdf"], a.file_order)
    cdf = {"file_order": a.file_order, **cdf_by_stars(cdf_frames, CDF_TIME), **stripes(cdf_frames)}
    for r in (pgm, cdf):
        print(json.dumps(r))
    same = pgm["mirrored"] == cdf["mirrored"]
    print(json.dumps({"same_handedness": same}))
    _record.write(a.json, {"pgm": pgm, "cdf": cdf, "same_handedness": same})
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
