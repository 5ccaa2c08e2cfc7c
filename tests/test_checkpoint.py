"""Checkpoints: round trip, no unpickling, clear errors for truncated/corrupt/mismatched files."""

import json
import os
import pickle

import pytest
import torch

from pipeline.errors import BadInput
from pipeline.model.archs import build_model
from pipeline.model.checkpoint import (
    LIMITS,
    load_checkpoint,
    load_optimizer_state,
    model_id,
    save_checkpoint,
)


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
        "preprocess": {"size": size, "channels": ch},
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
    with pytest.raises(BadInput, match="arch 'resnet' is not one of"):
        load_checkpoint(d)
    cfg = _cfg(arch="alexnet")  # in range, but alexnet needs 63 px or more
    _write(os.path.join(d, "config.json"), json.dumps(cfg))
    with pytest.raises(BadInput, match="buildable.*63 px"):
        load_checkpoint(d)


def test_missing_weights_file(saved):
    d, _ = saved
    os.remove(os.path.join(d, "model.safetensors"))
    with pytest.raises(BadInput, match="model.safetensors"):
        load_checkpoint(d)


def _tamper(d, **changes):
    cp = os.path.join(d, "config.json")
    cfg = json.loads(_read(cp, "r"))
    for k, v in changes.items():
        if k.startswith("pre_"):
            cfg["preprocess"][k[4:]] = v
        else:
            cfg[k] = v
    _write(cp, json.dumps(cfg))


@pytest.mark.parametrize(
    "changes, message",
    [
        # the report of issue 12: both sizes 10^6 agree with each other, but not with any range
        (dict(input_size=10**6, pre_size=10**6), "input_size = 1000000 is outside .*16..1024"),
        (dict(input_size=64), "preprocess gives 3 x 32 x 32 inputs, the model takes 3 x 64"),
        (dict(pre_size=64), "preprocess gives 3 x 64 x 64 inputs, the model takes 3 x 32"),
        (dict(pre_channels=1), "preprocess gives 1 x 32 x 32"),
        (dict(bits=0), "bits = 0 is outside"),
        (dict(bits=5000), "bits = 5000 is outside"),
        (dict(bits="16"), "bits must be an integer"),
        (dict(bits=True), "bits must be an integer"),
        (dict(input_size=32.0), "input_size must be an integer"),
        (dict(in_channels=2), "in_channels must be one of"),
        (dict(classes=["a"]), "classes must be 2..32767 distinct names"),
        (dict(classes=["a", "a", "b"]), "distinct"),
        (dict(classes="abc"), "list of class names"),
        (dict(pre_mean=[float("nan")]), "finite"),
        (dict(pre_white_percentile=150), r"white_percentile must be in \[0, 100\]"),
        (dict(pre_size="big"), "preprocess size"),
        (dict(pre_bogus=1), "unknown preprocess settings: bogus"),
        (dict(preprocess=[1, 2]), "preprocess must be a JSON object"),
        (dict(arch="resnet"), "arch 'resnet' is not one of"),
    ],
)
def test_tampered_config_is_refused_before_the_weights(saved, changes, message):
    d, _ = saved
    _tamper(d, **changes)
    with pytest.raises(BadInput, match=message):
        load_checkpoint(d)


def test_limits_are_the_documented_ones():
    readme = _read(os.path.join(os.path.dirname(__file__), "..", "README.md"), "r")
    for key, (lo, hi) in LIMITS.items():
        assert f"`{key}` {lo}..{hi}" in readme, key


def test_model_id_covers_weights_preprocessing_and_settings(saved, tmp_path):
    d, m = saved
    _, cfg = load_checkpoint(d)
    _, again = load_checkpoint(d)
    mid = cfg["model_id"]
    assert len(mid) == 64 and mid == again["model_id"] == model_id(cfg)
    assert mid != cfg["model_sha256"]  # not the weights alone
    # the same settings spelled differently (defaults filled in, 5 == 5.0): the same id
    spelled = dict(cfg, preprocess={"size": 32, "channels": 3, "background_percentile": 5})
    assert model_id(spelled) == mid
    # anything that changes the codes changes the id
    for change in (
        {"preprocess": {"size": 32, "channels": 3, "stretch": "log"}},
        {"preprocess": {"size": 32, "channels": 3, "mask": False}},
        {"model_options": {"widths": [32, 64, 64]}},
        {"bits": 32},
        {"classes": ["a", "b", "d"]},
    ):
        assert model_id(dict(cfg, **change)) != mid, change
    assert model_id(cfg, "0" * 64) != mid  # other weights
    # and re-saving other weights under the same config gives another id
    torch.manual_seed(1)
    other = build_model("compact", 16, 3)
    d2 = str(tmp_path / "other")
    save_checkpoint(d2, other, _cfg())
    assert load_checkpoint(d2)[1]["model_id"] != mid
