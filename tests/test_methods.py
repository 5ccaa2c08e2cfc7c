"""The published peers as methods (pipeline.training.methods, kernels.cnnh): CNNH's stage 1
against the published dense update, the DPSH and DSH losses against their formulas written out
pair by pair, headless models through the shipped encode path, and training/resume of each
method."""

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from jobs.cli import main
from kernels import pack_codes
from kernels.cnnh import approximate_codes, objective
from pipeline.errors import BadInput
from pipeline.ingest.encode_actor import HashEncoder
from pipeline.model.archs import build_model
from pipeline.model.checkpoint import load_checkpoint, open_checkpoint, save_checkpoint
from pipeline.model.encode import encode_inputs
from pipeline.training.loop import TrainConfig, train_model
from pipeline.training.methods import build_loss, resolve
from pipeline.training.methods.dpsh import DPSHLoss
from pipeline.training.methods.dsh import DSHLoss

torch.set_num_threads(1)

# -- CNNH stage 1 --------------------------------------------------------------------------------


def _similarity(labels):
    lab = np.asarray(labels)
    return np.where(lab[:, None] == lab[None, :], 1.0, -1.0)


def _published_stage_one(labels, q, sweeps, seed):
    """The paper's update on the dense n x n residual L = H H^T - q S, entry by entry (slow)."""
    S = _similarity(labels)
    n = len(S)
    rng = np.random.default_rng(seed)
    H = rng.uniform(-1, 1, (n, q))
    L = H @ H.T - q * S
    for _ in range(sweeps):
        H0, L0 = H.copy(), L.copy()
        for e in rng.permutation(n * q):
            i, j = divmod(int(e), q)
            g1 = 4 * L[i] @ H[:, j]
            g2 = 4 * (H[:, j] @ H[:, j] + H[i, j] ** 2 + L[i, i])
            d = min(max(-g1 / g2, -1 - H[i, j]), 1 - H[i, j])
            col = H[:, j].copy()
            L[i, :] += d * col
            L[:, i] += d * col
            L[i, i] += d * d
            H[i, j] += d
        if (L**2).mean() >= (L0**2).mean():  # a sweep that does not help is undone
            H, L = H0, L0
    return H


def test_stage_one_is_the_published_coordinate_descent():
    y = np.random.default_rng(1).integers(0, 3, 36)
    codes, info = approximate_codes(y, 5, sweeps=3, seed=7)
    H = _published_stage_one(y, 5, 3, 7)
    np.testing.assert_array_equal(codes, np.where(H > 0, 1.0, -1.0))
    S = _similarity(y)
    assert info["objective"][-1] == pytest.approx(((S - H @ H.T / 5) ** 2).mean(), rel=1e-9)


def test_objective_is_the_dense_frobenius_error():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 50)
    H = rng.uniform(-1, 1, (50, 8))
    want = ((_similarity(y) - H @ H.T / 8) ** 2).mean()
    assert objective(H, y) == pytest.approx(want, rel=1e-12)


def test_stage_one_codes_reproduce_s_better_than_random_codes():
    y = np.repeat(np.arange(4), 30)  # separable toy data: four classes, S known exactly
    codes, info = approximate_codes(y, 16, sweeps=10, seed=0)
    rand = np.where(np.random.default_rng(1).random((120, 16)) < 0.5, -1.0, 1.0)
    assert np.all(np.diff(info["objective"]) <= 0)  # a sweep is kept only when it helps
    assert info["objective_codes"] == pytest.approx(objective(codes, y))
    assert objective(codes, y) < 0.5 * objective(rand, y)
    # the codes rank by class: every item's nearest codes are its own class's
    same = (codes @ codes.T)[:, :, None] > (codes @ codes.T)[:, None, :]
    own = y[:, None] == y[None, :]
    assert same[own[:, :, None] & ~own[:, None, :]].all()
    # two classes can be factorised exactly (h and -h)
    two, _ = approximate_codes(np.repeat([0, 1], 20), 8, sweeps=10, seed=0)
    assert objective(two, np.repeat([0, 1], 20)) == 0.0


def test_stage_one_refuses_what_it_cannot_factorise():
    with pytest.raises(ValueError, match="multi-hot"):
        approximate_codes(np.eye(4, dtype=int), 8)
    with pytest.raises(ValueError, match="at least 2"):
        approximate_codes(np.array([1]), 8)
    cfg = TrainConfig(method="cnnh", bits=8).resolved(n_train=4)
    with pytest.raises(BadInput, match="multi-hot"):
        build_loss(cfg, np.eye(4, dtype=int), "cpu")


# -- DPSH and DSH losses ---------------------------------------------------------------------------


