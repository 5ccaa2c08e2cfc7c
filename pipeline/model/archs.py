"""Deep hashing models: the AlexNet rows of the paper and a compact CPU variant.

    from pipeline.model.archs import build_model
    model = build_model(arch, bits, n_classes, in_channels, input_size)
    h, logits = model(x)        # x: preprocessed images (n, in_channels, size, size), float
                                # h (n, bits), in [-1, 1] unless hash_act="linear";
                                # codes = kernels.pack_codes(h); logits None when the model
                                # has no class head (classifier="none": DPSH, DSH)

Every model starts with an `InputNorm` (per-channel mean/std, buffers saved with the weights), so
it takes the output of the shared preprocessing directly; `set_normalization` fills it from the
training data.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.choices import ARCHS
from pipeline.model.alexnet import AlexNetHash
from pipeline.model.compact import CompactHashNet
from pipeline.model.layers import PMT, SPP, HashHead

__all__ = [
    "ARCHS",
    "PMT",
    "SPP",
    "HashHead",
    "HashNet",
    "build_model",
    "params_mb",
    "count_params",
]


class InputNorm(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(1, channels, 1, 1))
        self.register_buffer("std", torch.ones(1, channels, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class HashNet(nn.Module):
    """InputNorm + an architecture body; forward(x) -> (h, logits or None)."""

    def __init__(self, arch: str, body: nn.Module, in_channels: int):
        super().__init__()
        self.arch = arch
        self.norm = InputNorm(in_channels)
        self.body = body

    @torch.no_grad()
    def set_normalization(self, mean, std) -> None:
        self.norm.mean.copy_(torch.as_tensor(mean, dtype=torch.float32).view_as(self.norm.mean))
        self.norm.std.copy_(torch.as_tensor(std, dtype=torch.float32).view_as(self.norm.std))

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        """Data-dependent initialisation (the compact net's whitening conv)."""
        if hasattr(self.body, "init_whitening"):
            self.body.init_whitening(self.norm(x.float()))

    @property
    def has_classifier(self) -> bool:
        return self.body.head.reads != "none"

    def forward(self, x):
        return self.body(self.norm(x))


def build_model(
    arch: str,
    bits: int,
    n_classes: int,
    in_channels: int = 3,
    input_size: int = 32,
    **options,
) -> HashNet:
    """Build `arch` (one of ARCHS). Options: spp, pmt (ablations), widths (compact), dropout,
    and the head's (layers.HashHead): classifier (codes | features | none), hash_act, hash_bn."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {ARCHS}")
    if not 1 <= int(bits) <= 4096:
        raise ValueError(f"bits must be in 1..4096, not {bits}")
    if n_classes < 2 and not (n_classes == 0 and options.get("classifier") == "none"):
        raise ValueError("need at least two classes (or none, for a head without a classifier)")
    opts = {k: v for k, v in options.items() if v is not None}
    if arch == "compact":
        if "widths" in opts:
            opts["widths"] = tuple(int(w) for w in opts["widths"])
        body = CompactHashNet(bits, n_classes, in_channels, **opts)
    else:
        if input_size < 63:
            raise ValueError(f"{arch} needs inputs of at least 63 px, not {input_size}")
        body = AlexNetHash(arch, bits, n_classes, in_channels, **opts)
    return HashNet(arch, body, in_channels)


def count_params(model: nn.Module) -> int:
    """Learnable-or-frozen parameters (not buffers such as batch-norm statistics)."""
    return sum(p.numel() for p in model.parameters())


def params_mb(model: nn.Module) -> float:
    """Parameter size in MB as the paper counts it: float32 bytes / 2**20."""
    return count_params(model) * 4 / 2**20
