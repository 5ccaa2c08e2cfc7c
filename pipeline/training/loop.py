"""Training of the deep hashing models: recipe, loop, per-epoch checkpoints and resume.

Three recipes (`muon` the default):
- `airbench`: the CIFAR-10 speed-run recipe of Keller Jordan's airbench,
  re-implemented: batch 1024 (smaller for small training sets, so an epoch has ~24+ steps),
  SGD with Nesterov momentum 0.85, learning rate and weight decay in "per 1024 examples"
  decoupled form (lr 11.5, wd 0.0153), batch-norm biases at 64x the learning
  rate, a triangular schedule (0.2 -> 1 at 23% of the steps -> 0.07), label smoothing 0.2,
  whitening-conv bias trained for the first 3 epochs only, a lookahead/EMA of the weights from
  epoch 3, alternating flips (every image flipped in every other epoch) and random 2-px
  translation. The classifier FC and the PMT exponent run at 0.3 x lr (`head_lr_scale`):
  airbench scales its last layer's output by 1/9, i.e. an 81x smaller learning rate, but our
  classifier reads 32-48 tanh units of norm ~4 instead of 256 pooled features, so its effective
  step is ~30x smaller already; 1/81 left it under-trained, 0.3 matched the plain airbench head
  in a 5-epoch comparison (benchmarks/RESULTS.md).
- `muon`: airbench94_muon's changes to `airbench` (pipeline/training/muon.py): the conv filters
  learn by Muon (momentum 0.6, Nesterov, the update orthogonalised by a Newton-Schulz iteration,
  the filter rescaled to a fixed norm; lr 0.24), everything else as `airbench`; batch 2000, the
  learning rate falling linearly from 1 to 0 with no warm-up, no lookahead/EMA. Its authors
  reach airbench's accuracy in 8 epochs instead of ~10. Two departures: the whitening bias keeps
  the global schedule for its 3 epochs (theirs decays to 0 over them), and the non-filter groups
  keep airbench's rates (theirs were tuned for their plain head, ours serve the hash head).
  The default since 2026-12-07: CIFAR-10 MAP within 0.01 of `airbench`'s in 8 epochs instead
  of 10, higher on the demo's synthetic aurora, and far higher on the AlexNet rows, which
  `airbench` under-trains in 10 epochs (benchmarks/RESULTS.md).
- `sgd`: the classic AlexNet schedule: SGD with Nesterov momentum 0.9, lr 0.01 per 256
  examples, weight decay 5e-4, 5% linear warm-up then linear decay to 0, flips and translation.
  It was the AlexNet rows' default until it proved to under-train them at the schedules we can
  afford (synthetic aurora, 96 px, 1,000 frames, 10 epochs, 12 bits: MAP 0.38-0.41 against
  0.55-0.67 with `airbench`).

What is trained is `method` (pipeline/training/methods): ours (the multi-task loss of
pipeline/training/losses.py on a model with a class head) or the published DPSH, DSH, CNNH and
CIBHash, each a head option and a loss plugged into this one loop, so a peer gets exactly our recipe
and budget. The loss sees each batch's training-set indices and may keep state (DPSH's memory of
outputs, CNNH's target codes), saved with every checkpoint; CNNH's stage 1 runs once, when a run
starts. A loss that asks for two views (`MethodLoss.views`: CIBHash) gets two independently
augmented views of each batch image, forwarded as one batch, drawn from the same per-epoch
generator with the data's own augmentation (pipeline/training/augment.py: all-sky or photo),
except that the loss's first `weak_views` views take the shift-flip instead (FixMatch's weak view,
for `semi`'s pseudo-labels); one-view methods keep the shift-flip batches above, bit for bit.
config.json `augment` records what ran.

Everything runs under bfloat16 autocast when `amp` is on (by default where bf16 is native: CUDA,
CPUs with AVX512-BF16 or AMX; bf16 needs no loss scaling), channels_last memory on CPU.
Each epoch ends with a checkpoint (weights, optimiser state, the EMA once it has started, epochs
done, training seconds) in the output directory; running the same command again resumes after
the last saved epoch and ends with the same bits as an uninterrupted run: the schedule is a
function of the global step, each epoch's shuffling, augmentation and dropout come from RNGs
seeded by (seed, epoch), and the rest of the state (`_State`) is in the checkpoint.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.choices import DEFAULT_RECIPE, RECIPES
from pipeline.errors import BadInput
from pipeline.model.checkpoint import (
    checkpoint_exists,
    load_checkpoint,
    load_optimizer_state,
    read_config,
    save_checkpoint,
)
from pipeline.model.precision import resolve_amp
from pipeline.training.losses import LossConfig

log = logging.getLogger("aurorahash.train")

_RECIPE_DEFAULTS = {  # what a TrainConfig left at None gets (`TrainConfig.resolved`)
    "airbench": dict(
        batch_size=1024,
        lr=11.5,
        momentum=0.85,
        weight_decay=0.0153,
        head_lr_scale=0.3,
        label_smoothing=0.2,
    ),
    "sgd": dict(
        batch_size=128,
        lr=0.01,
        momentum=0.9,
        weight_decay=5e-4,
        head_lr_scale=1.0,
        label_smoothing=0.0,
    ),
}
# airbench94_muon: airbench's, with Muon on the filters (training.muon) and batches of 2000
_RECIPE_DEFAULTS["muon"] = dict(_RECIPE_DEFAULTS["airbench"], batch_size=2000)


@dataclass(frozen=True)
class TrainConfig:
    """What a training run is asked to do; refuses a bad value when made (BadInput, naming
    the option as the CLI spells it), so that the job only parses its arguments."""

    arch: str = "compact"
    bits: int = 48
    epochs: float = 10.0
    seed: int = 0
    recipe: str | None = None  # None: DEFAULT_RECIPE
    batch_size: int | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    head_lr_scale: float | None = None
    label_smoothing: float | None = None
    method: str = "ours"  # pipeline.training.methods: ours | dpsh | dsh | cnnh
    method_options: dict = field(default_factory=dict)  # the method's own (None: its defaults)
    hash_loss: str = "dpsh"  # ours: its pair term, and the weights of its three terms
    ce_weight: float = 1.0
    pair_weight: float = 0.1
    quant_weight: float = 0.1
    flip: bool = True
    translate: int | None = None  # px; None: 2 for 32 px inputs, size // 16 otherwise
    augment: str | None = None  # pipeline.training.augment.POLICIES; None: chosen (`choose`)
    amp: bool | None = (
        None  # bfloat16 autocast; None: where bf16 is native (pipeline.model.precision)
    )
    device: str = "cpu"
    threads: int | None = None
    spp: bool | None = None  # ablation switches (None: the arch's own choice)
    pmt: bool | None = None
    pmt_p: float | None = None  # PMT's starting exponent (None: the arch's own)
    widths: tuple | None = None  # compact widths
    dropout: float | None = None
    log_every: int = 20
    checkpoint_every: int = 1  # epochs between checkpoints (the last epoch is always saved)
    init: str | None = None  # a checkpoint whose weights start a new run (training.warm_start)
    model_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.recipe is not None and self.recipe not in RECIPES:
            raise BadInput(f"unknown recipe {self.recipe!r}; choose one of {RECIPES}")
        if not 1 <= self.bits <= 4096:
            raise BadInput(f"--bits must be in 1..4096, not {self.bits}")
        if not self.epochs > 0:
            raise BadInput("--epochs must be positive")
        if self.pmt_p is not None and not 0 < self.pmt_p <= 1:
            raise BadInput(f"--pmt-p must be in (0, 1], not {self.pmt_p}")
        if self.checkpoint_every < 1:
            raise BadInput("--checkpoint-every must be at least 1")
        if self.batch_size is not None and self.batch_size < 2:
            raise BadInput("--batch-size must be at least 2 (pairs are formed inside a batch)")
        if self.threads is not None and self.threads < 1:
            raise BadInput(f"--threads must be at least 1, not {self.threads}")
        if self.translate is not None and self.translate < 0:
            raise BadInput(f"--translate must be at least 0, not {self.translate}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise BadInput(f"--dropout must be in [0, 1), not {self.dropout}")
        from pipeline.training.augment import POLICIES

        if self.augment not in (None, "auto", *POLICIES):
            raise BadInput(f"--augment must be one of auto, {', '.join(POLICIES)}")

    def resolved(self, n_train: int | None = None) -> TrainConfig:
        """The config that runs: the recipe's defaults filled in (the batch size follows the
        training set), amp decided for the device, the method's and model's options merged."""
        rec = self.recipe or DEFAULT_RECIPE
        d = dict(_RECIPE_DEFAULTS[rec])
        if rec in ("airbench", "muon") and n_train is not None:
            # airbench's 1024 assumes 50,000 images; a small set would get a handful of steps per
            # epoch and never train, so keep at least ~24 steps per epoch (batch >= 64).
            fit = max(64, 1 << max(0, (n_train // 24).bit_length() - 1))
            d["batch_size"] = min(d["batch_size"], fit)
        changes = {k: v for k, v in d.items() if getattr(self, k) is None}
        opts = copy.deepcopy(self.model_options)
        for k in ("spp", "pmt", "pmt_p", "dropout"):
            if getattr(self, k) is not None:
                opts[k] = getattr(self, k)
        if self.widths is not None and self.arch == "compact":
            opts["widths"] = [int(w) for w in self.widths]
        from pipeline.training.methods import head_options, resolve

        method_options = resolve(self.method, copy.deepcopy(self.method_options), self.bits)
        opts.update(head_options(self.method, method_options))
        return replace(
            self,
            **changes,
            recipe=rec,
            amp=resolve_amp(self.amp, self.device),
            method_options=method_options,
            model_options=opts,
        )

    def loss_config(self) -> LossConfig:
        return LossConfig(
            hash_loss=self.hash_loss,
            ce_weight=self.ce_weight,
            pair_weight=self.pair_weight,
            quant_weight=self.quant_weight,
            label_smoothing=self.label_smoothing or 0.0,
        )


# --------------------------------------------------------------------------- data on the device


def to_input(x: torch.Tensor, preprocess: dict | None = None) -> torch.Tensor:
    """Dataset images -> model inputs (uint8: the photo preprocessing; float: as they are)."""
    from pipeline.model.preprocess import inputs_of

    return inputs_of(x, preprocess)


def channel_stats(x: np.ndarray, preprocess=None, max_n: int = 10000) -> tuple[list, list]:
    """Per-channel mean/std of model inputs over up to max_n images."""
    t = to_input(torch.from_numpy(np.ascontiguousarray(x[:max_n])), preprocess)
    mean = t.mean(dim=(0, 2, 3))
    std = t.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return mean.tolist(), std.tolist()


def augment_batch(xpad, idx, size, pad, flip_mask, gen):
    """Crop `size` windows at random offsets in [0, 2*pad] from padded images, flip some."""
    b = len(idx)
    dev = xpad.device
    imgs = xpad[idx.to(dev)]
    if pad > 0:
        off = torch.randint(0, 2 * pad + 1, (b, 2), generator=gen).to(dev)
        ar = torch.arange(size, device=dev)
        rows = (off[:, 0:1] + ar)[:, :, None]  # b, size, 1
        cols = (off[:, 1:2] + ar)[:, None, :]  # b, 1, size
        bi = torch.arange(b, device=dev)[:, None, None]
        imgs = imgs.permute(0, 2, 3, 1)[bi, rows, cols].permute(0, 3, 1, 2)
    if flip_mask is not None:
        imgs = torch.where(flip_mask.to(dev).view(-1, 1, 1, 1), imgs.flip(-1), imgs)
    return imgs


def _pad_images(x: torch.Tensor, pad: int) -> torch.Tensor:
    if pad <= 0:
        return x
    if x.dtype == torch.uint8:
        return F.pad(x.float(), (pad,) * 4, mode="reflect").to(torch.uint8)
    return F.pad(x, (pad,) * 4, mode="reflect")


# --------------------------------------------------------------------------- optimiser


def _param_groups(model, cfg: TrainConfig):
    head, bn_bias, other, filters = [], [], [], []
    decoupled = cfg.recipe in ("airbench", "muon")
    for name, p in model.named_parameters():
        if not p.requires_grad and "whiten" not in name:
            continue
        if ".head.classifier." in name or name.endswith("pmt.p"):
            head.append(p)
        elif decoupled and ("norm" in name and name.endswith("bias")):
            bn_bias.append(p)
        elif cfg.recipe == "muon" and p.dim() == 4 and "whiten" not in name:
            filters.append(p)
        else:
            other.append(p)
    bs = cfg.batch_size
    if decoupled:
        # Decoupled form: lr/wd are per 1024 examples; the loss is a batch mean, hence * bs.
        kilostep = 1024 * (1 + 1 / (1 - cfg.momentum))
        lr = cfg.lr / kilostep * bs
        wd = cfg.weight_decay * bs / kilostep  # per-step decay fraction (before momentum)
        groups = [
            dict(params=other, lr=lr, weight_decay=wd / lr, name="other"),
            dict(params=bn_bias, lr=lr * 64, weight_decay=wd / (lr * 64), name="bn_bias"),
            dict(
                params=head,
                lr=lr * cfg.head_lr_scale,
                weight_decay=wd / (lr * cfg.head_lr_scale),
                name="head",
            ),
        ]
        if filters:
            from pipeline.training import muon

            # --lr scales the filters' rate alike (a fine-tuning run asks for a fraction of both)
            scale = cfg.lr / _RECIPE_DEFAULTS["muon"]["lr"]
            mu = dict(lr=muon.FILTER_LR * scale, momentum=muon.FILTER_MOMENTUM, muon=True)
            groups.append(dict(params=filters, name="filters", **mu))
    else:
        lr = cfg.lr * bs / 256
        groups = [
            dict(params=other, lr=lr, weight_decay=cfg.weight_decay, name="other"),
            dict(
                params=head,
                lr=lr * cfg.head_lr_scale,
                weight_decay=cfg.weight_decay,
                name="head",
            ),
        ]
    groups = [g for g in groups if g["params"]]
    for g in groups:
        g["base_lr"] = g["lr"]
    return groups


def lr_factor(step: int, total: int, recipe: str) -> float:
    x = step / max(total, 1)
    if recipe == "muon":  # airbench94_muon: linear from 1 to 0, no warm-up
        return 1.0 - min(x, 1.0)
    if recipe == "airbench":
        start, peak, end, at = 0.2, 1.0, 0.07, 0.23
    else:
        start, peak, end, at = 0.0, 1.0, 0.0, 0.05
    if x < at:
        return start + (peak - start) * x / at
    return peak + (end - peak) * min(1.0, (x - at) / (1 - at))


def _optimizer(groups: list[dict], cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum; the `muon` recipe's Muon for its filter group."""
    if cfg.recipe == "muon":
        from pipeline.training.muon import Muon

        return Muon(groups, momentum=cfg.momentum)
    return torch.optim.SGD(groups, momentum=cfg.momentum, nesterov=True)


