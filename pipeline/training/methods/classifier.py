"""`classifier`: the backbone as a plain classifier, to measure the supervised ceiling.

Why a method: issue 18 asks how much accuracy the hash head, its bottleneck and its losses cost.
The same loop, recipe and budget with the logits reading the features (no bottleneck) and
cross-entropy as the whole loss is that ceiling. With `--spp false --pmt false --head-lr-scale
1` it is airbench's own network and head (a global max-pool, one linear layer). Its hash layer
is never trained, so its codes are a random projection of the features: a measuring method,
not one to index with.
"""

from __future__ import annotations

from dataclasses import replace

from pipeline.training.losses import HashingLoss

HEAD = {"classifier": "features"}


class PlainClassifierLoss(HashingLoss):
    """Cross-entropy of logits / 9, as airbench's plain head (a linear layer whose output it
    multiplies by 1/9) trains; nothing on the codes. The checkpoint's logits are 9x airbench's:
    the same argmax (pred, accuracy), an uncalibrated score."""

    SCALE = 1.0 / 9.0

    def __init__(self, cfg):
        super().__init__(replace(cfg, hash_loss="none", ce_weight=1.0))

    def forward(self, h, logits, labels, idx=None):
        return super().forward(h, logits * self.SCALE, labels, idx)
