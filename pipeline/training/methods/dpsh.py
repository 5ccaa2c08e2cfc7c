"""DPSH as published: pairwise likelihood over the whole training set + quantisation, no class head.

Li, Wang & Kang, "Feature learning based deep supervised hashing with pairwise labels", IJCAI
2016. The model is our backbone with a linear hash layer u = W^T phi(x) + v (no tanh:
`head_options`) and no classifier; the code is sign(u). Unlike the paper's, that layer has the
batch norm without affine parameters of our own head (`hash_bn`): without it the published head
collapsed to one code for every image under this from-scratch recipe (and under `--recipe sgd`)
in our measurements (benchmarks/RESULTS.md "MAP of CNNH, DPSH, DSH and ours on synthetic aurora, 32
px"), as our own head did before it had
the norm (pipeline/model/layers.py says why). The loss is the paper's objective

    L = - sum_{s_ij in S} (s_ij theta_ij - log(1 + e^theta_ij)) + eta sum_i ||b_i - u_i||^2,
    theta_ij = u_i . u_j / 2,  b_i = sign(u_i),  s_ij = 1 when i and j share a label, else 0,

in the minibatch form of the authors' code (github.com/jiangqy/DPSH-pytorch, DPSH_CIFAR_10.py):
every batch item i is paired with every training item j through a memory U (n x q) of the
latest outputs of all training items (zeros until an item is first seen; the batch's own rows
are written, detached, before the loss), and both sums are divided by n * batch size.

Default eta = 10: the authors' CIFAR-10 setting (DPSH_CIFAR_10_demo.py, `lamda = 10`).
The memory is training state: it is saved with each checkpoint (`loss.bank`) for an exact resume.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.training.losses import MethodLoss, similarity

DEFAULTS = {"eta": 10.0}
HEAD = {"classifier": "none", "hash_act": "linear", "hash_bn": True}


class DPSHLoss(MethodLoss):
    def __init__(self, train_labels: torch.Tensor, bits: int, eta: float = 10.0):
        super().__init__()
        self.eta = float(eta)
        self.register_buffer("labels", train_labels)
        self.register_buffer("bank", torch.zeros(len(train_labels), int(bits)))

    def forward(self, h, logits, labels, idx):
        u = h.float()
        n, b = self.bank.shape[0], len(u)
        with torch.no_grad():
            self.bank[idx] = u.detach()
        theta = 0.5 * (u @ self.bank.T)  # (b, n)
        s = similarity(labels, self.labels)
        pair = (F.softplus(theta) - s * theta).sum() / (n * b)
        quant = (u - torch.sign(u).detach()).pow(2).sum() / (n * b)
        return pair + self.eta * quant, {"pair": pair, "quant": quant}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"bank": self.bank}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if not tensors:  # a new run
            return
        bank = tensors.get("bank")
        if set(tensors) != {"bank"} or bank.shape != self.bank.shape:
            raise ValueError(
                f"DPSH state must be loss.bank of shape {tuple(self.bank.shape)}, got "
                f"{ {k: tuple(v.shape) for k, v in tensors.items()} }"
            )
        with torch.no_grad():
            self.bank.copy_(bank)
