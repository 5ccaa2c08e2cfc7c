"""CIBHash (pipeline.training.methods.cibhash): the loss against a slow written-out reference
(NT-Xent over the 2N views, the views' bit KL), the straight-through Bernoulli codes and their
gradient, labels never read; the two-view loop resumes exactly and leaves the other methods'
batches alone; a model trained without labels saves `classes: []` and opens with a stable id."""

import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_methods import _cfg as _method_cfg

from kernels import pack_codes
from pipeline.errors import BadInput
from pipeline.ingest.encode_actor import HashEncoder
from pipeline.model.archs import build_model
from pipeline.model.checkpoint import model_id, open_checkpoint, validate_config
from pipeline.model.layers import HashHead
from pipeline.training.loop import train_model
from pipeline.training.methods import build_loss, needs_labels, resolve
from pipeline.training.methods.cibhash import CIBHashLoss, nt_xent, straight_through_bernoulli

torch.set_num_threads(1)

# -- the loss against the paper's formulas, written out -----------------------------------------


def _nt_xent_reference(z1, z2, tau):
    """-1/2N sum_i log( e^{s(i, pos(i))/tau} / sum_{j != i} e^{s(i, j)/tau} ), cosine s, slow."""
    z = np.concatenate([z1, z2]).astype(np.float64)
    n2, n = len(z), len(z1)
    total = 0.0
    for i in range(n2):
        pos = i + n if i < n else i - n
        sims = {}
        for j in range(n2):
            if j != i:
                sims[j] = z[i] @ z[j] / (np.linalg.norm(z[i]) * np.linalg.norm(z[j])) / tau
        total += -(sims[pos] - math.log(sum(math.exp(v) for v in sims.values())))
    return total / n2


def _kl_reference(p, q):
    """Mean over rows of sum over bits of KL(Bernoulli(p) || Bernoulli(q)), eps as published."""
    e = 1e-8
    out = 0.0
    for pr, qr in zip(p.astype(np.float64), q.astype(np.float64), strict=True):
        for a, b in zip(pr, qr, strict=True):
            out += a * (math.log(a + e) - math.log(b + e))
            out += (1 - a) * (math.log(1 - a + e) - math.log(1 - b + e))
    return out / len(p)


def test_nt_xent_is_simclrs_loss_over_the_two_views():
    rng = np.random.default_rng(0)
    z1, z2 = rng.choice([-1.0, 1.0], (5, 12)), rng.choice([-1.0, 1.0], (5, 12))
    got = nt_xent(torch.tensor(z1), torch.tensor(z2), 0.3).item()
    assert got == pytest.approx(_nt_xent_reference(z1, z2, 0.3), rel=1e-6)
    zr = rng.normal(size=(4, 7))  # any vectors: cosine similarity, not the dot product
    got = nt_xent(torch.tensor(zr), torch.tensor(2.0 * zr + 0.1), 0.5).item()
    assert got == pytest.approx(_nt_xent_reference(zr, 2.0 * zr + 0.1, 0.5), rel=1e-6)


def test_cibhash_loss_is_nt_xent_of_sampled_codes_plus_beta_kl():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.02, 0.98, (8, 16)).astype(np.float32)  # 4 images, 2 views each
    h = torch.tensor(2 * p - 1, requires_grad=True)
    torch.manual_seed(7)
    total, parts = CIBHashLoss(tau=0.3, beta=0.25, sample=True)(h, None, None, None)
    torch.manual_seed(7)
    u = torch.rand(8, 16).numpy()  # the draws the loss made
    z = np.where(u < ((h.detach().numpy() + 1) * 0.5), 1.0, -1.0)
    want_c = _nt_xent_reference(z[:4], z[4:], 0.3)
    pp = (h.detach().numpy().astype(np.float64) + 1) * 0.5
    want_kl = 0.5 * (_kl_reference(pp[:4], pp[4:]) + _kl_reference(pp[4:], pp[:4]))
    assert parts["contrast"].item() == pytest.approx(want_c, rel=1e-5)
    assert parts["kl"].item() == pytest.approx(want_kl, rel=1e-5)
    assert total.item() == pytest.approx(want_c + 0.25 * want_kl, rel=1e-5)


