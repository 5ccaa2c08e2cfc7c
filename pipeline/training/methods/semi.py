"""`semi`: our multi-task loss on the labelled images + CIBHash's contrastive loss on all of them.

An archive has millions of unlabelled frames and, at best, a few thousand labels; CIFAR-10's
`cifar10-1` has 5,000 labelled training images and 54,000 more database images that are there
at index time. This method trains on both in one run:

    L = sup(labelled rows) + w x CIBHash(all rows)

- The head is ours (`HEAD`: the classifier reads the codes, batch norm, tanh), so the codes are
  the class-aware ones of `--method ours` and every downstream job treats the checkpoint alike.
- Each image comes as two augmented views (the data's own augmentation, as for CIBHash).
  `sup` is `pipeline.training.losses.HashingLoss` (cross-entropy + pairwise + quantisation)
  over both views of the images that have a label (label >= 0); a batch without one adds 0.
- `CIBHash` is `pipeline.training.methods.cibhash.CIBHashLoss` (its defaults) over both views
  of every image: NT-Xent between the views' codes, plus beta x their bit KL, with bit
  probabilities p = (h + 1) / 2 (with tanh codes p = sigmoid(2u): the same layer).
- `w` (`--semi-weight`, default 1): the weight of the label-free term.

Results that use the unlabelled database are semi-supervised, a different setting from the
paper's supervised one, and RESULTS.md labels them so.
"""

from __future__ import annotations

import torch

from pipeline.training.losses import HashingLoss, MethodLoss
from pipeline.training.methods.cibhash import CIBHashLoss

DEFAULTS = {"tau": 0.3, "beta": 0.001, "weight": 1.0}
HEAD: dict = {}  # ours: classifier on the codes, batch norm, tanh


class SemiLoss(MethodLoss):
    """sup(labelled rows of both views) + weight x CIBHash(all rows); see the module docstring."""

    views = 2

    def __init__(self, supervised: HashingLoss, tau: float, beta: float, weight: float):
        super().__init__()
        self.supervised = supervised
        self.unsupervised = CIBHashLoss(tau, beta)
        self.weight = float(weight)

    def forward(self, h, logits, labels, idx=None):
        b = len(labels)
        total, parts = self.unsupervised(h)
        parts = dict(parts)
        total = self.weight * total
        known = torch.cat([labels, labels]) >= 0 if labels.dim() == 1 else None
        if known is None:  # multi-hot: a row without any label is all zeros
            known = torch.cat([labels, labels]).sum(1) > 0
        if known.any():
            y = torch.cat([labels, labels])[known]
            sup, sup_parts = self.supervised(h[known], logits[known], y)
            total = total + sup
            parts.update(sup_parts)
        parts["labelled"] = known[:b].float().mean()
        return total, parts
