"""`compact`: a small, fast conv net for 32x32 inputs and CPU budgets, with the paper's head.

Backbone: the design of Keller Jordan's airbench (CIFAR-10 speed-runs), re-implemented here:
a 2x2 "whitening" conv whose weights are set from the training images' patch covariance
(eigenvectors / sqrt(eigenvalues), and their negatives) and frozen, GELU, then three conv groups
(3x3 conv -> 2x2 max-pool -> batch norm -> GELU -> 3x3 conv -> batch norm -> GELU). Batch norms
learn only a bias; convs start as identity (dirac) on their first channels, an implicit residual.
Default widths (64, 128, 128) are airbench's 93% configuration, about a quarter of the FLOPs of
its 94% one, which is what fits one-hour 2-core-CPU training.

Head (the same as the AlexNet rows): SPP over the last map (levels (1, 2): a 32 px input ends as
3x3, so a 4x4 level would only repeat pixels) -> PMT -> hash FC (bits, tanh) -> classifier FC.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.model.layers import PMT, SPP, HashHead


class _BN(nn.BatchNorm2d):
    """Batch norm with a learnable bias only (fixed unit scale), airbench-style."""

    def __init__(self, n, momentum=0.4, eps=1e-12):
        super().__init__(n, eps=eps, momentum=momentum)
        self.weight.requires_grad_(False)


def _conv(cin, cout, k=3, padding="same", bias=False):
    c = nn.Conv2d(cin, cout, k, padding=padding, bias=bias)
    with torch.no_grad():
        w = c.weight
        nn.init.dirac_(w[: min(cin, cout)])
        if bias:
            c.bias.zero_()
    return c


class ConvGroup(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = _conv(cin, cout)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = _BN(cout)
        self.conv2 = _conv(cout, cout)
        self.norm2 = _BN(cout)
        self.act = nn.GELU()

    def forward(self, x):
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


class CompactHashNet(nn.Module):
    """Whitening conv + conv groups + SPP/PMT/hash/classifier head; forward -> (h, logits)."""

    def __init__(
        self,
        bits: int,
        n_classes: int,
        in_channels: int = 3,
        widths=(64, 128, 128),
        spp_levels=(1, 2),
        pmt: bool = True,
        spp: bool = True,
        hidden=(),
        dropout: float = 0.0,
        whiten_kernel: int = 2,
        hash_bn: bool = True,
        pmt_p: float = 0.5,
        classifier: str = "codes",
        hash_act: str = "tanh",
    ):
        super().__init__()
        wk = whiten_kernel
        self.whiten = nn.Conv2d(in_channels, 2 * in_channels * wk * wk, wk, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        with torch.no_grad():
            self.whiten.bias.zero_()
        groups = []
        c = self.whiten.out_channels
        for w in widths:
            groups.append(ConvGroup(c, w))
            c = w
        self.features = nn.Sequential(nn.GELU(), *groups)
        # Without SPP (ablation) the map is globally max-pooled: one level, 1x1.
        self.spp = SPP(spp_levels if spp else (1,))
        self.pmt = PMT(p=pmt_p) if pmt else nn.Identity()
        self.head = HashHead(
            c * self.spp.bins(), hidden, bits, n_classes, dropout, hash_bn, classifier, hash_act
        )

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the frozen whitening conv from (n, c, h, w) normalised training images."""
        k = self.whiten.kernel_size
        c = images.shape[1]
        patches = images.float().unfold(2, k[0], 1).unfold(3, k[1], 1)  # n c H W kh kw
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k[0] * k[1])
        cov = patches.T @ patches / len(patches)
        evals, evecs = torch.linalg.eigh(cov)
        evals, evecs = evals.flip(0), evecs.flip(1)
        filt = (evecs.T / torch.sqrt(evals + eps)[:, None]).reshape(-1, c, *k)
        self.whiten.weight.copy_(torch.cat([filt, -filt]))

    def forward(self, x):
        x = self.features(self.whiten(x))
        return self.head(self.pmt(self.spp(x)))
