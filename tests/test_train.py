"""Training: a tiny run end to end, resume, the train/evaluate CLI, datasets and protocols."""

import json
import os

import numpy as np
import pytest
import torch

from jobs.cli import main
from pipeline.errors import BadInput
from pipeline.model.checkpoint import load_checkpoint
from pipeline.model.preprocess import inputs_of
from pipeline.training.datasets import load_splits
from pipeline.training.loop import TrainConfig, lr_factor, train_model

SYN = dict(size=32, n_train=48, n_query=8, n_database=48)


@pytest.fixture(scope="module")
def syn_splits():
    return load_splits("synthetic-aurora", None, "synthetic", 0, None, None, **SYN)


def _tiny_cfg(**kw):
    base = dict(arch="compact", bits=12, epochs=2, batch_size=16, widths=(8, 16, 16), log_every=0)
    base.update(kw)
    return TrainConfig(**base)


def test_synthetic_splits(syn_splits):
    s = syn_splits
    assert s["train"][0].shape == (48, 1, 32, 32) and s["train"][0].dtype == np.float32
    assert s["query"][0].shape == (8, 1, 32, 32) and len(s["db"][1]) == 48
    assert s["classes"] == ["arc", "drapery_corona", "radial_corona", "hot_spot"]
    assert s["preprocess"]["size"] == 32 and s["info"]["protocol"] == "synthetic"


def test_train_resume_and_checkpoint(tmp_path, syn_splits):
    out = str(tmp_path / "run")
    torch.manual_seed(0)
    m1, cfg1 = train_model(syn_splits, _tiny_cfg(epochs=1), out, syn_splits["info"])
    assert cfg1["epochs_done"] == 1
    assert os.path.exists(os.path.join(out, "optimizer.safetensors"))
    # re-running with more epochs resumes after epoch 1
    m2, cfg2 = train_model(syn_splits, _tiny_cfg(epochs=2), out, syn_splits["info"])
    assert cfg2["epochs_done"] == 2 and cfg2["train_seconds"] >= cfg1["train_seconds"]
    # per-epoch loss and accuracy: epoch 1's record kept across the resume, epoch 2's added
    h1, h2 = cfg1["history"], cfg2["history"]
    assert [h["epoch"] for h in h1] == [1] and [h["epoch"] for h in h2] == [1, 2]
    assert h2[0] == h1[0] and h2[1]["images"] == 48
    assert all(np.isfinite(h[k]) for h in h2 for k in ("loss", "ce", "pair", "quant"))
    assert all(0 <= h["train_accuracy"] <= 1 for h in h2)
    # the same command again is a no-op on the weights
    m3, cfg3 = train_model(syn_splits, _tiny_cfg(epochs=2), out, syn_splits["info"])
    assert cfg3["model_sha256"] == cfg2["model_sha256"]
    # a different run in the same directory is refused
    with pytest.raises(BadInput, match="bits"):
        train_model(syn_splits, _tiny_cfg(bits=16), out, syn_splits["info"])


def test_checkpoint_every_saves_fewer_epochs_and_always_the_last(tmp_path, syn_splits, monkeypatch):
    import pipeline.training.loop as train_mod

    saved = []
    real = train_mod.save_checkpoint
    monkeypatch.setattr(
        train_mod,
        "save_checkpoint",
        lambda *a, **k: saved.append(a[4]["epochs_done"]) or real(*a, **k),
    )
    out = str(tmp_path / "run")
    _, cfg = train_model(
        syn_splits, _tiny_cfg(epochs=5, checkpoint_every=2), out, syn_splits["info"]
    )
    assert saved == [2, 4, 5] and cfg["epochs_done"] == 5
    with pytest.raises(BadInput, match="checkpoint-every"):
        train_model(
            syn_splits, _tiny_cfg(checkpoint_every=0), str(tmp_path / "x"), syn_splits["info"]
        )


def test_resume_matches_uninterrupted(tmp_path, syn_splits):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    torch.manual_seed(0)
    _, ca = train_model(syn_splits, _tiny_cfg(epochs=2, amp=False), a, syn_splits["info"])
    torch.manual_seed(0)
    train_model(syn_splits, _tiny_cfg(epochs=2, amp=False), b, syn_splits["info"], stop_after=1)
    assert load_checkpoint(b)[1]["epochs_done"] == 1
    torch.manual_seed(1)  # the global RNG state must not matter
    _, cb = train_model(syn_splits, _tiny_cfg(epochs=2, amp=False), b, syn_splits["info"])
    assert cb["epochs_done"] == 2
    ma, _ = load_checkpoint(a)
    mb, _ = load_checkpoint(b)
    for (k, va), (_, vb) in zip(ma.state_dict().items(), mb.state_dict().items(), strict=True):
        assert torch.allclose(va.float(), vb.float(), atol=1e-5), k