def test_the_default_contrasts_the_relaxed_codes_without_drawing():
    """sample=False (the default, benchmarks/RESULTS.md "Label-free on synthetic aurora"):
    NT-Xent of h = 2p - 1 itself, so the loss is deterministic and draws nothing."""
    rng = np.random.default_rng(4)
    p = rng.uniform(0.02, 0.98, (8, 16)).astype(np.float32)
    h = torch.tensor(2 * p - 1)
    torch.manual_seed(0)
    total, parts = CIBHashLoss(tau=0.3, beta=0.25)(h)
    assert torch.equal(torch.rand(1), torch.manual_seed(0) and torch.rand(1))  # no draw made
    hh = h.numpy().astype(np.float64)
    assert parts["contrast"].item() == pytest.approx(
        _nt_xent_reference(hh[:4], hh[4:], 0.3), rel=1e-5
    )
    pp = (hh + 1) * 0.5
    want_kl = 0.5 * (_kl_reference(pp[:4], pp[4:]) + _kl_reference(pp[4:], pp[:4]))
    assert total.item() == pytest.approx(parts["contrast"].item() + 0.25 * want_kl, rel=1e-5)


def test_straight_through_gradient_is_the_codes_gradient():
    """d loss / d h = 1/2 (d NT-Xent / d z at the sampled z) + beta d KL / d h: the sign's
    gradient is taken as the identity with respect to p = (h + 1) / 2."""
    rng = np.random.default_rng(2)
    h = torch.tensor(rng.uniform(-0.9, 0.9, (6, 10)).astype(np.float32), requires_grad=True)
    torch.manual_seed(3)
    CIBHashLoss(tau=0.3, beta=0.5, sample=True)(h)[0].backward()
    torch.manual_seed(3)
    p = ((h.detach() + 1) * 0.5).requires_grad_(True)
    z = torch.where(torch.rand(6, 10) < p.detach(), 1.0, -1.0).requires_grad_(True)
    nt_xent(z[:3], z[3:], 0.3).backward()
    kl = CIBHashLoss(tau=0.3, beta=0.5)
    from pipeline.training.methods.cibhash import bit_kl

    (0.5 * (bit_kl(p[:3], p[3:].detach()) + bit_kl(p[3:], p[:3].detach()))).backward()
    want = 0.5 * (z.grad + kl.beta * p.grad)
    torch.testing.assert_close(h.grad, want, rtol=1e-5, atol=1e-7)


def test_codes_are_bernoulli_of_the_bit_probabilities():
    torch.manual_seed(0)
    p = torch.tensor([0.0, 1.0, 0.8, 0.3]).repeat(20000, 1)
    z = straight_through_bernoulli(p)
    assert set(z.unique().tolist()) == {-1.0, 1.0}
    ones = (z > 0).float().mean(0)
    assert ones[0] == 0 and ones[1] == 1
    assert ones[2].item() == pytest.approx(0.8, abs=0.01)
    assert ones[3].item() == pytest.approx(0.3, abs=0.01)


def test_the_loss_never_reads_labels():
    h = torch.rand(8, 6) * 2 - 1
    results = []
    for labels in (None, torch.arange(4), torch.full((4,), -1), torch.zeros(4, 3)):
        torch.manual_seed(1)
        results.append(CIBHashLoss()(h, None, labels, torch.arange(4))[0])
    assert all(torch.equal(r, results[0]) for r in results)
    assert CIBHashLoss.views == 2 and not needs_labels("cibhash") and needs_labels("dpsh")