def _optimizer_tensors(opt: torch.optim.Optimizer) -> dict:
    out = {}
    sd = opt.state_dict()
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                out[f"state.{idx}.{k}"] = v
            else:
                out[f"state.{idx}.{k}"] = torch.tensor(float(v))
    return out


def _restore_optimizer(opt: torch.optim.Optimizer, tensors: dict) -> None:
    sd = opt.state_dict()
    state = {}
    for key, v in tensors.items():
        if not key.startswith("state."):
            continue
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = v
    n_params = sum(len(g["params"]) for g in sd["param_groups"])
    if any(i >= n_params for i in state):
        raise BadInput("optimizer.safetensors does not match the model's parameters")
    sd["state"] = state
    opt.load_state_dict(sd)


# --------------------------------------------------------------------------- training state

EMA_START = 3  # airbench: the lookahead/EMA of the weights runs from this epoch (0-based) on
WHITEN_BIAS_EPOCHS = 3  # the whitening conv's bias trains in the first epochs only (any recipe)


@dataclass
class _Data:
    """The training set ready to batch (padded images on their device) and the step schedule."""

    xpad: torch.Tensor
    y: torch.Tensor
    size: int
    pad: int
    preprocess: dict | None
    base_flip: torch.Tensor
    steps_per_epoch: int
    total_steps: int
    n_epochs: int
    device: torch.device
    views: int = 1  # augmented views of each image per step (the method's loss says how many)
    augment: object = None  # a pipeline.training.augment policy; None: shift-flip on xpad
    augment_record: dict | None = None  # what config.json `augment` says
    weak_views: int = 0  # the first views take shift-flip, not `augment` (FixMatch's weak view)