def test_dpsh_loss_is_the_papers_objective_over_the_training_set():
    rng = np.random.default_rng(0)
    n, q, eta = 9, 4, 10.0
    train_y = torch.tensor(rng.integers(0, 3, n))
    loss = DPSHLoss(train_y, q, eta)
    with torch.no_grad():
        loss.bank.copy_(torch.tensor(rng.normal(size=(n, q)), dtype=torch.float32))
    idx = torch.tensor([2, 5, 7])
    u = torch.tensor(rng.normal(size=(3, q)) * 2, dtype=torch.float32, requires_grad=True)
    total, parts = loss(u, None, train_y[idx], idx)
    U = loss.bank.numpy().astype(np.float64)
    uu = u.detach().numpy().astype(np.float64)
    assert np.allclose(U[idx.numpy()], uu)  # the batch's rows were written before the loss
    want = 0.0
    for a, i in enumerate(idx.tolist()):
        for j in range(n):
            th = uu[a] @ U[j] / 2
            s = float(train_y[i] == train_y[j])
            want += math.log1p(math.exp(th)) - s * th
        want += eta * ((uu[a] - np.sign(uu[a])) ** 2).sum()
    assert total.item() == pytest.approx(want / (n * 3), rel=1e-5)
    assert set(parts) == {"pair", "quant"}
    assert loss.state_tensors()["bank"] is loss.bank


def test_dsh_loss_is_the_papers_objective_over_the_batch_pairs_per_bit():
    rng = np.random.default_rng(0)
    b, q, alpha = 6, 5, 0.01
    u = rng.normal(size=(b, q)) * 1.5
    y = rng.integers(0, 2, b)
    total, _ = DSHLoss(q, alpha=alpha)(torch.tensor(u), None, torch.tensor(y))
    m, pairs, want = 2 * q, 0, 0.0
    for i in range(b):
        for j in range(i + 1, b):
            d = ((u[i] - u[j]) ** 2).sum()
            dissimilar = float(y[i] != y[j])
            want += 0.5 * (1 - dissimilar) * d + 0.5 * dissimilar * max(m - d, 0.0)
            want += alpha * (np.abs(np.abs(u[i]) - 1).sum() + np.abs(np.abs(u[j]) - 1).sum())
            pairs += 1
    assert total.item() == pytest.approx(want / pairs / q, rel=1e-6)  # per pair and per bit


def test_method_options_defaults_and_errors():
    assert resolve("dpsh", {}, 48) == {"eta": 10.0}
    assert resolve("dsh", {}, 48) == {"alpha": 0.01, "margin": 96.0}
    assert resolve("cnnh", {"sweeps": 3}, 12) == {"sweeps": 3, "labels": True}
    with pytest.raises(BadInput, match="no options"):
        resolve("dsh", {"eta": 1}, 48)
    with pytest.raises(BadInput, match="unknown method"):
        resolve("hashnet", {}, 48)
    with pytest.raises(BadInput, match=">= 0"):
        resolve("dpsh", {"eta": -1}, 48)


# -- models without a class head, through the shipped encode path -------------------------------


def test_headless_model_loads_and_encodes_with_no_prediction(tmp_path):
    torch.manual_seed(0)
    opts = {"classifier": "none", "hash_act": "linear", "hash_bn": False, "widths": [8, 8, 8]}
    model = build_model("compact", 12, 4, 1, 16, **opts)
    assert not model.has_classifier
    assert not any("classifier" in k for k in model.state_dict())
    config = {
        "arch": "compact",
        "bits": 12,
        "classes": ["a", "b", "c", "d"],
        "in_channels": 1,
        "input_size": 16,
        "model_options": opts,
        "preprocess": {"size": 16, "channels": 1},
        "encode": {"views": "mirror"},
    }
    save_checkpoint(str(tmp_path / "m"), model, config)
    loaded, cfg = load_checkpoint(str(tmp_path / "m"))
    x = np.random.default_rng(0).normal(size=(5, 1, 16, 16)).astype(np.float32)
    h, logp = encode_inputs(loaded, x, {"views": "mirror"})
    assert logp is None and h.shape == (5, 12)
    codes, pred, score = HashEncoder(open_checkpoint(str(tmp_path / "m")), device="cpu").encode(x)
    np.testing.assert_array_equal(codes, pack_codes(h))
    assert pred.tolist() == [-1] * 5 and np.isnan(score).all()


# -- training each method --------------------------------------------------------------------------


def _splits(n=64, size=16, n_classes=4):
    rng = np.random.default_rng(0)
    y = np.arange(n) % n_classes
    x = rng.normal(size=(n, 1, size, size)).astype(np.float32) + y[:, None, None, None]
    return {"train": (x, y), "classes": [f"c{i}" for i in range(n_classes)]}


def _cfg(method, epochs=2, **kw):
    return TrainConfig(
        arch="compact",
        bits=8,
        epochs=epochs,
        batch_size=16,
        widths=(8, 8, 8),
        log_every=0,
        method=method,
        amp=False,
        **kw,
    )


