"""DSH as published: contrastive loss over the batch's pairs + a binary regulariser, no class head.

Liu, Wang, Shan & Chen, "Deep supervised hashing for fast image retrieval", CVPR 2016. The model
is our backbone with a linear hash layer (no tanh, no batch norm: `head_options`) and no
classifier; the code is sign(b). For every pair of images (b_1, b_2) of a minibatch (the paper
generates pairs online from all unique pairs of each batch), y = 0 when they share a label:

    L = 1/2 (1 - y) ||b_1 - b_2||^2 + 1/2 y max(m - ||b_1 - b_2||^2, 0)
        + alpha (|| |b_1| - 1 ||_1 + || |b_2| - 1 ||_1)

summed over the pairs; here divided by the number of pairs (each image is in B - 1 of the
B(B-1)/2 pairs, so the regulariser becomes 2 alpha mean_i || |b_i| - 1 ||_1).

Defaults as published: margin m = 2k (k = bits) and alpha = 0.01.
"""

from __future__ import annotations

from pipeline.losses import MethodLoss, dsh_pair_loss, similarity

DEFAULTS = {"alpha": 0.01, "margin": None}  # margin None: 2 * bits
HEAD = {"classifier": "none", "hash_act": "linear", "hash_bn": False}


class DSHLoss(MethodLoss):
    def __init__(self, bits: int, margin: float | None = None, alpha: float = 0.01):
        super().__init__()
        self.margin = 2.0 * int(bits) if margin is None else float(margin)
        self.alpha = float(alpha)

    def forward(self, h, logits, labels, idx=None):
        b = h.float()
        pair = dsh_pair_loss(b, similarity(labels), self.margin)
        reg = (b.abs() - 1.0).abs().sum(1).mean()
        return pair + 2.0 * self.alpha * reg, {"pair": pair, "binary": reg}