@dataclass
class _State:
    """What a checkpoint must hold for an exact resume: weights, optimiser, EMA and counters.

    Everything else a step uses is a function of (seed, epoch, step): the shuffling, crops, flips
    and views (a generator seeded per epoch), dropout and CIBHash's code samples (the global RNG,
    seeded per epoch), the learning rate (the global step) and whether the whitening bias trains
    (the epoch).
    """

    model: torch.nn.Module
    opt: torch.optim.Optimizer
    config: dict
    loss: torch.nn.Module  # the method's loss (pipeline.training.methods), with its state
    ema: dict | None = None
    step: int = 0
    epochs_done: int = 0
    train_seconds: float = 0.0


def _device(cfg: TrainConfig) -> torch.device:
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    dev = torch.device(cfg.device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BadInput("--device cuda asked for, but no CUDA device is available")
        torch.backends.cudnn.benchmark = True
    return dev


def _prepare_data(
    splits: dict, cfg: TrainConfig, dev: torch.device, views: int = 1, weak_views: int = 0
) -> _Data:
    from pipeline.training import augment

    x_np, y_np = splits["train"]
    n, _, s, _ = x_np.shape
    pad = cfg.translate if cfg.translate is not None else (2 if s <= 32 else max(1, s // 16))
    policy = augment.choose(cfg.augment, views, splits.get("preprocess"))
    transform = augment.build(policy, splits.get("preprocess"))
    if transform is None:
        flips = ("alternating" if views == 1 else "random") if cfg.flip else "none"
        record = {"policy": policy, "translate": pad, "flip": flips}
    else:
        record = transform.record()
        if weak_views:
            record["weak_views"] = {"count": weak_views, "policy": "shift-flip", "translate": pad}
    xpad = _pad_images(torch.from_numpy(np.ascontiguousarray(x_np)), pad)
    if dev.type == "cuda" and xpad.numel() * xpad.element_size() < (8 << 30):
        xpad = xpad.to(dev)  # augment on the GPU; the CPU would be the bottleneck
    # drop_last (pairs need full-ish batches); a set smaller than a batch is one step
    steps_per_epoch = max(1, n // cfg.batch_size)
    return _Data(
        xpad=xpad,
        y=torch.from_numpy(np.asarray(y_np)).long(),
        size=s,
        pad=pad,
        preprocess=splits.get("preprocess"),
        base_flip=torch.rand(n, generator=torch.Generator().manual_seed(cfg.seed)) < 0.5,
        steps_per_epoch=steps_per_epoch,
        total_steps=max(1, math.ceil(steps_per_epoch * cfg.epochs)),
        n_epochs=math.ceil(cfg.epochs),
        device=dev,
        views=views,
        augment=transform,
        augment_record=record,
        weak_views=weak_views if transform is not None else 0,
    )


def _same_run(saved: dict, cfg_dict: dict, data_info: dict, out_dir: str) -> None:
    saved = {"method": "ours", **saved}  # checkpoints from before --method are ours
    for k in ("arch", "bits", "method"):
        if saved.get(k) != cfg_dict.get(k):
            raise BadInput(
                f"{out_dir} holds a checkpoint with {k}={saved.get(k)!r}, not {cfg_dict.get(k)!r}; "
                "choose another --out to start a new run"
            )
    sd = saved.get("data") or {}
    for k in ("dataset", "protocol", "seed", "limit"):
        if k in data_info and sd.get(k) != data_info.get(k):
            raise BadInput(
                f"{out_dir} was trained on {k}={sd.get(k)!r}, not {data_info.get(k)!r}; "
                "choose another --out to start a new run"
            )


def new_model(cfg: TrainConfig, splits: dict):
    """The untrained model a run starts from: built, normalised and whitened from the training
    images (`cfg` resolved). Benchmarks use it as the untrained reference."""
    from pipeline.model.archs import build_model

    x_np = splits["train"][0]
    n, c, s, _ = x_np.shape
    pre = splits.get("preprocess")
    try:
        model = build_model(cfg.arch, cfg.bits, len(splits["classes"]), c, s, **cfg.model_options)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    # statistics and the whitening init from a seeded random subset (datasets are often stored
    # sorted by class)
    sub = np.random.default_rng(cfg.seed).permutation(n)[:10000]
    mean, std = channel_stats(x_np[sub], pre)
    model.set_normalization(mean, std)
    model.init_from_data(to_input(torch.from_numpy(np.ascontiguousarray(x_np[sub[:5000]])), pre))
    return model


def _checkpoint_config(cfg, splits, model, data_info, encode_settings) -> dict:
    """config.json of this run (epochs_done and train_seconds are added at each save)."""
    from pipeline.model.archs import params_mb

    n, c, s, _ = splits["train"][0].shape
    train = asdict(cfg)
    train["widths"] = list(cfg.widths) if cfg.widths else None
    config = {
        "arch": cfg.arch,
        "method": cfg.method,
        "bits": int(cfg.bits),
        "classes": list(splits["classes"]),
        "in_channels": int(c),
        "input_size": int(s),
        "model_options": cfg.model_options,
        "preprocess": splits.get("preprocess"),
        "normalization": {
            "mean": model.norm.mean.flatten().tolist(),
            "std": model.norm.std.flatten().tolist(),
            "note": "applied inside the model (buffers norm.mean/std) to the preprocess output",
        },
        "data": data_info,
        "train": train,
        "epochs": cfg.epochs,
        "params_mb": params_mb(model),
        "train_images": int(n),
    }
    if encode_settings is not None:
        config["encode"] = encode_settings
    return config


def _start_or_resume(splits, cfg, out_dir, data_info, so, dev, encode_settings) -> _State:
    """A new model and loss, or the last checkpoint in out_dir with its optimiser, EMA and loss
    state (the method's: DPSH's memory, CNNH's target codes)."""
    from pipeline.training.methods import build_loss

    torch.manual_seed(cfg.seed)
    saved, tensors = {}, None
    if checkpoint_exists(out_dir, so):
        run = {"arch": cfg.arch, "bits": cfg.bits, "method": cfg.method}
        _same_run(read_config(out_dir, so), run, data_info, out_dir)
        model, saved = load_checkpoint(out_dir, "cpu", so)
        tensors, _ = load_optimizer_state(out_dir, saved, so)
    else:
        model = new_model(cfg, splits)
    config = _checkpoint_config(cfg, splits, model, data_info, encode_settings)
    if cfg.init and saved:
        config["init"] = saved.get("init")
        log.info("resuming %s: --init %s was applied when the run started", out_dir, cfg.init)
    elif cfg.init:
        from pipeline.training.warm_start import warm_start

        run = {"arch": cfg.arch, "preprocess": splits.get("preprocess")}
        config["init"] = warm_start(model, cfg.init, run, so)
        log.info("weights from %s; fresh: %s", cfg.init, config["init"]["fresh"] or "none")
    loss_state = {
        k.removeprefix("loss."): v for k, v in (tensors or {}).items() if k[:5] == "loss."
    }
    loss = build_loss(cfg, splits["train"][1], dev, loss_state)
    info = loss.info or saved.get("method_info")  # CNNH's stage 1 ran in this run or an earlier
    if info:
        config["method_info"] = info
    model.to(dev)
    if dev.type == "cpu":
        model.to(memory_format=torch.channels_last)
    opt = _optimizer(_param_groups(model, cfg), cfg)
    st = _State(model, opt, config, loss)
    st.epochs_done = int(saved.get("epochs_done", 0))
    # per-epoch loss and accuracy of the saved epochs (epochs after the last save run again)
    config["history"] = [h for h in saved.get("history", []) if h.get("epoch", 0) <= st.epochs_done]
    st.train_seconds = float(saved.get("train_seconds", 0.0))
    if tensors is not None:
        _restore_optimizer(opt, tensors)
        st.ema = _restore_ema(model, tensors)
    if saved:
        log.info(
            "resuming %s after epoch %d (%.0f s trained)", out_dir, st.epochs_done, st.train_seconds
        )
    return st


def _restore_ema(model, tensors: dict) -> dict | None:
    """The `ema.<name>` tensors as the EMA dict (on the model's device, in its memory layout);
    None when the run saved none (the EMA had not started, or a checkpoint from before exact
    resume)."""
    saved = {k.removeprefix("ema."): v for k, v in tensors.items() if k.startswith("ema.")}
    if not saved:
        return None
    sd = model.state_dict()
    want = {k: v for k, v in sd.items() if v.dtype.is_floating_point}
    if set(saved) != set(want) or any(saved[k].shape != v.shape for k, v in want.items()):
        raise BadInput("optimizer.safetensors: its EMA tensors do not match the model's weights")
    with torch.no_grad():
        return {k: v.detach().clone().copy_(saved[k]) for k, v in want.items()}


def _save(out_dir: str, st: _State, so) -> None:
    st.config["epochs_done"] = st.epochs_done
    st.config["train_seconds"] = st.train_seconds
    tensors = _optimizer_tensors(st.opt)
    if st.ema is not None:
        tensors.update({f"ema.{k}": v for k, v in st.ema.items()})
    tensors.update({f"loss.{k}": v for k, v in st.loss.state_tensors().items()})
    meta = {"step": st.step, "epochs_done": st.epochs_done}
    save_checkpoint(out_dir, st.model, st.config, tensors, meta, so)


# --------------------------------------------------------------------------- training


def _autocast(cfg: TrainConfig):
    dev = torch.device(cfg.device).type
    dtype = torch.bfloat16
    return torch.autocast(dev, dtype=dtype, enabled=cfg.amp)


class _Meter:
    """Running means of the loss terms and the training accuracy of one epoch."""

    def __init__(self):
        self.sums, self.count, self.images, self.correct = {}, 0, 0, 0
        self.labelled = 0  # images with a label (all but a semi-supervised run's unlabelled)

    def add(self, loss, parts, logits, yb) -> None:
        for k, v in parts.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v.detach())
        self.sums["loss"] = self.sums.get("loss", 0.0) + float(loss.detach())
        self.count += 1
        self.images += len(yb)
        if self.correct is not None and yb.dim() == 1 and logits is not None:
            known = yb >= 0  # logits of the first view only, labelled images only
            self.labelled += int(known.sum())
            self.correct += int((logits[: len(yb)].argmax(1) == yb)[known].sum())
        else:  # no class head (DPSH, DSH) or multi-hot labels: no training accuracy
            self.correct = None

    def mean(self, key: str) -> float:
        return self.sums.get(key, 0.0) / max(self.count, 1)

    def text(self) -> str:
        parts = " ".join(f"{k} {self.mean(k):.4f}" for k in sorted(self.sums))
        if self.correct is None:
            return parts
        return f"{parts} train_acc {self.correct / max(self.labelled, 1):.4f}"

    def record(self, epoch: int, seconds: float, single_label: bool) -> dict:
        """The epoch's line of config.json `history` (what train/evaluate reports plot)."""
        out = {"epoch": epoch, "seconds": round(seconds, 3), "images": self.images}
        out.update({k: round(self.mean(k), 6) for k in sorted(self.sums)})
        known = single_label and self.correct is not None  # None: no class head (DPSH, DSH)
        out["train_accuracy"] = round(self.correct / max(self.labelled, 1), 6) if known else None
        return out


def _batch(data: _Data, idx, flips, gen):
    """(inputs, labels, training-set indices) of one batch, on the device: `data.views`
    augmented views of each image, stacked view by view (row v * len(idx) + i); labels and
    indices once per image."""
    if data.views == 1 and data.augment is None:  # the recipe's shift-flip, as it always was
        fm = flips[idx] if flips is not None else None
        xb = to_input(augment_batch(data.xpad, idx, data.size, data.pad, fm, gen), data.preprocess)
    else:
        xb = torch.cat(
            [_view(data, idx, flips, gen, v < data.weak_views) for v in range(data.views)]
        )
    xb = xb.to(data.device, non_blocking=True)
    if data.device.type == "cpu":
        xb = xb.contiguous(memory_format=torch.channels_last)
    return xb, data.y[idx].to(data.device), idx.to(data.device)


def _view(data: _Data, idx, flips, gen, weak: bool = False) -> torch.Tensor:
    """One augmented view of the images `idx` (model inputs), drawn from `gen`: shift-flip with
    random flips (alternating ones would flip both views alike) when there is no other policy or
    the view is `weak`, else the data's own policy."""
    if data.augment is None or weak:
        fm = torch.rand(len(idx), generator=gen) < 0.5 if flips is not None else None
        xb = augment_batch(data.xpad, idx, data.size, data.pad, fm, gen)
        return to_input(xb, data.preprocess)
    p, s = data.pad, data.size
    x = to_input(data.xpad[idx.to(data.xpad.device)][..., p : p + s, p : p + s], data.preprocess)
    return data.augment(x, gen)


def _step(st: _State, data: _Data, cfg: TrainConfig, xb, yb, ib):
    f = lr_factor(st.step, data.total_steps, cfg.recipe)
    for g in st.opt.param_groups:
        g["lr"] = g["base_lr"] * f
    with _autocast(cfg):
        h, logits = st.model(xb)
    logits = logits.float() if logits is not None else None
    loss, parts = st.loss(h.float(), logits, yb, ib)
    st.opt.zero_grad(set_to_none=True)
    loss.backward()
    st.opt.step()
    st.step += 1
    return loss, parts, logits


def _train_epoch(st: _State, data: _Data, cfg: TrainConfig, epoch: int) -> None:
    """One epoch; its randomness is seeded by (seed, epoch), so a resume repeats it exactly."""
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
    torch.manual_seed(cfg.seed * 1_000_003 + epoch)  # dropout: the same after a resume
    st.model.train()
    whiten_bias = getattr(getattr(st.model.body, "whiten", None), "bias", None)
    if whiten_bias is not None:
        whiten_bias.requires_grad_(epoch < WHITEN_BIAS_EPOCHS)
    perm = torch.randperm(len(data.y), generator=gen)
    # alternating flip: a fixed random half flipped on even epochs, the other half on odd
    flips = data.base_flip ^ bool(epoch % 2) if cfg.flip else None
    ema_on = cfg.recipe == "airbench" and epoch >= EMA_START
    bsz = min(cfg.batch_size, len(data.y))
    meter = _Meter()
    for i in range(data.steps_per_epoch):
        if st.step >= data.total_steps:
            break
        xb, yb, ib = _batch(data, perm[i * bsz : (i + 1) * bsz], flips, gen)
        loss, parts, logits = _step(st, data, cfg, xb, yb, ib)
        meter.add(loss, parts, logits, yb)
        if ema_on and st.step % 5 == 0:
            rho = (0.95**5) * (st.step / data.total_steps) ** 3
            st.ema = _lookahead(st.model, st.ema, rho)
        if cfg.log_every and (i + 1) % cfg.log_every == 0:
            rate = meter.images / (time.perf_counter() - t0)
            log.info(
                "epoch %d step %d/%d loss %.4f (%.0f img/s)",
                *(epoch + 1, i + 1, data.steps_per_epoch, meter.mean("loss"), rate),
            )
    if st.ema is not None:
        _lookahead(st.model, st.ema, 1.0)  # end of epoch: the net takes the averaged weights
    dt = time.perf_counter() - t0
    st.train_seconds += dt
    st.epochs_done = epoch + 1
    st.config.setdefault("history", []).append(meter.record(st.epochs_done, dt, data.y.dim() == 1))
    log.info(
        "epoch %d/%d done in %.1f s (%.0f img/s): %s",
        *(st.epochs_done, data.n_epochs, dt, meter.images / max(dt, 1e-9), meter.text()),
    )


def train_model(
    splits: dict,
    cfg: TrainConfig,
    out_dir: str,
    data_info: dict | None = None,
    storage_options: dict | None = None,
    stop_after: int | None = None,
    encode_settings: dict | None = None,
):
    """Train (or resume) on splits["train"] = (x, y); checkpoint into out_dir each epoch.

    x: (n, c, s, s) uint8 or float32 numpy array (the preprocessed inputs), y: (n,) int labels or
    (n, L) multi-hot. splits["classes"] names the classes; splits["preprocess"] is saved in the
    config, and `encode_settings` (how codes are made from the outputs) as config["encode"].
    `stop_after` ends this call after that many epochs (as if interrupted; tests).
    Returns (model, config) of the last checkpoint.
    """
    cfg = cfg.resolved(n_train=len(splits["train"][0]))
    data_info = dict(data_info or {})
    dev = _device(cfg)
    if len(splits["train"][0]) < 2:
        raise BadInput(f"need at least 2 training images, got {len(splits['train'][0])}")
    if encode_settings is not None:  # refused before any work, stored with its defaults
        from pipeline.model.settings import encode_settings as checked

        encode_settings = checked({"encode": encode_settings})
    st = _start_or_resume(splits, cfg, out_dir, data_info, storage_options, dev, encode_settings)
    data = _prepare_data(splits, cfg, dev, views=st.loss.views, weak_views=st.loss.weak_views)
    st.config["augment"] = data.augment_record
    # every saved epoch but a fractional last one is whole, so the step follows from the epoch;
    # a longer run resumed after a fractional last epoch starts the next one on schedule
    st.step = st.epochs_done * data.steps_per_epoch
    start = st.epochs_done
    for epoch in range(start, data.n_epochs):
        if st.step >= data.total_steps or (stop_after is not None and epoch - start >= stop_after):
            break
        _train_epoch(st, data, cfg, epoch)
        last = st.epochs_done >= data.n_epochs or st.step >= data.total_steps
        last = last or (stop_after is not None and st.epochs_done - start >= stop_after)
        if last or st.epochs_done % cfg.checkpoint_every == 0:
            _save(out_dir, st, storage_options)  # a resume starts after the last saved epoch
    return load_checkpoint(out_dir, cfg.device, storage_options)


@torch.no_grad()
def _lookahead(model, ema, rho):
    """EMA of float weights and buffers copied back into the net (airbench's lookahead)."""
    sd = model.state_dict()
    if ema is None:
        return {k: v.detach().clone() for k, v in sd.items() if v.dtype.is_floating_point}
    for k, e in ema.items():
        e.lerp_(sd[k], 1 - rho)
        sd[k].copy_(e)
    return ema
