"""Deep hashing methods, all trained by the one recipe and loop of `pipeline.training.loop`.

A method is two things plugged into that loop: options for the model's head
(`pipeline.model.layers.HashHead`: what the class logits read, the hash activation, batch norm)
and a loss (`pipeline.training.losses.MethodLoss`) over (h, logits, labels, batch indices), with the
state it keeps (saved with the checkpoint). Backbone, optimiser, schedule, augmentation, epochs,
EMA, the encode path and the shard format are shared, so two rows differ by their method only.

- `ours`: the classifier reads the codes, BN + tanh; CE + pair + quantisation
  (`pipeline.training.losses`); this project's defaults.
- `dpsh`: no class head, linear hash layer (after our head's batch norm); pairwise likelihood
  over the training set + eta x quantisation; eta 10 (the authors' code).
- `dsh`: no class head, linear (after the batch norm); contrastive over the batch's pairs +
  alpha x binary regulariser, per pair and per bit; m = 2 x bits, alpha 0.01 (the paper).
- `cnnh`: class units beside the hash units (CNNH+), tanh; stage-1 codes, then squared error +
  CE; 10 sweeps, labels on.
- `semi`: ours' head; ours' loss on the labelled images + w x CIBHash's on all of them + u x
  FixMatch's pseudo-label term on the unlabelled, two views each: a labelled subset and the
  unlabelled rest in one run (`semi.py`).
- `classifier`: the backbone as a plain classifier, the ceiling of the supervised rows: logits
  read the features, cross-entropy only (`classifier.py`).
- `cibhash`: no labels at all; no class head, bit probabilities (h = 2 sigmoid(u) - 1); two
  augmented views per image (the loss's `views`), NT-Xent between their relaxed codes 2p - 1
  (option `sample`: the paper's Bernoulli codes) + beta x the views' bit KL; tau 0.3, beta
  0.001 (the paper).

The modules (`dpsh.py`, `dsh.py`, `cnnh.py`, `cibhash.py`, `semi.py`, `classifier.py`) say
what is published and what is our reading. `needs_labels(method)`: whether every training
image needs a label (all but cibhash, which reads none, and semi, which learns from those that
have one).
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.choices import METHODS
from pipeline.errors import BadInput
from pipeline.training.losses import HashingLoss
from pipeline.training.methods import cibhash, classifier, cnnh, dpsh, dsh, semi

LABEL_FREE = ("cibhash",)  # methods whose loss never reads a label
PARTLY_LABELLED = ("semi",)  # methods that learn from the labels some training images have
DEFAULTS = {
    "ours": {},
    "dpsh": dpsh.DEFAULTS,
    "dsh": dsh.DEFAULTS,
    "cnnh": cnnh.DEFAULTS,
    "cibhash": cibhash.DEFAULTS,
    "semi": semi.DEFAULTS,
    "classifier": {},
}
_KINDS = {
    "eta": float,
    "alpha": float,
    "margin": float,
    "sweeps": int,
    "labels": bool,
    "tau": float,
    "beta": float,
    "weight": float,
    "sample": bool,
    "pseudo": float,
    "confidence": float,
}


def needs_labels(method: str) -> bool:
    """Whether `method` needs a label for every training image (all but cibhash and semi)."""
    return method not in LABEL_FREE + PARTLY_LABELLED


def resolve(method: str, options: dict | None, bits: int) -> dict:
    """The method's options with its defaults filled in and checked (BadInput otherwise)."""
    if method not in METHODS:
        raise BadInput(f"unknown method {method!r}; choose one of {METHODS}")
    given = {k: v for k, v in (options or {}).items() if v is not None}
    unknown = sorted(set(given) - set(DEFAULTS[method]))
    if unknown:
        have = sorted(DEFAULTS[method])
        raise BadInput(f"method {method} has no options {unknown} (it has {have})")
    out = {**DEFAULTS[method], **{k: _KINDS[k](v) for k, v in given.items()}}
    if method == "dsh" and out["margin"] is None:
        out["margin"] = 2.0 * int(bits)
    for k in ("eta", "alpha", "margin", "beta", "weight", "pseudo"):
        if k in out and not out[k] >= 0:
            raise BadInput(f"method {method}: {k} must be >= 0, not {out[k]}")
    if "tau" in out and not out["tau"] > 0:
        raise BadInput(f"method {method}: tau must be > 0, not {out['tau']}")
    if "confidence" in out and not 0 <= out["confidence"] <= 1:
        raise BadInput(f"method {method}: confidence must be in [0, 1], not {out['confidence']}")
    if method == "cnnh" and not 0 <= out["sweeps"] <= 1000:
        raise BadInput(f"method cnnh: sweeps must be in 0..1000, not {out['sweeps']}")
    return out


