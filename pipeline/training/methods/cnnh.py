"""CNNH as published: stage 1 factorises the similarity into target codes, stage 2 fits them.

Xia, Pan, Lai, Liu & Yan, "Supervised hashing for image retrieval via image representation
learning", AAAI 2014.
- Stage 1 (`kernels.cnnh.approximate_codes`): target codes H in {-1, 1}^(n x q) with
  S ~ (1/q) H H^T over the training set, by the paper's randomised coordinate descent;
  `sweeps` passes over every entry (default 10: the T of the DeepHash-pytorch port of CNNH,
  github.com/swuxyj/DeepHash-pytorch CNNH.py; the paper iterates to convergence, which on
  CIFAR-10 shaped data it reaches in ~5 sweeps, benchmarks/RESULTS.md).
- Stage 2: our backbone learns to regress the codes: q tanh hash units, squared error to
  H_i (mean over bits). With `labels` (default; the paper's CNNH+ variant, its stronger row) the
  output layer also has c class units beside the hash units, reading the same features
  (`classifier="features"`), trained by softmax cross-entropy on the class labels (with the
  recipe's label smoothing); `labels=False` is plain CNNH, without a class head.
The paper's stage-2 loss for the class units is not restated here from its text: squared error
to the codes and cross-entropy for the classes are this implementation's reading.

Stage 1 runs once per training run; its codes are training state, saved with each checkpoint
(`loss.targets`) so a resumed run does not factorise again.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.training.losses import MethodLoss

DEFAULTS = {"sweeps": 10, "labels": True}


def head(options: dict) -> dict:
    return {"classifier": "features" if options["labels"] else "none", "hash_bn": False}


def stage_one(labels: np.ndarray, bits: int, sweeps: int, seed: int):
    """(targets float32 (n, bits), info) from kernels.cnnh, timed."""
    from kernels.cnnh import approximate_codes

    t0 = time.perf_counter()
    codes, info = approximate_codes(labels, bits, sweeps=sweeps, seed=seed)
    info = {
        "stage1_seconds": round(time.perf_counter() - t0, 2),
        "objective": [round(v, 6) for v in info["objective"]],
        "objective_codes": round(info["objective_codes"], 6),
        "sweeps_kept": info["kept"],
    }
    return torch.from_numpy(codes), info


class CNNHLoss(MethodLoss):
    def __init__(self, targets: torch.Tensor, label_smoothing: float = 0.0, info=None):
        super().__init__()
        self.register_buffer("targets", targets.float())
        self.label_smoothing = float(label_smoothing)
        self.info = info

    def forward(self, h, logits, labels, idx):
        fit = (h.float() - self.targets[idx]).pow(2).mean()
        parts = {"fit": fit}
        total = fit
        if logits is not None:
            ce = F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)
            parts["ce"] = ce
            total = total + ce
        return total, parts

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"targets": self.targets}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if not tensors:  # a new run
            return
        t = tensors.get("targets")
        if set(tensors) != {"targets"} or t.shape != self.targets.shape:
            shape = tuple(self.targets.shape)
            raise ValueError(f"CNNH state must be loss.targets of shape {shape}")
        with torch.no_grad():
            self.targets.copy_(t)
