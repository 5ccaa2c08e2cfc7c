"""Model checkpoints: `DIR/model.safetensors` + `DIR/config.json` (+ `DIR/optimizer.safetensors`).

Nothing here unpickles: weights and optimiser state are safetensors, the rest is JSON. DIR may be a
local path, file:// or s3:// URI (fsspec); every file is written atomically.

config.json holds what is needed to rebuild and use the model:
    arch, bits, classes, in_channels, input_size, model_options (ablation switches, widths),
    preprocess (the shared preprocessing parameters), normalization (mean/std, also inside the
    weights as buffers), data (dataset, URI, protocol, seed, limit), train (the recipe),
    epochs_done, weights_sha256 (sha256 of model.safetensors as written), format.
`load_checkpoint` adds config["model_sha256"] (the sha256 of the file it read) and refuses a weights
file whose hash, tensor names or shapes do not match the config, naming the file.

optimizer.safetensors (resume only) holds the optimiser's per-parameter buffers as
`state.<param index>.<name>`, the lookahead/EMA copy as `ema.<name>`, and a JSON `meta` entry in
the safetensors header (step counters).
"""

from __future__ import annotations

import hashlib
import json
import posixpath

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from pipeline import storage
from pipeline.errors import BadInput

FORMAT = "aurorahash-checkpoint/1"
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
OPTIM_FILE = "optimizer.safetensors"
REQUIRED = ("arch", "bits", "classes", "in_channels", "input_size")


def _join(d: str, name: str) -> str:
    return posixpath.join(str(d).rstrip("/"), name)


def _state_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}


def save_checkpoint(
    out_dir: str,
    model: torch.nn.Module,
    config: dict,
    optimizer_state: dict[str, torch.Tensor] | None = None,
    optimizer_meta: dict | None = None,
    storage_options: dict | None = None,
) -> dict:
    """Write weights, then optimiser state, then config.json (the commit point). Returns config."""
    missing = [k for k in REQUIRED if k not in config]
    if missing:
        raise ValueError(f"checkpoint config lacks {missing}")
    storage.makedirs(out_dir, storage_options)
    blob = st_save(_state_tensors(model), metadata={"format": FORMAT})
    cfg = dict(config)
    cfg["format"] = FORMAT
    cfg["weights_sha256"] = hashlib.sha256(blob).hexdigest()
    cfg.pop("model_sha256", None)
    storage.atomic_write_bytes(_join(out_dir, MODEL_FILE), blob, storage_options)
    if optimizer_state is not None:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in optimizer_state.items()}
        meta = {"format": FORMAT, "meta": json.dumps(optimizer_meta or {})}
        oblob = st_save(tensors, metadata=meta)
        cfg["optimizer_sha256"] = hashlib.sha256(oblob).hexdigest()
        storage.atomic_write_bytes(_join(out_dir, OPTIM_FILE), oblob, storage_options)
    data = json.dumps(cfg, indent=2, sort_keys=True, default=str).encode()
    storage.atomic_write_bytes(_join(out_dir, CONFIG_FILE), data, storage_options)
    return cfg


def read_config(model_dir: str, storage_options: dict | None = None) -> dict:
    uri = _join(model_dir, CONFIG_FILE)
    if not storage.exists(uri, storage_options):
        raise BadInput(f"{uri}: no checkpoint config here (expected {CONFIG_FILE})")
    raw = storage.read_bytes(uri, storage_options, max_bytes=16 << 20)
    try:
        cfg = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{uri}: not valid JSON ({exc})") from None
    if not isinstance(cfg, dict):
        raise BadInput(f"{uri}: expected a JSON object")
    missing = [k for k in REQUIRED if k not in cfg]
    if missing:
        raise BadInput(f"{uri}: checkpoint config lacks {missing}")
    return cfg


def _read_safetensors(uri: str, storage_options, expect_sha: str | None, what: str):
    if not storage.exists(uri, storage_options):
        raise BadInput(f"{uri}: {what} file missing")
    blob = storage.read_bytes(uri, storage_options)
    sha = hashlib.sha256(blob).hexdigest()
    try:
        tensors = st_load(blob)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise BadInput(
            f"{uri}: not a readable safetensors file (truncated or corrupt?): {exc}"
        ) from None
    if expect_sha and sha != expect_sha:
        raise BadInput(
            f"{uri}: sha256 {sha[:12]}... does not match the {expect_sha[:12]}... recorded in "
            f"{CONFIG_FILE} (a different or modified file)"
        )
    return tensors, sha, blob


def build_from_config(cfg: dict):
    from pipeline.model import build_model

    try:
        return build_model(
            cfg["arch"],
            int(cfg["bits"]),
            len(cfg["classes"]),
            int(cfg["in_channels"]),
            int(cfg["input_size"]),
            **(cfg.get("model_options") or {}),
        )
    except (ValueError, TypeError) as exc:
        raise BadInput(f"checkpoint config describes no buildable model: {exc}") from None


def load_checkpoint(model_dir: str, device: str = "cpu", storage_options: dict | None = None):
    """(model in eval mode on `device`, config) from DIR; never unpickles. Errors are BadInput."""
    cfg = read_config(model_dir, storage_options)
    uri = _join(model_dir, MODEL_FILE)
    tensors, sha, _ = _read_safetensors(uri, storage_options, cfg.get("weights_sha256"), "weights")
    model = build_from_config(cfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    shapes = [
        f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in tensors and tuple(tensors[k].shape) != tuple(v.shape)
    ]
    if missing or extra or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}")
        if extra:
            parts.append(f"unexpected {extra[:5]}{'...' if len(extra) > 5 else ''}")
        if shapes:
            parts.append("shape mismatch " + "; ".join(shapes[:5]))
        raise BadInput(
            f"{uri} does not match the {cfg['arch']} model that {CONFIG_FILE} describes: "
            + ", ".join(parts)
        )
    model.load_state_dict(tensors)
    model.to(device).eval()
    cfg = dict(cfg)
    cfg["model_sha256"] = sha
    return model, cfg


def load_optimizer_state(model_dir: str, cfg: dict, storage_options: dict | None = None):
    """(tensors, meta) of optimizer.safetensors, or (None, None) when absent."""
    uri = _join(model_dir, OPTIM_FILE)
    if not storage.exists(uri, storage_options):
        return None, None
    tensors, _, blob = _read_safetensors(uri, storage_options, cfg.get("optimizer_sha256"), "state")
    n = int.from_bytes(blob[:8], "little")
    try:
        header = json.loads(blob[8 : 8 + n])
        meta = json.loads(header.get("__metadata__", {}).get("meta", "{}"))
    except (ValueError, TypeError) as exc:
        raise BadInput(f"{uri}: bad metadata: {exc}") from None
    return tensors, meta


def checkpoint_exists(model_dir: str, storage_options: dict | None = None) -> bool:
    return storage.exists(_join(model_dir, CONFIG_FILE), storage_options)
