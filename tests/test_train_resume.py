"""Exact resume: a run stopped after the airbench EMA has started and then resumed ends with the
same bits as one that never stopped (weights, optimiser state and EMA)."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pipeline.errors import BadInput
from pipeline.model.archs import build_model
from pipeline.model.checkpoint import load_checkpoint, read_config
from pipeline.training.loop import TrainConfig, _restore_ema, train_model


def _splits(n=64, size=16, n_classes=4):
    """Tiny synthetic arrays: each class a different brightness, plus noise."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % n_classes
    x = rng.normal(size=(n, 1, size, size)).astype(np.float32) + y[:, None, None, None]
    return {"train": (x, y), "classes": [f"c{i}" for i in range(n_classes)]}


def _cfg():
    # 64 images / batch 16: 4 steps an epoch, the EMA steps at 15 (epoch 4) and 20 (epoch 5)
    return TrainConfig(
        arch="compact", bits=8, epochs=5, batch_size=16, widths=(8, 8, 8), log_every=0,
        recipe="airbench",  # the one recipe with an EMA
    )  # fmt: skip


def _tensors(d):
    return load_file(f"{d}/model.safetensors"), load_file(f"{d}/optimizer.safetensors")


def _assert_same(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_after_the_ema_started_is_exact(tmp_path):
    splits, info = _splits(), {"dataset": "tiny", "seed": 0}
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    torch.manual_seed(0)
    _, ca = train_model(splits, _cfg(), a, info)
    torch.manual_seed(0)
    _, cb = train_model(splits, _cfg(), b, info, stop_after=4)
    assert cb["epochs_done"] == 4
    weights, state = _tensors(b)  # the EMA is training state, not part of the weights
    assert sorted(weights) == sorted(load_checkpoint(b)[0].state_dict())
    assert {k.removeprefix("ema.") for k in state if k.startswith("ema.")} == {
        k for k, v in weights.items() if v.dtype.is_floating_point
    }
    torch.manual_seed(1)  # the global RNG state must not matter
    _, cb = train_model(splits, _cfg(), b, info)
    assert ca["epochs_done"] == cb["epochs_done"] == 5
    (wa, oa), (wb, ob) = _tensors(a), _tensors(b)
    _assert_same(wa, wb)
    _assert_same(oa, ob)
    assert ca["model_sha256"] == cb["model_sha256"]


def test_encode_settings_round_trip(tmp_path):
    enc = {"views": "mirror+shift", "precision": "bf16"}
    out = str(tmp_path / "m")
    _, cfg = train_model(
        _splits(), _cfg(), out, {"dataset": "tiny"}, stop_after=1, encode_settings=enc
    )
    assert cfg["encode"] == enc and read_config(out)["encode"] == enc
    with pytest.raises(BadInput, match="encode"):  # settings the encoder does not know
        train_model(_splits(), _cfg(), str(tmp_path / "m2"), {}, stop_after=1,
                    encode_settings={"views": "sideways"})  # fmt: skip


def test_an_ema_that_does_not_fit_the_model_is_refused():
    model = build_model("compact", 8, 4, 1, 16, widths=[8, 8, 8])
    assert _restore_ema(model, {"state.0.momentum_buffer": torch.zeros(1)}) is None
    with pytest.raises(BadInput, match="EMA"):
        _restore_ema(model, {"ema.norm.mean": torch.zeros(1, 1, 1, 1)})