def test_dpsh_resume_keeps_its_memory_and_is_exact(tmp_path):
    sp, info = _splits(), {"dataset": "tiny", "seed": 0}
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    _, ca = train_model(sp, _cfg("dpsh"), a, info)
    train_model(sp, _cfg("dpsh"), b, info, stop_after=1)
    bank1 = load_file(f"{b}/optimizer.safetensors")["loss.bank"]
    assert bank1.shape == (64, 8) and bank1.abs().sum() > 0
    _, cb = train_model(sp, _cfg("dpsh"), b, info)
    assert ca["model_sha256"] == cb["model_sha256"]
    assert torch.equal(
        load_file(f"{a}/optimizer.safetensors")["loss.bank"],
        load_file(f"{b}/optimizer.safetensors")["loss.bank"],
    )
    assert cb["method"] == "dpsh" and cb["model_options"]["classifier"] == "none"
    with pytest.raises(BadInput, match="method"):
        train_model(sp, _cfg("ours"), b, info)  # another method in the same folder


def test_cnnh_runs_stage_one_once_and_resumes_from_its_codes(tmp_path, monkeypatch):
    import pipeline.training.methods.cnnh as cnnh

    calls = []
    real = cnnh.stage_one
    monkeypatch.setattr(cnnh, "stage_one", lambda *a, **k: calls.append(1) or real(*a, **k))
    sp, info, out = _splits(), {"dataset": "tiny", "seed": 0}, str(tmp_path / "c")
    cfg = _cfg("cnnh", method_options={"sweeps": 4})
    train_model(sp, cfg, out, info, stop_after=1)
    targets = load_file(f"{out}/optimizer.safetensors")["loss.targets"]
    model, config = train_model(sp, cfg, out, info)
    assert len(calls) == 1 and config["epochs_done"] == 2
    assert config["method_info"]["sweeps_kept"] >= 1
    assert torch.equal(load_file(f"{out}/optimizer.safetensors")["loss.targets"], targets)
    assert set(targets.unique().tolist()) == {-1.0, 1.0}
    h, logits = model(torch.from_numpy(sp["train"][0][:4]).float())
    assert logits.shape == (4, 4) and model.body.head.reads == "features"


def _cli(capsys, argv):
    rc = main(argv)
    return rc, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


TINY = [
    "train", "--dataset", "synthetic-aurora", "--size", "32", "--n-train", "32", "--n-query",
    "8", "--n-database", "32", "--bits", "8", "--batch-size", "16", "--widths", "8,8,8",
    "--epochs", "1",
]  # fmt: skip


def test_cli_trains_a_headless_method_and_refuses_foreign_options(tmp_path, capsys):
    out, reports = str(tmp_path / "d"), str(tmp_path / "reports")
    rc, s = _cli(capsys, [*TINY, "--method", "dsh", "--out", out, "--report", reports])
    assert rc == 0 and s["method"] == "dsh" and 0 <= s["map"] <= 1
    assert "accuracy" not in s  # no class head, no accuracy
    history = load_checkpoint(out)[1]["history"]
    assert history[0]["train_accuracy"] is None and {"pair", "binary"} <= set(history[0])
    with open(s["report"].replace("report.html", "report.json")) as f:
        assert json.load(f)["kind"] == "train"
    rc, s = _cli(capsys, [*TINY, "--method", "dpsh", "--hash-loss", "dsh", "--out", "x"])
    assert rc == 2 and "--hash-loss is an option of --method ours" in s["error"]
    rc, s = _cli(capsys, [*TINY, "--dsh-alpha", "0.1", "--out", "x"])
    assert rc == 2 and "--method dsh" in s["error"]


def test_classifier_method_is_the_plain_classifier_ceiling(tmp_path):
    """`classifier`: logits read the features (no bottleneck), cross-entropy of logits / 9
    (airbench's head) is the whole loss, and the hash layer gets no gradient."""
    cfg = _cfg("classifier").resolved(64)
    assert cfg.model_options["classifier"] == "features"
    loss = build_loss(cfg, _splits()["train"][1], "cpu")
    h = torch.randn(16, 8, requires_grad=True)
    logits = torch.randn(16, 4, requires_grad=True)
    y = torch.arange(16) % 4
    total, parts = loss(h, logits, y)
    assert set(parts) == {"ce"}
    want = torch.nn.functional.cross_entropy(logits / 9, y, label_smoothing=cfg.label_smoothing)
    assert total.item() == pytest.approx(want.item(), rel=1e-6)
    total.backward()
    assert h.grad is None
    model, saved = train_model(_splits(), _cfg("classifier", epochs=1), str(tmp_path / "c"), {})
    assert saved["method"] == "classifier" and saved["history"][0]["train_accuracy"] is not None
    assert model.body.head.classifier.in_features != 8  # the features, not the 8 code units
