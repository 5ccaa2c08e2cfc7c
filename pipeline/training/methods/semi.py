"""`semi`: our multi-task loss on the labelled images + CIBHash's contrastive loss on all of them.

An archive has millions of unlabelled frames and, at best, a few thousand labels; CIFAR-10's
`cifar10-1` has 5,000 labelled training images and 54,000 more database images that are there
at index time. This method trains on both in one run:

    L = sup(labelled rows) + w x CIBHash(all rows) + u x pseudo(unlabelled rows)

- The head is ours (`HEAD`: the classifier reads the codes, batch norm, tanh), so the codes are
  the class-aware ones of `--method ours` and every downstream job treats the checkpoint alike.
- Each image comes as two augmented views (the data's own augmentation, as for CIBHash).
  `sup` is `pipeline.training.losses.HashingLoss` (cross-entropy + pairwise + quantisation)
  over both views of the images that have a label (label >= 0); a batch without one adds 0.
- `CIBHash` is `pipeline.training.methods.cibhash.CIBHashLoss` (its defaults) over both views
  of every image: NT-Xent between the views' codes, plus beta x their bit KL, with bit
  probabilities p = (h + 1) / 2 (with tanh codes p = sigmoid(2u): the same layer).
- `w` (`--semi-weight`, default 1): the weight of the label-free term.
- `pseudo`: FixMatch's consistency term (Sohn et al., NeurIPS 2020) on the unlabelled images:
  where the weak view's class prediction is confident (max softmax >= `c` x the largest
  probability the supervised target asks for, 1 - eps + eps / K under label smoothing eps over K
  classes; `c` is `--semi-confidence`, FixMatch's 0.95), its class is the strong view's
  cross-entropy target (smoothed as the labels are; no gradient through the target), averaged over
  all unlabelled rows as FixMatch does (an unconfident row adds 0). The ceiling matters: the
  recipe's smoothing 0.2 caps a trained model's confidence near 0.82, so FixMatch's bare 0.95
  accepted no CIFAR-10 image (benchmarks/RESULTS.md). Why the term: the contrastive one alone
  teaches invariance, not classes, and our codes are class-aware (the classifier reads them);
  pseudo-labels carry the few thousand labels to the 54,000 images nobody labelled. As in
  FixMatch the teacher is a weak view and the student a strong one: with the term on, the first
  view takes the recipe's shift-flip (`weak_views`) and the second the data's own augmentation
  (photo, all-sky), and only the weak view's class is a target. `u` (`--semi-pseudo-weight`,
  default 1, FixMatch's lambda_u; 0 leaves the term out and both views strong).

Results that use the unlabelled database are semi-supervised, a different setting from the
paper's supervised one, and RESULTS.md labels them so.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.training.losses import HashingLoss, MethodLoss
from pipeline.training.methods.cibhash import CIBHashLoss

DEFAULTS = {"tau": 0.3, "beta": 0.001, "weight": 1.0, "pseudo": 1.0, "confidence": 0.95}
HEAD: dict = {}  # ours: classifier on the codes, batch norm, tanh


class SemiLoss(MethodLoss):
    """sup(labelled rows of both views) + weight x CIBHash(all rows); see the module docstring."""

    views = 2

    def __init__(
        self,
        supervised: HashingLoss,
        tau: float,
        beta: float,
        weight: float,
        pseudo: float = 0.0,
        confidence: float = 0.95,
    ):
        super().__init__()
        self.supervised = supervised
        self.unsupervised = CIBHashLoss(tau, beta)
        self.weight = float(weight)
        self.pseudo, self.confidence = float(pseudo), float(confidence)
        self.weak_views = 1 if self.pseudo else 0  # FixMatch: the weak view teaches the strong

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
        if self.pseudo and not known.all():
            eps = self.supervised.cfg.label_smoothing
            ceiling = 1.0 - eps + eps / logits.shape[1]
            pseudo, accepted = pseudo_label_loss(logits, ~known[:b], self.confidence * ceiling, eps)
            total = total + self.pseudo * pseudo
            parts.update(pseudo=pseudo, accepted=accepted)
        parts["labelled"] = known[:b].float().mean()
        return total, parts


def pseudo_label_loss(
    logits: torch.Tensor, unlabelled: torch.Tensor, confidence: float, smoothing: float = 0.0
):
    """FixMatch's term over two views (rows view by view, the weak one first): the strong view's
    cross-entropy (label `smoothing`) against the weak view's class where its softmax reaches
    `confidence` (no gradient), summed over those rows and divided by all unlabelled rows (at
    least one). Returns (loss, share of rows accepted)."""
    b = len(unlabelled)
    z = logits.float()
    teacher, student = z[:b][unlabelled].detach(), z[b:][unlabelled]
    p, target = torch.softmax(teacher, dim=1).max(dim=1)
    keep = p >= confidence
    loss = z.new_zeros(())
    if keep.any():
        loss = F.cross_entropy(
            student[keep], target[keep], reduction="sum", label_smoothing=smoothing
        )
    return loss / len(teacher), keep.float().mean()
