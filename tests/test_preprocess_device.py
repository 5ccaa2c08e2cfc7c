"""The torch preprocessing core: today's numbers on the CPU, bit for bit; the same within float
tolerance on a GPU; NumPy's percentiles exactly; chunking changes nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from preprocess_reference import reference_batch

from pipeline.model import preprocess as pp
from pipeline.model.preprocess import PreprocessConfig, preprocess_batch, preprocess_frames
from pipeline.synth import generate

CONFIGS = {
    "aurora-64": PreprocessConfig(),
    "aurora-224": PreprocessConfig(size=224),
    "log-40": PreprocessConfig(stretch="log", size=40),
    "linear-nomask": PreprocessConfig(stretch="linear", mask=False),
    "fixed-levels": PreprocessConfig(background=100.0, white=None),
    "fixed-white": PreprocessConfig(background=None, white=30000),
    "three-channels": PreprocessConfig(channels=3, size=48),
    "photo-rgb": PreprocessConfig.photo(32, 3),
    "photo-grey": PreprocessConfig.photo(32, 1),
    "odd-percentiles": PreprocessConfig(background_percentile=0, white_percentile=37.3),
    "median-max": PreprocessConfig(background_percentile=50, white_percentile=100),
}


@pytest.fixture(scope="module")
def frames():
    """A mixed batch: THEMIS-like uint16, big-endian, colour, RGBA, floats, tiny frames."""
    rng = np.random.default_rng(0)
    aurora = list(generate(6, size=256, seed=3)[0])
    return (
        aurora
        + [aurora[0].astype(">u2")]
        + [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8) for _ in range(2)]
        + [rng.integers(0, 256, (33, 33, 4), dtype=np.uint8)]
        + [rng.random((70, 90)).astype(np.float32), rng.random((70, 90))]
        + [rng.integers(0, 65535, (3, 3), dtype=np.uint16)]
        + [rng.integers(0, 65535, (1, 5), dtype=np.uint16)]
    )


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_cpu_path_gives_todays_numbers_bit_for_bit(frames, name):
    """The former NumPy implementation (tests/preprocess_reference.py) is the oracle: any
    difference at all would change stored codes."""
    cfg = CONFIGS[name]
    expected = reference_batch(frames, cfg)
    got = preprocess_batch(frames, cfg)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("m", [1, 2, 3, 10, 999, 11_600])
def test_percentiles_are_numpys_exactly(m):
    rng = np.random.default_rng(m)
    for values in (rng.integers(0, 50, (4, m)), rng.normal(1e4, 3e3, (4, m))):
        flat = values.astype(np.float32)
        for q in (0, 0.1, 5, 37.3, 50, 99.5, 100):
            expected = np.percentile(flat, [q], axis=1).astype(np.float32)[0]
            np.testing.assert_array_equal(
                pp._percentile(torch.from_numpy(flat), q).numpy(), expected
            )
    with pytest.raises(ValueError):
        pp._percentile(torch.zeros(2, 3), 101)


def test_chunks_and_groups_change_nothing(frames, monkeypatch):
    cfg = PreprocessConfig(size=32)
    whole = preprocess_batch(frames, cfg)
    monkeypatch.setattr(pp, "CHUNK_BYTES", 3 * 256 * 256 * 4)  # 3 THEMIS frames a chunk
    np.testing.assert_array_equal(preprocess_batch(frames, cfg), whole)
    backwards = preprocess_batch(frames[::-1], cfg)
    np.testing.assert_array_equal(backwards[::-1], whole)


def test_raw_uint16_frames_preprocess_as_they_are_read(frames):
    """`preprocess_tensor` takes the reader's uint16 frames (no float copy on the host)."""
    raw = torch.from_numpy(np.stack(frames[:6]))
    assert raw.dtype == torch.uint16
    cfg = PreprocessConfig(size=32)
    np.testing.assert_array_equal(
        pp.preprocess_tensor(raw, cfg).numpy(), reference_batch(frames[:6], cfg)
    )


def test_unsigned_frames_widen_exactly_where_a_device_cannot_cast_them():
    """The fallback of `_as_nchw` for builds without uint16/uint32 casts on a device."""
    for dtype, top in ((np.uint16, 65535), (np.uint32, 2**32 - 1)):
        a = np.array([[0, 1, top // 2, top - 1, top]], dtype=dtype)
        wide = pp._widened(torch.from_numpy(a))
        assert wide.dtype in (torch.int32, torch.int64)
        np.testing.assert_array_equal(wide.numpy(), a.astype(np.int64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_gpu_path_matches_the_cpu_within_float_tolerance(frames, name):
    cfg = CONFIGS[name]
    cpu = preprocess_batch(frames, cfg)
    gpu = preprocess_frames(frames, cfg, "cuda")
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float32
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu, rtol=1e-5, atol=2e-5)
