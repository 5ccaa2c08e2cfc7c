"""Losses against hand-computed values; ablation switch; similarity of multi-hot labels."""

import math

import pytest
import torch

from pipeline.training.losses import (
    HashingLoss,
    LossConfig,
    dpsh_pair_loss,
    dsh_pair_loss,
    quantization_loss,
    similarity,
)


def test_similarity_class_ids_and_multihot():
    s = similarity(torch.tensor([0, 1, 0]))
    assert s.tolist() == [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
    m = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 1]])
    assert similarity(m).tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 1]]


def test_dpsh_hand_computed():
    h = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    y = torch.tensor([0, 0, 1])
    # pairs (0,1): theta 0, s 1 -> log 2; (0,2): theta -1, s 0 -> log(1+e^-1);
    # (1,2): theta 0, s 0 -> log 2
    want = (math.log(2) + math.log1p(math.exp(-1)) + math.log(2)) / 3
    assert dpsh_pair_loss(h, similarity(y)).item() == pytest.approx(want, rel=1e-6)


def test_dsh_hand_computed():
    h = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    y = torch.tensor([0, 0, 1])
    # ||h0-h1||^2 = 4 (similar: 2); ||h0-h2||^2 = 8 (dissimilar, m=4: 0);
    # ||h1-h2||^2 = 4 (dissimilar: 0.5 * max(4 - 4, 0) = 0)
    assert dsh_pair_loss(h, similarity(y)).item() == pytest.approx(2 / 3)
    assert dsh_pair_loss(h, similarity(y), margin=6).item() == pytest.approx((2 + 0 + 1) / 3)


def test_quantization_hand_computed():
    h = torch.tensor([[0.5, -1.0], [0.0, 0.9]])
    # (0.5-1)^2 + 0 + (0-0)^2 + (0.9-1)^2 = 0.25 + 0.01, mean over 4
    assert quantization_loss(h).item() == pytest.approx(0.26 / 4)


def test_multitask_total_and_ablation():
    torch.manual_seed(0)
    h = torch.tanh(torch.randn(6, 8, requires_grad=True))
    logits = torch.randn(6, 3)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    cfg = LossConfig(pair_weight=0.5, quant_weight=2.0)
    total, parts = HashingLoss(cfg)(h, logits, y)
    want = parts["ce"] + 0.5 * parts["pair"] + 2.0 * parts["quant"]
    assert total.item() == pytest.approx(want.item())
    assert parts["ce"].item() == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item())
    total.backward()
    off, parts_off = HashingLoss(LossConfig(hash_loss="none"))(h.detach(), logits, y)
    assert set(parts_off) == {"ce"} and off.item() == pytest.approx(parts["ce"].item())
    dsh, p = HashingLoss(LossConfig(hash_loss="dsh"))(h.detach(), logits, y)
    assert "pair" in p
    with pytest.raises(ValueError):
        LossConfig(hash_loss="cosine")


def test_pair_loss_pulls_similar_codes_together():
    torch.manual_seed(0)
    u = torch.randn(8, 16, requires_grad=True)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    opt = torch.optim.SGD([u], lr=1.0)
    for _ in range(200):
        loss = dpsh_pair_loss(torch.tanh(u), similarity(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    b = torch.sign(u.detach())
    same = (b[0] != b[1]).sum().item()
    diff = (b[0] != b[2]).sum().item()
    assert same < diff
