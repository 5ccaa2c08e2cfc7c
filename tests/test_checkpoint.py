"""Checkpoints: round trip, no unpickling, clear errors for truncated/corrupt/mismatched files."""

import json
import os
import pickle

import pytest
import torch

from pipeline.checkpoint import load_checkpoint, load_optimizer_state, save_checkpoint
from pipeline.errors import BadInput
from pipeline.model import build_model


def _read(p, mode="rb"):
    with open(p, mode) as f:
        return f.read()


def _write(p, data):
    with open(p, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def _cfg(arch="compact", bits=16, classes=("a", "b", "c"), size=32, ch=3):
    return {
        "arch": arch,
        "bits": bits,
        "classes": list(classes),
        "in_channels": ch,
        "input_size": size,
        "model_options": {},
        "preprocess": {"size": size},
        "data": {"dataset": "test", "seed": 0},
    }


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    m = build_model("compact", 16, 3)
    m.set_normalization([0.1, 0.2, 0.3], [1.0, 2.0, 3.0])
    d = str(tmp_path / "ckpt")
    opt = {"state.0.momentum_buffer": torch.ones(3)}
    save_checkpoint(d, m, _cfg(), opt, {"step": 7})
    return d, m


def test_round_trip(saved):
    d, m = saved
    assert sorted(os.listdir(d)) == ["config.json", "model.safetensors", "optimizer.safetensors"]
    m2, cfg = load_checkpoint(d)
    assert cfg["arch"] == "compact" and cfg["bits"] == 16 and len(cfg["model_sha256"]) == 64
    assert not m2.training
    x = torch.rand(2, 3, 32, 32)
    m.eval()
    with torch.no_grad():
        a, b = m(x), m2(x)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    tensors, meta = load_optimizer_state(d, cfg)
    assert meta == {"step": 7} and torch.equal(tensors["state.0.momentum_buffer"], torch.ones(3))


def test_loading_never_unpickles(saved, monkeypatch):
    d, _ = saved

    def boom(*a, **k):
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(torch, "load", boom)
    load_checkpoint(d)


def test_truncated_weights(saved):
    d, _ = saved
    p = os.path.join(d, "model.safetensors")
    data = _read(p)
    _write(p, data[: len(data) // 2])
    with pytest.raises(BadInput, match="model.safetensors"):
        load_checkpoint(d)


def test_garbage_and_pickle_files_refused(saved):
    d, m = saved
    p = os.path.join(d, "model.safetensors")
    with open(p, "wb") as f:
        pickle.dump(m.state_dict(), f)
    with pytest.raises(BadInput, match="model.safetensors"):
        load_checkpoint(d)


def test_modified_weights_hash_mismatch(saved):
    d, _ = saved
    p = os.path.join(d, "model.safetensors")
    data = bytearray(_read(p))
    data[-1] ^= 0xFF
    _write(p, bytes(data))
    with pytest.raises(BadInput, match="sha256"):
        load_checkpoint(d)


def test_config_model_mismatch(saved):
    d, _ = saved
    cp = os.path.join(d, "config.json")
    cfg = json.loads(_read(cp, "r"))
    cfg["bits"] = 32  # the weights hold a 16-bit hash layer
    _write(cp, json.dumps(cfg))
    with pytest.raises(BadInput, match="does not match.*model.safetensors|model.safetensors"):
        load_checkpoint(d)


def test_missing_and_bad_config(tmp_path, saved):
    with pytest.raises(BadInput, match="config.json"):
        load_checkpoint(str(tmp_path / "nothing"))
    d, _ = saved
    _write(os.path.join(d, "config.json"), "{not json")
    with pytest.raises(BadInput, match="config.json"):
        load_checkpoint(d)
    _write(os.path.join(d, "config.json"), json.dumps({"arch": "compact"}))
    with pytest.raises(BadInput, match="lacks"):
        load_checkpoint(d)
    cfg = _cfg(arch="resnet")
    _write(os.path.join(d, "config.json"), json.dumps(cfg))
    with pytest.raises(BadInput, match="buildable"):
        load_checkpoint(d)


def test_missing_weights_file(saved):
    d, _ = saved
    os.remove(os.path.join(d, "model.safetensors"))
    with pytest.raises(BadInput, match="model.safetensors"):
        load_checkpoint(d)
