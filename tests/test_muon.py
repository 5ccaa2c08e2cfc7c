"""The `muon` recipe: the Newton-Schulz step, Muon's update, SGD groups equal to torch's, and a
run that resumes exactly."""

import numpy as np
import pytest
import torch

from pipeline.model.checkpoint import load_checkpoint
from pipeline.training.datasets import load_splits
from pipeline.training.loop import TrainConfig, _param_groups, lr_factor, train_model
from pipeline.training.muon import Muon, newton_schulz


@pytest.mark.parametrize("shape", [(16, 72), (72, 16), (8, 8)])
def test_newton_schulz_keeps_singular_vectors_and_flattens_values(shape):
    gen = torch.Generator().manual_seed(0)
    k = min(shape)
    u, _ = torch.linalg.qr(torch.randn(shape[0], k, generator=gen))
    v, _ = torch.linalg.qr(torch.randn(shape[1], k, generator=gen))
    s = torch.linspace(1.0, 10.0, k)  # singular values spread over a factor 10
    g = u @ torch.diag(s) @ v.T
    x = newton_schulz(g)
    assert x.shape == g.shape
    core = u.T @ x @ v  # diagonal exactly when x has g's singular vectors
    off = core - torch.diag(torch.diagonal(core))
    assert off.abs().max() < 1e-4
    d = torch.diagonal(core)
    assert d.min() > 0.3 and d.max() < 1.6  # pushed towards 1 ...
    assert float(d.max() / d.min()) < 3  # ... from a spread of 10
    assert newton_schulz(3.7 * g).sub(x).abs().max() < 1e-4  # the scale of g does not matter


def _params(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(4, 3, 3, 3, generator=gen)),
            torch.nn.Parameter(torch.randn(5, generator=gen))]  # fmt: skip


def test_sgd_groups_follow_torch_sgd_exactly():
    ours, ref = _params(), _params()
    opt = Muon([dict(params=ours, lr=0.1, weight_decay=0.01)], momentum=0.85)
    sgd = torch.optim.SGD(ref, lr=0.1, weight_decay=0.01, momentum=0.85, nesterov=True)
    gen = torch.Generator().manual_seed(1)
    for _ in range(4):
        grads = [torch.randn(p.shape, generator=gen) for p in ours]
        for p, q, g in zip(ours, ref, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        sgd.step()
    for p, q in zip(ours, ref, strict=True):
        assert torch.equal(p, q)


def test_muon_group_normalises_the_filter_and_steps_by_the_orthogonalised_update():
    (w,) = _params()[:1]
    w0 = w.detach().clone()
    g = torch.randn(w.shape, generator=torch.Generator().manual_seed(2))
    w.grad = g.clone()
    opt = Muon([dict(params=[w], lr=0.24, momentum=0.6, muon=True)], momentum=0.85)
    opt.step()
    # first step: buffer = g, Nesterov update = g + 0.6 g; weight rescaled to norm sqrt(4) = 2
    expect = w0 * (2.0 / w0.norm()) - 0.24 * newton_schulz((1.6 * g).reshape(4, -1)).view(g.shape)
    assert torch.allclose(w.detach(), expect, atol=1e-6)
    assert torch.equal(opt.state[w]["momentum_buffer"], g)


def test_muon_recipe_groups_and_schedule():
    cfg = TrainConfig(arch="compact", bits=12, recipe="muon", widths=(8, 16, 16)).resolved(50000)
    assert cfg.batch_size == 2000
    from pipeline.model.archs import build_model

    model = build_model("compact", 12, 4, 1, 32, **cfg.model_options)
    groups = {g["name"]: g for g in _param_groups(model, cfg)}
    filters = groups["filters"]
    assert filters["muon"] and filters["lr"] == pytest.approx(0.24)
    assert all(p.dim() == 4 for p in filters["params"]) and len(filters["params"]) == 6
    named = {id(p): n for n, p in model.named_parameters()}
    assert not any("whiten" in named[id(p)] for p in filters["params"])
    rest = [p for n in ("other", "bn_bias", "head") for p in groups[n]["params"]]
    assert [named[id(p)] for p in rest if p.dim() == 4] == ["body.whiten.weight"]  # frozen
    assert [lr_factor(s, 100, "muon") for s in (0, 50, 100)] == [1.0, 0.5, 0.0]
    half = TrainConfig(arch="compact", bits=12, recipe="muon", widths=(8, 16, 16), lr=5.75)
    halved = {g["name"]: g["lr"] for g in _param_groups(model, half.resolved(50000))}
    for name, lr in halved.items():  # --lr scales every group, the filters' Muon rate too
        assert lr == pytest.approx(groups[name]["lr"] / 2)
    small = TrainConfig(arch="compact", recipe="muon").resolved(2000)
    assert small.batch_size == 64  # small sets keep ~24+ steps an epoch, as airbench does


def test_muon_run_learns_and_resumes_exactly(tmp_path):
    sp = load_splits("synthetic-aurora", None, "synthetic", 0, None, None,
                     size=32, n_train=48, n_query=8, n_database=48)  # fmt: skip
    kw = dict(arch="compact", bits=12, batch_size=16, widths=(8, 16, 16), log_every=0,
              recipe="muon", amp=False)  # fmt: skip
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    _, ca = train_model(sp, TrainConfig(epochs=2, **kw), a, sp["info"])
    assert all(np.isfinite(h["loss"]) for h in ca["history"])
    train_model(sp, TrainConfig(epochs=2, **kw), b, sp["info"], stop_after=1)
    torch.manual_seed(1)  # the global RNG state must not matter
    _, cb = train_model(sp, TrainConfig(epochs=2, **kw), b, sp["info"])
    assert cb["epochs_done"] == 2 and cb["history"] == [
        {**h, "seconds": hb["seconds"]} for h, hb in zip(ca["history"], cb["history"], strict=True)
    ]
    (ma, _), (mb, _) = load_checkpoint(a), load_checkpoint(b)
    for (k, va), (_, vb) in zip(ma.state_dict().items(), mb.state_dict().items(), strict=True):
        assert torch.allclose(va.float(), vb.float(), atol=1e-5), k
