"""Architectures: forward shapes and ranges, SPP on any input size, PMT, parameter ratio."""

import pytest
import torch

from pipeline.model.archs import ARCHS, PMT, SPP, build_model, count_params, params_mb


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_shapes_and_range(arch):
    torch.manual_seed(0)
    size = 32 if arch == "compact" else 67
    m = build_model(arch, 12, 4, in_channels=1, input_size=size).eval()
    x = torch.randn(3, 1, size, size) * 5
    with torch.no_grad():
        h, logits = m(x)
    assert h.shape == (3, 12) and logits.shape == (3, 4)
    assert h.dtype == torch.float32
    assert float(h.abs().max()) <= 1.0
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", ["alexnet-sp", "im-alexnet-sp", "compact"])
def test_spp_archs_take_any_input_size(arch):
    m = build_model(arch, 8, 3, in_channels=3, input_size=64).eval()
    with torch.no_grad():
        for s in (64, 80, 97):
            h, logits = m(torch.rand(1, 3, s, s))
            assert h.shape == (1, 8) and logits.shape == (1, 3)


def test_spp_output_length():
    spp = SPP((1, 2, 4))
    assert spp.bins() == 21
    for s in (5, 13, 31):
        assert spp(torch.rand(2, 7, s, s)).shape == (2, 7 * 21)
    # level 1 is the global max
    x = torch.rand(1, 2, 6, 6)
    assert torch.equal(SPP((1,))(x), x.amax(dim=(2, 3)))


def test_pmt_form():
    pmt = PMT(p=0.5, learnable=False, eps=0.0)
    x = torch.tensor([-4.0, -1.0, 0.0, 1.0, 9.0])
    assert torch.allclose(pmt(x), torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0]))
    learn = PMT(p=0.5)
    assert isinstance(learn.p, torch.nn.Parameter)
    y = learn(torch.rand(4, 3) + 0.1)
    y.sum().backward()
    assert learn.p.grad is not None and torch.isfinite(learn.p.grad)
    # p is clamped to [pmin, 1]: p = 3 acts as the identity
    big = PMT(p=3.0, learnable=False, eps=0.0)
    assert torch.allclose(big(x), x)


def test_pmt_starts_as_identity_in_alexnet_rows_and_compresses_in_compact():
    im = build_model("im-alexnet-sp", 12, 4, 1, 64)
    assert im.body.pmt.p.item() == 1.0
    x = torch.randn(3, 50) * 5
    assert torch.allclose(im.body.pmt(x), x, atol=1e-5)  # p = 1: exactly the identity (eps cancels)
    assert build_model("im-alexnet-sp", 12, 4, 1, 64, pmt_p=0.5).body.pmt.p.item() == 0.5
    assert build_model("compact", 12, 4, 1, 32).body.pmt.p.item() == 0.5


def test_param_ratio_at_48_bits():
    a = build_model("alexnet", 48, 4, in_channels=3, input_size=224)
    im = build_model("im-alexnet-sp", 48, 4, in_channels=3, input_size=224)
    sp = build_model("alexnet-sp", 48, 4, in_channels=3, input_size=224)
    assert abs(params_mb(a) - 218.20) < 0.5  # the paper's 218.20 MB
    ratio = count_params(im) / count_params(a)
    assert 0.42 < ratio < 0.50  # the paper: 100.77 / 218.20 = 0.462
    assert count_params(im) < count_params(sp) < count_params(a)


def test_ablation_switches_change_the_head():
    full = build_model("im-alexnet-sp", 16, 4, in_channels=1, input_size=64)
    off = build_model("im-alexnet-sp", 16, 4, in_channels=1, input_size=64, spp=False, pmt=False)
    assert isinstance(full.body.pool, SPP) and isinstance(full.body.pmt, PMT)
    assert not isinstance(off.body.pool, SPP) and not isinstance(off.body.pmt, PMT)
    c = build_model("compact", 16, 4, spp=False, pmt=False)
    assert c.body.spp.levels == (1,) and not isinstance(c.body.pmt, PMT)
    with torch.no_grad():
        h, _ = off.eval()(torch.rand(2, 1, 64, 64))
    assert h.shape == (2, 16)


def test_bad_arguments():
    with pytest.raises(ValueError):
        build_model("vgg", 16, 4)
    with pytest.raises(ValueError):
        build_model("compact", 0, 4)
    with pytest.raises(ValueError):
        build_model("alexnet", 16, 4, input_size=32)


def test_compact_whitening_init_and_norm():
    torch.manual_seed(0)
    m = build_model("compact", 16, 10)
    x = torch.rand(64, 3, 32, 32)
    m.set_normalization([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
    m.init_from_data(x)
    w = m.body.whiten.weight
    assert w.shape == (24, 3, 2, 2) and not w.requires_grad
    # the two halves are negatives of each other; whitened patches have ~unit variance
    assert torch.allclose(w[:12], -w[12:])
    with torch.no_grad():
        out = m.body.whiten(m.norm(x))[:, :12]
    var = out.var(dim=(0, 2, 3))
    assert float(var.max()) < 1.5 and float(var[:3].min()) > 0.5
