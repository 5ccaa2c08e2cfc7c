"""Training augmentations (pipeline.training.augment): all-sky views keep the field-of-view mask
and rotate about the zenith, every parameter stays in its documented range, photo views flip and
crop as asked, and the same generator seed gives the same views."""

import math

import numpy as np
import pytest
import torch

from pipeline.model.preprocess import PreprocessConfig, fov_mask
from pipeline.training import augment
from pipeline.training.augment import AllSky, Photo

torch.set_num_threads(1)
PRE = PreprocessConfig.aurora(32).to_dict()  # mean 0.5, std 0.25, mask radius 0.95
INSIDE = torch.from_numpy(fov_mask(32, 32, 0.95).copy())
STILL = dict(
    brightness=(1.0, 1.0), gamma=(1.0, 1.0), noise=0.0, stars=0, flip=0.0, crop=(1.0, 1.0), glow=0.0
)


def _frames(n=8, seed=0):
    """Model inputs as preprocessing leaves them: noise inside the disk, exactly 0 outside."""
    x = torch.from_numpy(np.random.default_rng(seed).normal(size=(n, 1, 32, 32)).astype("f4"))
    return x.clamp(-2, 2).masked_fill(~INSIDE, 0.0)


def _display(x):
    return x * 0.25 + 0.5


def _allsky(**kw):
    return AllSky(mean=(0.5,), std=(0.25,), **kw)


def test_policy_choice_follows_the_views_and_the_data():
    photo = PreprocessConfig.photo(32, 3).to_dict()
    assert augment.choose(None, 1, PRE) == "shift-flip"  # one view: the recipe's, unchanged
    assert augment.choose("auto", 2, PRE) == "allsky"
    assert augment.choose(None, 2, photo) == "photo"
    assert augment.choose("photo", 2, PRE) == "photo"  # asked for: kept
    assert augment.build("shift-flip", PRE) is None
    assert augment.build("allsky", PRE).record()["policy"] == "allsky"
    with pytest.raises(ValueError, match="unknown augmentation"):
        augment.build("mixup", PRE)


