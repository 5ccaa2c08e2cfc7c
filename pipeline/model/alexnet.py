"""The paper's three rows: `alexnet`, `alexnet-sp` and `im-alexnet-sp` (trained from scratch here).

Conv trunk: AlexNet's five conv layers in the one-GPU (torchvision) widths 64-192-384-256-256,
11x11/4, 5x5, 3x3, 3x3, 3x3, with 3x3/2 max-pools after conv1, conv2 and conv5. Each conv is
followed by batch norm (an addition to AlexNet, ~2k parameters: the paper fine-tuned ImageNet
weights, we train from scratch on a CPU budget, and batch norm is what makes that converge in a
few epochs; `batchnorm=False` gives the plain trunk).

- `alexnet`: conv5 -> 3x3/2 max-pool -> adaptive average pool to 6x6 (identity at 224 px, so the
  FC sizes are AlexNet's at any input size) -> FC6 9216->4096 -> FC7 4096->4096 -> hash (bits,
  tanh) -> classifier. At 48 bits: 57.2 M parameters = 218.3 MiB of float32, the paper's
  218.20 MB.
- `alexnet-sp`: the last max-pool replaced by SPP with levels (1, 2, 4) (21 bins x 256 = 5,376
  features), then the same FCs (4096, 4096).
- `im-alexnet-sp`: SPP (1, 2, 4) -> PMT -> slimmer FCs (3072, 2304) -> hash -> classifier:
  26.2 M parameters at 48 bits, 0.458 of `alexnet` (the paper: 100.77 / 218.20 = 0.462).

PMT's exponent starts at p = 1 (the identity) here and is learned: measured on synthetic aurora
(96 px, 1,000 training frames, 10 epochs, 12 bits, benchmarks/RESULTS.md "Synthetic aurora at
96 px on the CPU"), a fixed start at
p = 0.5 cost 0.07-0.12 MAP (0.55-0.60 against 0.67), p = 0.75 cost 0.07, and with its own
learning rate p climbed from 0.5 to the clamp at 1, i.e. the data asked for no compression of
the max-pooled SPP bins. `pmt_p=0.5` restores the compressing start (the compact net keeps it:
on CIFAR-10 it learns p ~ 0.14).

`spp=False` / `pmt=False` switch the parts off for the ablation of Table 2 (without SPP the
last max-pool and the 6x6 pooling of `alexnet` come back; the FC sizes stay those of the row).
"""

from __future__ import annotations

from torch import nn

from pipeline.model.layers import PMT, SPP, HashHead

CONV_WIDTHS = (64, 192, 384, 256, 256)
FC = {"alexnet": (4096, 4096), "alexnet-sp": (4096, 4096), "im-alexnet-sp": (3072, 2304)}
SPP_LEVELS = (1, 2, 4)


def _trunk(in_channels: int, batchnorm: bool) -> nn.Sequential:
    w = CONV_WIDTHS
    specs = [  # (cin, cout, kernel, stride, padding, pool after)
        (in_channels, w[0], 11, 4, 2, True),
        (w[0], w[1], 5, 1, 2, True),
        (w[1], w[2], 3, 1, 1, False),
        (w[2], w[3], 3, 1, 1, False),
        (w[3], w[4], 3, 1, 1, False),  # the last pool is the head's business
    ]
    layers = []
    for cin, cout, k, s, p, pool in specs:
        layers.append(nn.Conv2d(cin, cout, k, stride=s, padding=p, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU(inplace=True))
        if pool:
            layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))
    return nn.Sequential(*layers)


class AlexNetHash(nn.Module):
    """AlexNet trunk + (max-pool | SPP) [+ PMT] + FCs + hash + classifier -> (h, logits)."""

    def __init__(
        self,
        arch: str,
        bits: int,
        n_classes: int,
        in_channels: int = 3,
        spp: bool | None = None,
        pmt: bool | None = None,
        batchnorm: bool = True,
        dropout: float = 0.5,
        hash_bn: bool = True,
        pmt_p: float = 1.0,
        classifier: str = "codes",
        hash_act: str = "tanh",
    ):
        super().__init__()
        if arch not in FC:
            raise ValueError(f"unknown AlexNet row {arch!r}")
        self.arch = arch
        use_spp = (arch != "alexnet") if spp is None else bool(spp)
        use_pmt = (arch == "im-alexnet-sp") if pmt is None else bool(pmt)
        self.features = _trunk(in_channels, batchnorm)
        c = CONV_WIDTHS[-1]
        if use_spp:
            self.pool = SPP(SPP_LEVELS)
            d = c * self.pool.bins()
        else:
            self.pool = nn.Sequential(
                nn.MaxPool2d(3, 2, ceil_mode=True), nn.AdaptiveAvgPool2d(6), nn.Flatten(1)
            )
            d = c * 36
        self.pmt = PMT(p=pmt_p) if use_pmt else nn.Identity()
        self.head = HashHead(d, FC[arch], bits, n_classes, dropout, hash_bn, classifier, hash_act)

    def forward(self, x):
        return self.head(self.pmt(self.pool(self.features(x))))
