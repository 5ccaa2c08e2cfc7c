"""Parts every architecture shares: spatial pyramid pooling, power mean transformation, hash head.

Spatial pyramid pooling (SPP, He et al., ECCV 2014)
    Max-pools the last conv feature map over a pyramid of grids (adaptive bins, so any input size
    gives the same vector) and concatenates the bins. For the AlexNet rows we use He et al.'s
    classic levels (1, 2, 4): 21 bins x 256 channels = 5,376 features. The 4x4 level keeps coarse
    layout (where on the all-sky disk an arc sits); 1x1 gives a translation-invariant summary that
    suits rotated/shifted auroral forms. The compact net's final map is only 4x4 (at 32 px input),
    so it uses levels (1, 2).

Power mean transformation (PMT, Zhang & Wu, "Improving CNN linear layers with power mean
non-linearity", Pattern Recognition 2019)
    PMT makes a linear (FC) layer non-linear in its inputs at negligible cost. It comes from the
    power mean kernel sum_i M_p(x_i, y_i), M_p(a, b) = ((a^p + b^p) / 2)^(1/p), whose scalable
    (asymmetric) approximation amounts to mapping the layer input through an element-wise power
    before the dot product. We use the signed power form

        f(x) = sign(x) * ((|x| + eps)^p - eps^p),        one learnable p per PMT layer

    with p kept in [0.05, 1] (p = 1 is the identity, p -> 0 tends to a log-like map), initialised
    at 0.5 in the compact net and at 1 in the AlexNet rows (alexnet.py says why: measured, a start
    at 0.5 cost them MAP on synthetic aurora). Why this form: the SPP outputs are max-pooled ReLU
    activations, non-negative and heavy-tailed; a power p < 1 compresses the few large
    activations (the same idea as the square-root normalisation of bilinear / Fisher features) so
    that the FC layers see better-conditioned inputs; learning p lets the data choose how much.
    The sign keeps it odd for inputs that may be negative; eps keeps the gradient finite at 0.
    Learnable p adds one parameter. We did not have the paper's full text here; the form is chosen
    to follow its stated idea (power-mean non-linearity on FC inputs, linear cost) and is the
    documented design decision of this project.

Hash head
    [FC -> ReLU -> dropout]* -> hash FC (bits) -> batch norm (no affine) -> tanh -> classifier FC.
    The hash outputs h in [-1, 1] are the relaxed codes (bit = h > 0); the classifier reads h, so
    the classification loss shapes the codes too (multi-task learning).
    Why the batch norm before tanh (`hash_bn`, on by default): without it the pairwise loss's
    easiest early minimum is h -> 0 for every image (theta_ij = 0 costs log 2 per pair, less than
    random codes do on the 90% dissimilar pairs of a 10-class batch), and weight decay helps it
    there; once collapsed, the classifier gets no signal. Normalising each hash unit over the
    batch (zero mean, unit variance, no learnable scale) rules the collapse out, keeps every
    bit balanced (about half the codes have it set, which spreads codes over the Hamming
    space), and stops tanh from saturating early (|h| stays near tanh(1) ~ 0.76, so gradients
    reach the backbone). The sign, i.e. the code, is unaffected by the fixed scale.
    The peer methods (`pipeline/training/methods/`) use the same head with other options: no class
    head (`classifier="none"`: DPSH, DSH, CIBHash), class units beside the hash units
    (`"features"`: CNNH+), unbounded linear hash outputs (`hash_act="linear"`), bit probabilities
    (`hash_act="sigmoid"`: CIBHash) and no batch norm, as published.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SPP(nn.Module):
    """Spatial pyramid max pooling over `levels` (n means an n x n grid of adaptive bins)."""

    def __init__(self, levels=(1, 2, 4)):
        super().__init__()
        self.levels = tuple(int(v) for v in levels)
        if not self.levels or min(self.levels) < 1:
            raise ValueError(f"bad SPP levels {levels!r}")

    def bins(self) -> int:
        return sum(n * n for n in self.levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [torch.flatten(F.adaptive_max_pool2d(x, n), 1) for n in self.levels], dim=1
        )

    def extra_repr(self) -> str:
        return f"levels={self.levels}"


class PMT(nn.Module):
    """Power mean transformation f(x) = sign(x) ((|x|+eps)^p - eps^p), learnable p in [pmin, 1]."""

    def __init__(self, p: float = 0.5, learnable: bool = True, eps: float = 1e-3, pmin=0.05):
        super().__init__()
        self.eps = float(eps)
        self.pmin = float(pmin)
        t = torch.tensor(float(p))
        if learnable:
            self.p = nn.Parameter(t)
        else:
            self.register_buffer("p", t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p.clamp(self.pmin, 1.0)
        xf = x.float()  # powers in float32 even under bf16 autocast
        y = torch.sign(xf) * ((xf.abs() + self.eps).pow(p) - self.eps**p)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return f"eps={self.eps}, learnable={isinstance(self.p, nn.Parameter)}"


CLASSIFIERS = ("codes", "features", "none")
HASH_ACTS = ("tanh", "linear", "sigmoid")


class HashHead(nn.Module):
    """[FC-ReLU-dropout]* -> hash FC (bits) -> [batch norm] -> tanh | linear -> classifier FC.

    `classifier` says what the class logits read: "codes" (ours: the hash outputs h, multi-task),
    "features" (the hash layer's own input, beside it: CNNH+'s output layer of q + c units) or
    "none" (DPSH, DSH: no class head; forward returns logits None). `hash_act` "linear" leaves
    the hash outputs unbounded (DPSH's and DSH's u = W^T phi(x) + v); "sigmoid" gives
    h = 2 sigmoid(u) - 1 for CIBHash, whose bit probabilities are p = sigmoid(u) = (h + 1) / 2:
    2p is exact in floating point, so h > 0 exactly where p > 0.5. The code is h > 0 for every
    activation.
    """

    def __init__(
        self,
        in_features,
        hidden,
        bits,
        n_classes,
        dropout=0.5,
        hash_bn=True,
        classifier="codes",
        hash_act="tanh",
    ):
        super().__init__()
        if classifier not in CLASSIFIERS:
            raise ValueError(f"classifier must be one of {CLASSIFIERS}, not {classifier!r}")
        if hash_act not in HASH_ACTS:
            raise ValueError(f"hash_act must be one of {HASH_ACTS}, not {hash_act!r}")
        layers = []
        d = in_features
        for w in hidden:
            layers += [nn.Linear(d, w), nn.ReLU(inplace=True)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            d = w
        self.fc = nn.Sequential(*layers)
        self.hash = nn.Linear(d, bits)
        self.hash_norm = nn.BatchNorm1d(bits, affine=False) if hash_bn else nn.Identity()
        self.hash_act = hash_act
        self.reads = classifier
        if classifier != "none":
            self.classifier = nn.Linear(bits if classifier == "codes" else d, n_classes)

    def codes(self, feat: torch.Tensor) -> torch.Tensor:
        """Relaxed codes h (float32) from the hash layer's input."""
        u = self.hash_norm(self.hash(feat).float())
        if self.hash_act == "sigmoid":
            return 2.0 * torch.sigmoid(u) - 1.0
        return torch.tanh(u) if self.hash_act == "tanh" else u

    def forward(self, x: torch.Tensor):
        feat = self.fc(x)
        h = self.codes(feat)
        if self.reads == "none":
            return h, None
        logits = self.classifier(h if self.reads == "codes" else feat)
        return h, logits.float()