def test_lr_schedules():
    assert lr_factor(0, 100, "airbench") == pytest.approx(0.2)
    assert lr_factor(23, 100, "airbench") == pytest.approx(1.0)
    assert lr_factor(100, 100, "airbench") == pytest.approx(0.07)
    assert lr_factor(0, 100, "sgd") == 0.0 and lr_factor(100, 100, "sgd") == 0.0


def test_airbench_batch_size_follows_the_training_set():
    # 1024 suits 50,000 images; 2,000 synthetic frames would get one step per epoch and no learning
    air = TrainConfig(arch="compact", recipe="airbench")
    assert air.resolved(n_train=50000).batch_size == 1024
    assert air.resolved(n_train=5000).batch_size == 128
    assert air.resolved(n_train=2000).batch_size == 64
    assert air.resolved(n_train=10).batch_size == 64
    assert TrainConfig(arch="compact", batch_size=512).resolved(n_train=2000).batch_size == 512
    # the default recipe is muon: batch 2000 on CIFAR-10's 50,000, the same small-set floor
    assert TrainConfig(arch="compact").resolved(n_train=50000).recipe == "muon"
    assert TrainConfig(arch="compact").resolved(n_train=50000).batch_size == 2000
    assert TrainConfig(arch="compact").resolved(n_train=2000).batch_size == 64
    assert TrainConfig(arch="alexnet", recipe="sgd").resolved(n_train=2000).batch_size == 128
    with pytest.raises(BadInput, match="--pmt-p"):
        TrainConfig(pmt_p=1.5).resolved()  # the library checks it too, not only the CLI


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(bits=0), "--bits must be in 1..4096"),
        (dict(bits=5000), "--bits must be in 1..4096"),
        (dict(epochs=0), "--epochs must be positive"),
        (dict(batch_size=1), "--batch-size must be at least 2"),
        (dict(threads=0), "--threads must be at least 1"),
        (dict(translate=-1), "--translate must be at least 0"),
        (dict(dropout=1.0), r"--dropout must be in \[0, 1\)"),
        (dict(recipe="adam"), "unknown recipe 'adam'"),
    ],
)
def test_train_config_refuses_bad_values_when_made(changes, message):
    with pytest.raises(BadInput, match=message):
        TrainConfig(**changes)


def test_resolving_leaves_the_config_as_given():
    import dataclasses

    cfg = TrainConfig(arch="compact", pmt_p=0.5)
    done = cfg.resolved(n_train=2000)
    assert cfg.batch_size is None and cfg.recipe is None and cfg.model_options == {}
    assert done.batch_size == 64 and done.recipe == "muon" and done.model_options["pmt_p"] == 0.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.bits = 0


def test_photo_fast_path_equals_shared_preprocessing():
    from pipeline.model.preprocess import PreprocessConfig, preprocess_batch

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    cfg = PreprocessConfig.photo(32, 3)
    want = preprocess_batch(list(imgs), cfg)
    got = inputs_of(torch.from_numpy(imgs.transpose(0, 3, 1, 2).copy()), cfg.to_dict()).numpy()
    assert np.allclose(got, want, atol=1e-5)


def test_cifar10_protocols():
    from pipeline.training.datasets.cifar10 import cifar10_protocol

    y_train = np.repeat(np.arange(10), 600)
    y_test = np.repeat(np.arange(10), 120)
    d = {
        "train_x": np.zeros((6000, 2, 2, 3), np.uint8),
        "train_y": y_train,
        "test_x": np.ones((1200, 2, 2, 3), np.uint8),
        "test_y": y_test,
    }
    p1 = cifar10_protocol(d, "cifar10-1", seed=1)
    assert len(p1["query"][1]) == 1000 and len(p1["train"][1]) == 5000
    assert len(p1["db"][1]) == 7200 - 1000
    assert np.all(np.bincount(p1["query"][1]) == 100)
    assert np.all(np.bincount(p1["train"][1]) == 500)
    again = cifar10_protocol(d, "cifar10-1", seed=1)
    assert np.array_equal(again["query"][1], p1["query"][1])
    p2 = cifar10_protocol(d, "cifar10-2", limit=100)
    assert len(p2["query"][1]) == 1200 and len(p2["db"][1]) == 6000 and len(p2["train"][1]) == 100
    with pytest.raises(BadInput):
        cifar10_protocol(d, "cifar10-3")


def _cli(capsys, argv):
    rc = main(argv)
    out = capsys.readouterr().out.strip().splitlines()
    return rc, json.loads(out[-1])


TINY = [
    "--dataset", "synthetic-aurora", "--size", "32", "--n-train", "48", "--n-query", "8",
    "--n-database", "48", "--bits", "12", "--batch-size", "16", "--widths", "8,16,16",
]  # fmt: skip