def head_options(method: str, options: dict) -> dict:
    """Model options (build_model) that the method's head needs; {} for ours."""
    if method == "semi":
        return dict(semi.HEAD)
    if method in ("dpsh", "dsh", "cibhash"):
        return dict({"dpsh": dpsh.HEAD, "dsh": dsh.HEAD, "cibhash": cibhash.HEAD}[method])
    if method == "cnnh":
        return cnnh.head(options)
    if method == "classifier":
        return dict(classifier.HEAD)
    return {}


def build_loss(cfg, labels: np.ndarray, device, state: dict | None = None):
    """The loss of `cfg.method` for training labels (n,) or (n, L); `state` from a checkpoint
    (tensors without their `loss.` prefix) resumes it. CNNH runs its stage 1 here on a new run."""
    m, opts, state = cfg.method, cfg.method_options, dict(state or {})
    y = torch.as_tensor(np.asarray(labels)).long()
    _require_labels(m, y)
    if m == "cibhash":  # labels are never read
        loss = cibhash.CIBHashLoss(opts["tau"], opts["beta"], opts["sample"])
    elif m == "ours":
        loss = HashingLoss(cfg.loss_config())
    elif m == "semi":
        sup = HashingLoss(cfg.loss_config())
        loss = semi.SemiLoss(
            sup, opts["tau"], opts["beta"], opts["weight"], opts["pseudo"], opts["confidence"]
        )
    elif m == "classifier":  # cross-entropy on the features' logits, nothing on the codes
        loss = classifier.PlainClassifierLoss(cfg.loss_config())
    elif m == "dpsh":
        loss = dpsh.DPSHLoss(y, cfg.bits, opts["eta"])
    elif m == "dsh":
        loss = dsh.DSHLoss(cfg.bits, opts["margin"], opts["alpha"])
    else:
        stage = {"sweeps": opts["sweeps"], "seed": cfg.seed}
        targets, info = state.get("targets"), None
        if targets is None:
            try:
                targets, info = cnnh.stage_one(np.asarray(labels), cfg.bits, **stage)
            except ValueError as exc:
                raise BadInput(str(exc)) from None
        loss = cnnh.CNNHLoss(targets, cfg.label_smoothing or 0.0, info)
    try:
        loss.load_state_tensors(state)
    except ValueError as exc:
        raise BadInput(f"optimizer.safetensors: {exc}") from None
    return loss.to(device)


def _require_labels(method: str, y: torch.Tensor) -> None:
    """A method that learns from labels refuses training images without one (label -1)."""
    if method in LABEL_FREE or y.dim() != 1:
        return
    missing = int((y < 0).sum())
    if method in PARTLY_LABELLED and missing == len(y):
        raise BadInput(
            f"--method {method} learns from the labelled training images, and none of the "
            f"{len(y)} has a label; --method {' or '.join(LABEL_FREE)} trains without labels"
        )
    if missing and method not in PARTLY_LABELLED:
        raise BadInput(
            f"--method {method} learns from labels, and {missing} of {len(y)} training images "
            f"have none; --method {' or '.join(PARTLY_LABELLED)} learns from the labelled ones "
            f"and the rest, --method {' or '.join(LABEL_FREE)} without labels"
        )
