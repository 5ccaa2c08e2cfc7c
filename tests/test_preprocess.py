"""The shared preprocessing: shapes, mask, determinism, levels, colour paths, config round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.errors import BadInput
from pipeline.model.preprocess import PreprocessConfig, fov_mask, preprocess, preprocess_batch
from pipeline.synth import generate

THEMIS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "themis"


@pytest.fixture(scope="module")
def frames():
    return generate(6, size=128, seed=12)[0]


def test_shape_dtype_and_batch_equals_single(frames):
    cfg = PreprocessConfig(size=32)
    x = preprocess(frames[0], cfg)
    assert x.shape == (1, 32, 32) and x.dtype == np.float32 and np.isfinite(x).all()
    X = preprocess_batch(list(frames), cfg)
    assert X.shape == (6, 1, 32, 32) and X.dtype == np.float32
    np.testing.assert_allclose(X[0], x, atol=1e-6)


def test_deterministic(frames):
    cfg = PreprocessConfig(size=40)
    a = preprocess_batch(list(frames), cfg)
    b = preprocess_batch(list(frames), cfg)
    np.testing.assert_array_equal(a, b)


def test_mask_zeroes_everything_outside_the_sky_disk(frames):
    cfg = PreprocessConfig(size=32, mask_radius=0.9)
    x = preprocess(frames[1], cfg)[0]
    m = fov_mask(32, 32, 0.9)
    assert x[0, 0] == 0 and x[-1, -1] == 0 and x[0, -1] == 0
    assert (x[~m] == 0).all()
    assert np.count_nonzero(x[m]) > 0.9 * m.sum()
    unmasked = preprocess(frames[1], PreprocessConfig(size=32, mask=False))[0]
    assert np.count_nonzero(unmasked[~m]) > 0.9 * (~m).sum()


def test_auto_levels_ignore_the_dark_level(frames):
    """A frame and the same frame 800 counts brighter preprocess (nearly) the same."""
    cfg = PreprocessConfig(size=32)
    base = frames[2]
    brighter = (base.astype(np.int64) + 800).clip(0, 65535).astype(np.uint16)
    np.testing.assert_allclose(preprocess(base, cfg), preprocess(brighter, cfg), atol=2e-3)
    fixed = PreprocessConfig(size=32, background=0, white=65535.0)
    assert not np.allclose(preprocess(base, fixed), preprocess(brighter, fixed), atol=1e-2)


def test_stretches_are_monotonic():
    ramp = np.tile(np.linspace(3000, 20000, 64).astype(np.uint16), (64, 1))
    for stretch in ("linear", "asinh", "log"):
        cfg = PreprocessConfig(size=64, stretch=stretch, mask=False, mean=0.0, std=1.0)
        row = preprocess(ramp, cfg)[0, 32]
        assert row.min() >= 0 and row.max() <= 1.0 + 1e-6
        assert (np.diff(row[2:-2]) >= -1e-6).all()
        if stretch != "linear":
            # the stretch lifts faint levels: the midpoint lands above the linear 0.5
            assert row[32] > 0.55


def test_uint8_rgb_keeps_colour_or_converts_to_grey():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    cfg3 = PreprocessConfig.photo(size=32, channels=3)
    x = preprocess(rgb, cfg3)
    assert x.shape == (3, 32, 32)
    mean = np.array(cfg3.mean, np.float32)[:, None, None]
    std = np.array(cfg3.std, np.float32)[:, None, None]
    expected = (np.moveaxis(rgb, -1, 0).astype(np.float32) / 255 - mean) / std
    np.testing.assert_allclose(x, expected, atol=1e-5)
    cfg1 = PreprocessConfig(
        size=16,
        channels=1,
        background=None,
        white=None,
        stretch="linear",
        mask=False,
        mean=0.0,
        std=1.0,
    )
    g = preprocess(rgb, cfg1)
    luma = (rgb.astype(np.float32) / 255) @ np.array([0.299, 0.587, 0.114], np.float32)
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(luma)[None, None], size=(16, 16), mode="bilinear", antialias=True
    )[0].numpy()
    np.testing.assert_allclose(g, ref, atol=1e-5)


def test_grey_to_three_channels_and_uint8_grey():
    grey = np.tile(np.arange(32, dtype=np.uint8) * 8, (32, 1))
    x = preprocess(grey, PreprocessConfig(size=32, channels=3, mask=False))
    assert x.shape == (3, 32, 32)
    np.testing.assert_array_equal(x[0], x[2])


def test_mixed_batch_keeps_input_order(frames):
    cfg = PreprocessConfig(size=16)
    rgb = np.zeros((20, 30, 3), np.uint8)
    batch = [frames[0], rgb, frames[1]]
    X = preprocess_batch(batch, cfg)
    np.testing.assert_allclose(X[2], preprocess(frames[1], cfg), atol=1e-6)
    np.testing.assert_allclose(X[1], preprocess(rgb, cfg), atol=1e-6)


def test_config_round_trip_and_validation():
    cfg = PreprocessConfig(size=48, channels=3, background=2500.0, mean=(0.1, 0.2, 0.3))
    d = json.loads(json.dumps(cfg.to_dict()))
    assert PreprocessConfig.from_dict(d) == cfg
    with pytest.raises(BadInput, match="unknown"):
        PreprocessConfig.from_dict({**d, "gamma": 2})
    with pytest.raises(BadInput):
        PreprocessConfig(channels=2)
    with pytest.raises(BadInput):
        PreprocessConfig(stretch="gamma")
    with pytest.raises(BadInput):
        preprocess(np.zeros((4, 4, 2), np.uint8), PreprocessConfig())


@pytest.mark.skipif(not THEMIS.is_dir(), reason="../shared/data/themis not present")
def test_real_themis_frames():
    from pipeline.readers import read_frames

    items = [
        next(iter(read_frames(str(p))))
        for p in (
            THEMIS / "20140310_0605_gill_themis19_full.pgm",
            THEMIS / "thg_l1_asf_gako_2011010617_v01.cdf",
        )
    ]
    X = preprocess_batch([f.pixels for f in items], PreprocessConfig(size=64))
    assert X.shape == (2, 1, 64, 64) and np.isfinite(X).all()
    m = fov_mask(64, 64, 0.95)
    assert (X[:, 0][:, ~m] == 0).all()
    assert X[:, 0][:, m].std() > 0.1


def test_mask_cache_is_bounded_by_bytes(monkeypatch):
    from pipeline.model import preprocess as pp

    def reference(h, w, radius):  # the former formula
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        return np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2) <= radius * min(h, w) / 2

    for h, w in [(1, 1), (7, 12), (64, 64), (256, 200)]:
        np.testing.assert_array_equal(fov_mask(h, w, 0.95), reference(h, w, 0.95))
    monkeypatch.setattr(pp, "MASK_CACHE_BYTES", 1 << 20)
    monkeypatch.setattr(pp, "_masks", pp.OrderedDict())
    for side in range(200, 600, 10):  # 40 masks of 40-350 kB: 8 MB if all were kept
        m = fov_mask(side, side, 0.95)
        assert m.shape == (side, side) and not m.flags.writeable
        assert pp.mask_cache_bytes() <= 1 << 20
    assert fov_mask(590, 590, 0.95) is fov_mask(590, 590, 0.95)  # the recent ones are kept
    big = fov_mask(2048, 2048, 0.95)  # 4 MB > the whole budget: computed, never kept
    assert big.shape == (2048, 2048) and pp.mask_cache_bytes() <= 1 << 20
    assert all(k[0] != 2048 for k in pp._masks)


def test_flatten_removes_the_smooth_sky_and_keeps_narrow_aurora():
    """A frame = sky brightening to the horizon + a narrow arc. With `flatten`, the sky's
    radial trend inside the disk is (nearly) gone, the arc stands out as before, outside is 0."""
    s = 128
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
    rho = np.hypot(yy - (s - 1) / 2, xx - (s - 1) / 2) / (s / 2)
    sky = 3000 + 4000 * np.clip(rho, 0, 1) ** 3  # dark + sky, brighter toward the rim
    arc = 6000 * np.exp(-0.5 * ((yy - 50) / 1.5) ** 2) * (rho < 0.8)
    frame = (sky + arc).astype(np.uint16)
    plain = PreprocessConfig(size=64, mean=(0.0,), std=(1.0,))
    flat = PreprocessConfig(size=64, mean=(0.0,), std=(1.0,), flatten=0.25)
    a, b = preprocess(frame, plain)[0], preprocess(frame, flat)[0]
    m = fov_mask(64, 64, 0.95)
    r = np.hypot(*(np.mgrid[0:64, 0:64] - 31.5)) / 32
    off_arc = m & (np.abs(np.arange(64)[:, None] - 25) > 4)
    rise = lambda x: x[off_arc & (r > 0.8)].mean() - x[off_arc & (r < 0.3)].mean()  # noqa: E731
    assert rise(a) > 0.4 and abs(rise(b)) < rise(a) / 4  # the sky's rise to the rim is gone
    assert b[off_arc].std() < a[off_arc].std() / 3
    row = b[25, 20:44]
    assert row.mean() > 0.3 and row.mean() > 10 * np.abs(b[off_arc]).mean()  # the arc stays
    assert (b[~m] == 0).all()
    np.testing.assert_array_equal(
        preprocess(frame, PreprocessConfig(size=64)),
        preprocess(frame, PreprocessConfig.from_dict(PreprocessConfig(size=64).to_dict())),
    )
    assert PreprocessConfig.from_dict(flat.to_dict()) == flat
    for bad in (0, -0.1, 1.5):
        with pytest.raises(BadInput, match="flatten"):
            PreprocessConfig(flatten=bad)