def test_cli_train_and_evaluate(tmp_path, capsys):
    out, reports = str(tmp_path / "m"), str(tmp_path / "reports")
    rc, s = _cli(
        capsys, ["train", *TINY, "--epochs", "1", "--out", out, "--topk", "10", "--report", reports]
    )
    assert rc == 0 and s["ok"] and s["epochs_done"] == 1
    for k in ("map", "map_tie_aware", "accuracy", "params_mb", "train_seconds", "map@10"):
        assert k in s, k
    assert 0 <= s["map"] <= 1 and s["params_mb"] > 0
    png = str(tmp_path / "pr.png")
    rc, e = _cli(
        capsys,
        ["evaluate", "--model", out, "--dataset", "synthetic-aurora", "--n-query", "8",
         "--n-database", "48", "--n-train", "48", "--topk", "5", "--plot", png],
    )  # fmt: skip
    assert rc == 0 and e["ok"]
    assert e["map"] == pytest.approx(s["map"]) and e["accuracy"] == pytest.approx(s["accuracy"])
    assert len(e["pr_curve"]["recall"]) == 13 and "5" in e["precision_at_k"]
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # --report: the same numbers and the epoch history in report.json, the figures beside it
    with open(s["report"].replace("report.html", "report.json")) as f:
        doc = json.load(f)
    assert doc["kind"] == "train" and doc["metrics"]["map"] == pytest.approx(s["map"])
    assert [h["epoch"] for h in doc["history"]] == [1]
    assert doc["figures"] == ["precision_at_k.png", "training_history.png", "pr_curves.png"]
    assert all(
        os.path.exists(os.path.join(os.path.dirname(s["report"]), f)) for f in doc["figures"]
    )
    ev = ["evaluate", "--model", out, "--dataset", "synthetic-aurora", "--n-query", "8"]
    rc, e = _cli(capsys, [*ev, "--n-database", "48", "--n-train", "48", "--report", reports])
    assert rc == 0 and os.path.dirname(e["report"]) != os.path.dirname(s["report"])
    with open(e["report"].replace("report.html", "report.json")) as f:
        doc = json.load(f)
    assert doc["kind"] == "evaluate" and doc["metrics"]["map"] == pytest.approx(s["map"])
    assert len(doc["history"]) == 1  # the checkpoint's own record of its training
    rc, bad = _cli(capsys, ["train", *TINY, "--out", out, "--no-eval", "--report", reports])
    assert rc == 2 and "--no-eval" in bad["error"]


def test_cli_bad_input_exits_2(tmp_path, capsys):
    rc, s = _cli(capsys, ["evaluate", "--model", str(tmp_path / "none"), "--dataset", "cifar10"])
    assert rc == 2 and not s["ok"]
    rc, s = _cli(capsys, ["train", "--dataset", "cifar10", "--out", str(tmp_path / "x")])
    assert rc == 2 and "--data" in s["error"]
    rc, s = _cli(capsys, ["train", *TINY, "--protocol", "cifar10-1", "--out", str(tmp_path / "y")])
    assert rc == 2 and "protocol" in s["error"]
    rc, s = _cli(capsys, ["train", *TINY, "--pmt-p", "1.5", "--out", str(tmp_path / "z")])
    assert rc == 2 and "--pmt-p" in s["error"]


def _write_png(path, arr):
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(arr).save(path)


def test_folder_and_parquet_datasets(tmp_path, capsys):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "folder"
    rows = []
    for c, name in enumerate(["cats", "dogs", "owls"]):
        for i in range(8):
            arr = (rng.random((20, 20, 3)) * 60 + 60 * c).astype(np.uint8)
            _write_png(str(root / name / f"{i}.png"), arr)
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="PNG")
            rows.append({"image": buf.getvalue(), "label": c, "label_name": name})
    s = load_splits("folder", str(root), None, 0, None, None, size=16, n_query=4)
    assert s["classes"] == ["cats", "dogs", "owls"]
    assert s["query"][0].shape == (4, 3, 16, 16) and len(s["db"][1]) == 20
    table = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pylist(rows), str(table))
    p = load_splits("parquet", str(table), "holdout", 0, 10, None, size=16)
    assert p["classes"] == ["cats", "dogs", "owls"] and len(p["train"][1]) == 10
    out = str(tmp_path / "fm")
    rc, r = _cli(
        capsys,
        ["train", "--dataset", "folder", "--data", str(root), "--size", "16", "--bits", "8",
         "--epochs", "1", "--batch-size", "8", "--widths", "8,8,8", "--out", out],
    )  # fmt: skip
    assert rc == 0 and r["ok"] and r["dataset"] == "folder"
    with pytest.raises(BadInput):
        load_splits("folder", str(root / "cats"), None, 0)