def test_allsky_views_keep_the_field_of_view_mask():
    x = _frames(16)
    out = augment.build("allsky", PRE)(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    assert (out[:, :, ~INSIDE] == 0).all()  # nothing rotated in from the corners
    inside = out[:, :, INSIDE]
    assert (inside != 0).float().mean() > 0.99 and not torch.equal(out, x)


def test_rotation_is_about_the_zenith_and_keeps_radii():
    """A bright spot at radius r from the centre stays at radius r, at some other azimuth."""
    x = torch.full((64, 1, 32, 32), -2.0).masked_fill(~INSIDE, 0.0)
    x[:, :, 15:17, 25:27] = 2.0  # a 2x2 spot centred 10 px right of the centre (15.5, 15.5)
    out = _allsky(**STILL)(x, torch.Generator().manual_seed(0))
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    w = (_display(out[:, 0]) - 0.5).clamp_min(0)  # the spot only (outside: 0.5, sky: 0)
    cy, cx = ((w * yy).sum((1, 2)) / w.sum((1, 2))), ((w * xx).sum((1, 2)) / w.sum((1, 2)))
    r = torch.hypot(cy - 15.5, cx - 15.5)
    assert (r - 10).abs().max() < 0.75
    angles = torch.atan2(cy - 15.5, cx - 15.5)
    assert angles.max() - angles.min() > math.pi  # any angle, not a few fixed ones


def test_a_view_of_a_uniform_sky_is_uniform_inside():
    x = torch.full((4, 1, 32, 32), 0.8).masked_fill(~INSIDE, 0.0)
    out = _allsky(**STILL)(x, torch.Generator().manual_seed(3))
    core = torch.from_numpy(fov_mask(32, 32, 0.8).copy())  # away from the interpolated rim
    torch.testing.assert_close(out[:, :, core], torch.full_like(out[:, :, core], 0.8))


@pytest.mark.parametrize("gamma", [(0.7, 1.4), (0.5, 2.0)])
def test_gamma_and_brightness_stay_in_their_ranges(gamma):
    v0 = 0.4  # a uniform sky of display value 0.4 -> b * 0.4 ** g at the centre
    x = torch.full((200, 1, 32, 32), (v0 - 0.5) / 0.25).masked_fill(~INSIDE, 0.0)
    aug = _allsky(brightness=(0.8, 1.2), gamma=gamma, noise=0.0, stars=0)
    centre = _display(aug(x, torch.Generator().manual_seed(0))[:, 0, 16, 16])
    lo, hi = 0.8 * v0 ** gamma[1], 1.2 * v0 ** gamma[0]
    assert centre.min() >= lo - 1e-6 and centre.max() <= hi + 1e-6
    assert centre.min() < lo + 0.25 * (hi - lo) and centre.max() > hi - 0.25 * (hi - lo)
    g = _allsky(brightness=(1.0, 1.0), gamma=gamma, noise=0.0, stars=0)
    exponent = torch.log(_display(g(x, torch.Generator().manual_seed(0))[:, 0, 16, 16])) / math.log(
        v0
    )
    assert exponent.min() >= gamma[0] - 1e-4 and exponent.max() <= gamma[1] + 1e-4


def test_star_speckle_is_a_few_white_pixels_inside_the_disk():
    x = torch.full((50, 1, 32, 32), -0.8).masked_fill(~INSIDE, 0.0)  # display 0.3
    out = _allsky(**{**STILL, "stars": 4})(x, torch.Generator().manual_seed(0))
    white = _display(out[:, 0]) > 0.999
    per_frame = white.sum((1, 2))
    assert per_frame.max() <= 4 and per_frame.max() >= 3 and (per_frame == 0).any()
    assert not white[:, ~INSIDE].any()


def test_noise_has_the_asked_spread():
    x = torch.full((40, 1, 32, 32), 0.0).masked_fill(~INSIDE, 0.0)  # display 0.5
    out = _allsky(**{**STILL, "noise": 0.05})(x, torch.Generator().manual_seed(0))
    sd = _display(out[:, 0])[:, INSIDE].std(dim=1)
    assert sd.max() <= 0.05 * 1.2 and sd.max() > 0.03 and sd.min() < 0.02  # U(0, 0.05) per frame


def test_views_are_reproducible_from_the_generator_seed():
    x = _frames(8)
    for policy, pre in (("allsky", PRE), ("photo", PreprocessConfig.photo(32, 1).to_dict())):
        aug = augment.build(policy, pre)
        a = aug(x, torch.Generator().manual_seed(5))
        b = aug(x, torch.Generator().manual_seed(5))
        c = aug(x, torch.Generator().manual_seed(6))
        assert torch.equal(a, b) and not torch.equal(a, c)


def test_photo_flip_and_identity_crop():
    x = torch.randn(6, 3, 32, 32)
    still = dict(mean=(0.5,), std=(0.25,), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    off = dict(jitter_p=0.0, grayscale_p=0.0)
    g = torch.Generator().manual_seed(0)
    same = Photo(**still, **off, flip=0.0)(x.clamp(-2, 2), g)
    torch.testing.assert_close(same, x.clamp(-2, 2), atol=1e-5, rtol=0)
    flipped = Photo(**still, **off, flip=1.0)(x.clamp(-2, 2), g)
    torch.testing.assert_close(flipped, x.clamp(-2, 2).flip(-1), atol=1e-5, rtol=0)


def test_photo_grayscale_and_crop_scale():
    x = torch.rand(20, 3, 32, 32) * 4 - 2
    grey = Photo(mean=(0.5,), std=(0.25,), grayscale_p=1.0)(x, torch.Generator().manual_seed(0))
    assert torch.allclose(grey[:, 0], grey[:, 1]) and torch.allclose(grey[:, 1], grey[:, 2])
    # a crop of half the area magnifies: a 1-px checkerboard is blurred towards its mean
    board = ((torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2).float() * 2 - 1
    xb = board.expand(10, 3, 32, 32).contiguous()
    crop = Photo(mean=(0.5,), std=(0.25,), scale=(0.5, 0.5), jitter_p=0.0, grayscale_p=0.0)
    assert crop(xb, torch.Generator().manual_seed(0)).abs().mean() < 0.9 * xb.abs().mean()


def test_crop_magnifies_a_square_inside_the_frame():
    """crop side s: the view shows s x the frame's side. A linear ramp (display 0.5 + 0.4 x)
    spans 0.4 x the diameter seen, whatever the rotation: 0.48 over the core (radius 0.6) of
    the whole view, 0.24 with s = 0.5 (the crop stays inside the disk here)."""
    xx = torch.linspace(-1, 1, 32).expand(32, 32)
    x = (0.4 * xx / 0.25).expand(50, 1, 32, 32).masked_fill(~INSIDE, 0.0)
    out = _allsky(**{**STILL, "crop": (0.5, 0.5)})(x, torch.Generator().manual_seed(0))
    assert (out[:, :, ~INSIDE] == 0).all()
    core = torch.from_numpy(fov_mask(32, 32, 0.6).copy())
    v = _display(out[:, 0])[:, core]
    span = v.max(1).values - v.min(1).values
    whole = _display(_allsky(**STILL)(x, torch.Generator().manual_seed(0))[:, 0])[:, core]
    wspan = whole.max(1).values - whole.min(1).values
    assert span.max() < 0.3 and span.min() > 0.18 and wspan.min() > 0.4


def test_glow_adds_a_ramp_of_at_most_the_asked_slope():
    x = torch.full((100, 1, 32, 32), 0.0).masked_fill(~INSIDE, 0.0)  # display 0.5
    out = _allsky(**{**STILL, "glow": 0.2})(x, torch.Generator().manual_seed(0))
    v = _display(out[:, 0])[:, INSIDE]
    assert (v - 0.5).abs().max() <= 0.2 * 1.0 + 1e-5  # |slope * distance| within the disk
    assert abs(float(v.mean()) - 0.5) < 0.01  # symmetric about the zenith on average
    spread = v.max(1).values - v.min(1).values
    assert spread.max() > 0.25 and spread.min() < 0.1  # slopes drawn from [0, 0.2]
