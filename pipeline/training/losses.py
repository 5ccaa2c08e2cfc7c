"""Our method's loss (`--method ours`): classification + pairwise similarity + quantisation.

(The published DPSH, DSH and CNNH, trained as methods of their own with their own heads and
losses, are in `pipeline/training/methods/`; `--hash-loss dpsh|dsh` below only picks the pair
term of our multi-task loss.)

    L = ce_weight * CE(logits, y)                       softmax cross-entropy (label smoothing)
      + pair_weight * L_pair(h, S)                      DPSH likelihood, or DSH contrastive
      + quant_weight * mean_i,k (h_ik - sign(h_ik))^2   quantisation penalty ||u - sign(u)||^2

`h` are the hash layer outputs (tanh, in [-1, 1]) of one batch, `S` the pair similarity matrix of
that batch: S_ij = 1 when samples i and j share a label (same class id, or a common 1 in multi-hot
labels), else 0. Every unordered pair i != j of the batch counts once.

DPSH (Li, Wang & Kang, IJCAI 2016): theta_ij = <h_i, h_j> / 2,
    L_pair = mean_{i<j} [ log(1 + exp(theta_ij)) - S_ij * theta_ij ]
i.e. the negative log-likelihood of S under p(S_ij = 1) = sigmoid(theta_ij).

DSH (Liu, Wang, Shan & Chen, CVPR 2016), contrastive with margin m (default 2 * bits):
    L_pair = mean_{i<j} [ S_ij / 2 * D_ij + (1 - S_ij) / 2 * max(m - D_ij, 0) ],
    D_ij = ||h_i - h_j||^2
(DSH's own regulariser || |h| - 1 ||_1 is replaced by the shared quantisation term.)

The quantisation term is averaged over samples and bits (so its weight does not depend on the
code length); the pair term is averaged over pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pipeline.choices import HASH_LOSSES


def similarity(labels: torch.Tensor, labels2: torch.Tensor | None = None) -> torch.Tensor:
    """S_ij in {0, 1}: 1-D class ids (same class) or 2-D multi-hot labels (a shared label)."""
    b = labels if labels2 is None else labels2
    if labels.dim() == 1:
        return (labels[:, None] == b[None, :]).float()
    return ((labels.float() @ b.float().T) > 0).float()


def _upper_pairs(n: int, device) -> torch.Tensor:
    return torch.triu(torch.ones(n, n, dtype=torch.bool, device=device), diagonal=1)


def dpsh_pair_loss(h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    h = h.float()
    theta = 0.5 * (h @ h.T)
    nll = F.softplus(theta) - s * theta
    mask = _upper_pairs(len(h), h.device)
    return nll[mask].mean() if mask.any() else h.sum() * 0.0


def dsh_pair_loss(h: torch.Tensor, s: torch.Tensor, margin: float | None = None) -> torch.Tensor:
    h = h.float()
    m = 2.0 * h.shape[1] if margin is None else float(margin)
    sq = (h * h).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * (h @ h.T)).clamp_min(0.0)
    loss = 0.5 * s * d2 + 0.5 * (1.0 - s) * (m - d2).clamp_min(0.0)
    mask = _upper_pairs(len(h), h.device)
    return loss[mask].mean() if mask.any() else h.sum() * 0.0


def quantization_loss(h: torch.Tensor) -> torch.Tensor:
    h = h.float()
    return (h - torch.sign(h).detach()).pow(2).mean()


@dataclass
class LossConfig:
    hash_loss: str = "dpsh"  # dpsh | dsh | none (ablation: no hash-layer loss)
    ce_weight: float = 1.0
    pair_weight: float = 1.0
    quant_weight: float = 0.1
    label_smoothing: float = 0.0
    dsh_margin: float | None = None

    def __post_init__(self):
        if self.hash_loss not in HASH_LOSSES:
            raise ValueError(f"hash loss must be one of {HASH_LOSSES}, not {self.hash_loss!r}")


class MethodLoss(torch.nn.Module):
    """What the training loop asks of a method's loss (pipeline.training.methods).

    forward(h, logits, labels, idx) -> (total, {term: value}); `idx` are the batch's indices in
    the training set (for losses that keep per-item state: DPSH's memory of outputs, CNNH's
    target codes). `state_tensors()` is saved with the checkpoint (as `loss.<name>`) and given
    back through `load_state_tensors` on resume; `info` (JSON) goes into config.json.
    `views`: how many independently augmented views of each batch image the loop forwards; with
    more than one, h (and logits) hold views * b rows, view by view (row v * b + i), while
    labels and idx hold b (CIBHash: two views). `weak_views`: how many of them, the first, take
    the recipe's shift-flip instead of the data's own augmentation (semi's FixMatch weak view).
    """

    info: dict | None = None
    views: int = 1
    weak_views: int = 0

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if tensors:
            raise ValueError(f"{type(self).__name__} keeps no state, got {sorted(tensors)}")


class HashingLoss(MethodLoss):
    """The multi-task loss; forward returns (total, parts) where parts holds each term's value."""

    def __init__(self, cfg: LossConfig | None = None):
        super().__init__()
        self.cfg = cfg or LossConfig()

    def forward(self, h, logits, labels, idx=None):
        c = self.cfg
        parts = {}
        total = logits.new_zeros((), dtype=torch.float32)
        if c.ce_weight:
            if labels.dim() == 1:
                ce = F.cross_entropy(logits.float(), labels, label_smoothing=c.label_smoothing)
            else:  # multi-hot: a soft target spread over the item's labels
                tgt = labels.float() / labels.float().sum(1, keepdim=True).clamp_min(1.0)
                ce = F.cross_entropy(logits.float(), tgt, label_smoothing=c.label_smoothing)
            parts["ce"] = ce
            total = total + c.ce_weight * ce
        if c.hash_loss != "none":
            s = similarity(labels)
            if c.pair_weight:
                if c.hash_loss == "dpsh":
                    pair = dpsh_pair_loss(h, s)
                else:
                    pair = dsh_pair_loss(h, s, c.dsh_margin)
                parts["pair"] = pair
                total = total + c.pair_weight * pair
            if c.quant_weight:
                q = quantization_loss(h)
                parts["quant"] = q
                total = total + c.quant_weight * q
        return total, parts