def test_sigmoid_head_bit_is_exactly_probability_over_one_half():
    head = HashHead(4, [], 3, 0, dropout=0, hash_bn=False, classifier="none", hash_act="sigmoid")
    with torch.no_grad():
        head.hash.weight.copy_(torch.eye(3, 4))
        head.hash.bias.zero_()
    u = torch.tensor([[1e-9, -1e-9, 0.0], [3e-8, 40.0, -40.0], [0.3, -0.3, 1e-7]])
    h, logits = head(torch.cat([u, torch.zeros(3, 1)], 1))
    assert logits is None and (h.abs() <= 1).all()
    np.testing.assert_array_equal((h > 0).numpy(), (torch.sigmoid(u) > 0.5).numpy())


def test_options_defaults_and_refusals():
    assert resolve("cibhash", {}, 32) == {"tau": 0.3, "beta": 0.001, "sample": False}
    assert resolve("cibhash", {"sample": 1}, 32)["sample"] is True
    with pytest.raises(BadInput, match="tau must be > 0"):
        resolve("cibhash", {"tau": 0}, 32)
    with pytest.raises(BadInput, match="no options"):
        resolve("cibhash", {"eta": 1}, 32)


# -- the two-view loop ---------------------------------------------------------------------------

PRE = {"size": 16, "channels": 1, "mean": [0.5], "std": [0.25], "mask": True}


def _splits(n=64, labelled=True):
    rng = np.random.default_rng(0)
    y = np.arange(n) % 4
    x = (rng.normal(size=(n, 1, 16, 16)) + y[:, None, None, None]).astype(np.float32)
    if not labelled:
        return {"train": (x, np.full(n, -1)), "classes": [], "preprocess": PRE}
    return {"train": (x, y), "classes": [f"c{i}" for i in range(4)], "preprocess": PRE}


def _cfg(method="cibhash", epochs=3, **kw):
    return _method_cfg(method, epochs, **kw)  # tests/test_methods.py: compact 8x8x8, 8 bits


def test_two_view_training_resumes_exactly(tmp_path):
    sp, info = _splits(), {"dataset": "tiny", "seed": 0}
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    torch.manual_seed(0)
    _, ca = train_model(sp, _cfg(epochs=4), a, info)  # the EMA starts at epoch 3
    train_model(sp, _cfg(epochs=4), b, info, stop_after=3)
    torch.manual_seed(5)  # the global RNG (Bernoulli draws, dropout) is seeded per epoch
    _, cb = train_model(sp, _cfg(epochs=4), b, info)
    assert ca["model_sha256"] == cb["model_sha256"]
    oa, ob = load_file(f"{a}/optimizer.safetensors"), load_file(f"{b}/optimizer.safetensors")
    assert sorted(oa) == sorted(ob) and all(torch.equal(oa[k], ob[k]) for k in oa)
    assert ca["augment"]["policy"] == "allsky" and ca["augment"]["mask"] is True
    assert ca["model_options"]["hash_act"] == "sigmoid" and ca["history"][0]["images"] == 64
    assert {"contrast", "kl"} <= set(ca["history"][-1]) and ca["history"][-1][
        "train_accuracy"
    ] is None


def test_two_views_differ_and_one_view_methods_keep_their_batches(tmp_path, monkeypatch):
    from pipeline.training import loop

    seen, real = [], loop._step

    def step(st, data, cfg, xb, yb, ib):
        seen.append(xb)
        return real(st, data, cfg, xb, yb, ib)

    monkeypatch.setattr(loop, "_step", step)
    train_model(_splits(), _cfg(epochs=1), str(tmp_path / "c"), {"dataset": "t"})
    assert seen[0].shape == (32, 1, 16, 16)  # 16 images x 2 views, view by view
    assert not torch.equal(seen[0][:16], seen[0][16:])
    seen.clear()
    _, cfg = train_model(_splits(), _cfg("dsh", epochs=1), str(tmp_path / "d"), {"dataset": "t"})
    assert seen[0].shape == (16, 1, 16, 16)
    assert cfg["augment"] == {"policy": "shift-flip", "translate": 2, "flip": "alternating"}


