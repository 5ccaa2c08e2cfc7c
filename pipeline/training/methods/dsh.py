"""DSH as published: contrastive loss over the batch's pairs + a binary regulariser, no class head.

Liu, Wang, Shan & Chen, "Deep supervised hashing for fast image retrieval", CVPR 2016. The model
is our backbone with a linear hash layer (no tanh, no batch norm: `head_options`) and no
classifier; the code is sign(b). For every pair of images (b_1, b_2) of a minibatch (the paper
generates pairs online from all unique pairs of each batch), y = 0 when they share a label:

    L = 1/2 (1 - y) ||b_1 - b_2||^2 + 1/2 y max(m - ||b_1 - b_2||^2, 0)
        + alpha (|| |b_1| - 1 ||_1 + || |b_2| - 1 ||_1)

summed over the pairs. Here it is divided by the number of pairs (each image is in B - 1 of
the B(B-1)/2 pairs, so the regulariser becomes 2 alpha mean_i || |b_i| - 1 ||_1) and by k: the
same minimiser, at the loss scale (~1) the recipe's learning rate is set for. Undivided, its
gradients are ~k times those of a cross-entropy and the airbench step threw the PMT exponent
out of its range within the first epoch (measured, benchmarks/RESULTS.md "MAP of CNNH, DPSH, DSH
and ours on synthetic aurora, 32 px").

Defaults as published: margin m = 2k (k = bits) and alpha = 0.01. The hash layer is linear as
published, after the batch norm without affine parameters that our head has (`hash_bn`): the
published head without it collapsed to one code for every image under this from-scratch recipe
(and under `--recipe sgd`) in our measurements, as our own head did before it had the norm
(pipeline/model/layers.py says why).
"""

from __future__ import annotations

from pipeline.training.losses import MethodLoss, dsh_pair_loss, similarity

DEFAULTS = {"alpha": 0.01, "margin": None}  # margin None: 2 * bits
HEAD = {"classifier": "none", "hash_act": "linear", "hash_bn": True}


class DSHLoss(MethodLoss):
    def __init__(self, bits: int, margin: float | None = None, alpha: float = 0.01):
        super().__init__()
        self.margin = 2.0 * int(bits) if margin is None else float(margin)
        self.alpha = float(alpha)

    def forward(self, h, logits, labels, idx=None):
        b = h.float()
        k = b.shape[1]
        pair = dsh_pair_loss(b, similarity(labels), self.margin) / k
        reg = (b.abs() - 1.0).abs().mean()  # = sum over bits / k
        return pair + 2.0 * self.alpha * reg, {"pair": pair, "binary": reg}