def test_photo_views_for_unmasked_inputs(tmp_path):
    sp = _splits()
    sp["preprocess"] = {**PRE, "mask": False}
    _, cfg = train_model(sp, _cfg(epochs=1), str(tmp_path / "m"), {"dataset": "t"})
    assert cfg["augment"]["policy"] == "photo"
    _, cfg = train_model(
        sp, _cfg(epochs=1, augment="allsky"), str(tmp_path / "n"), {"dataset": "t"}
    )
    assert cfg["augment"]["policy"] == "allsky" and cfg["train"]["augment"] == "allsky"
    _, cfg = train_model(
        _splits(), _cfg("dsh", epochs=1, augment="allsky"), str(tmp_path / "o"), {}
    )
    assert cfg["augment"]["policy"] == "allsky"  # a one-view method may ask for it too
    with pytest.raises(BadInput, match="--augment"):
        _cfg(augment="cutout")


# -- no labels at all: classes [] ---------------------------------------------------------------


def test_a_model_trained_without_labels_has_no_classes_and_a_stable_id(tmp_path):
    out = str(tmp_path / "m")
    model, cfg = train_model(_splits(labelled=False), _cfg(epochs=1), out, {"dataset": "t"})
    assert cfg["classes"] == [] and not model.has_classifier
    a, b = open_checkpoint(out), open_checkpoint(out)
    assert a.id == b.id == model_id(a.config) and a.classes == []
    x = _splits()["train"][0][:5]
    codes, pred, score = HashEncoder(a, device="cpu").encode(x)
    h, _ = a.build_model()(torch.from_numpy(x))
    np.testing.assert_array_equal(codes, pack_codes(h.detach().numpy()))
    assert pred.tolist() == [-1] * 5 and np.isnan(score).all()
    # [] names no classes only for a model without a class head
    bad = {**cfg, "model_options": {**cfg["model_options"], "classifier": "codes"}}
    with pytest.raises(BadInput, match=r"or \[\] for a model without a class head"):
        validate_config(bad)
    with pytest.raises(ValueError, match="at least two classes"):
        build_model("compact", 8, 0, 1, 16, widths=[8, 8, 8])


def test_supervised_methods_refuse_images_without_labels():
    for method in ("ours", "dpsh", "dsh", "cnnh"):
        cfg = _cfg(method).resolved(64)
        with pytest.raises(BadInput, match=f"--method {method} learns from labels, and 64 of 64"):
            build_loss(cfg, np.full(64, -1), "cpu")
    assert isinstance(build_loss(_cfg().resolved(64), np.full(64, -1), "cpu"), CIBHashLoss)


# -- the train job --------------------------------------------------------------------------------

TINY = [
    "train", "--dataset", "synthetic-aurora", "--size", "32", "--n-train", "48", "--n-query",
    "8", "--n-database", "48", "--bits", "8", "--batch-size", "16", "--widths", "8,8,8",
    "--epochs", "1", "--threads", "1",
]  # fmt: skip


def _cli(capsys, argv):
    import json

    from jobs.cli import main

    rc = main(argv)
    return rc, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_cli_trains_cibhash_with_the_labels_hidden_and_scores_them(tmp_path, capsys):
    from pipeline.model.checkpoint import read_config

    out = str(tmp_path / "cib")
    rc, s = _cli(capsys, [*TINY, "--method", "cibhash", "--cibhash-tau", "0.5", "--out", out])
    assert rc == 0 and s["method"] == "cibhash" and 0 <= s["map"] <= 1, s
    assert "accuracy" not in s and "evaluation" not in s  # labelled queries: MAP, no classes
    cfg = read_config(out)
    assert cfg["train"]["method_options"] == {"tau": 0.5, "beta": 0.001, "sample": False}
    assert cfg["augment"]["policy"] == "allsky" and len(cfg["classes"]) == 4
    rc, s = _cli(capsys, [*TINY, "--method", "dsh", "--cibhash-beta", "0.1", "--out", "x"])
    assert rc == 2 and "--cibhash-beta is an option of --method cibhash" in s["error"]
