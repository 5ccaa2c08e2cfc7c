"""Model checkpoints: `DIR/model.safetensors` + `DIR/config.json` (+ `DIR/optimizer.safetensors`).

Nothing here unpickles: weights and optimiser state are safetensors, the rest is JSON. DIR may be a
local path, file:// or s3:// URI (fsspec); every file is written atomically.

config.json holds what is needed to rebuild and use the model:
    arch, method (pipeline.training.methods: ours | dpsh | dsh | cnnh | cibhash; absent = ours),
    bits, classes ([] for a model without a class head trained without labels), in_channels,
    input_size, model_options (ablation switches, widths, the head: classifier codes | features |
    none, hash_act tanh | linear | sigmoid, hash_bn), preprocess (the shared preprocessing
    parameters), normalization (mean/std, also inside the weights as buffers), data (dataset, URI,
    protocol, seed, limit), train (the recipe), augment (the training augmentation that ran:
    pipeline.training.augment), encode (how inputs become codes: {"views":
    none|mirror|mirror+shift, "precision": fp32|bf16}; absent = the defaults none/fp32;
    `pipeline.model.settings.encode_settings`), epochs_done, weights_sha256 (sha256 of
    model.safetensors as written), format, and for CNNH method_info (its stage 1: seconds, objective
    per sweep).
The method is not part of the model id: what it changes in the codes, the weights' hash covers
(and the head it implies is in model_options).
`load_checkpoint` adds config["model_sha256"] (the sha256 of the weights file it read) and
config["model_id"] (`model_id`: what names the codes), and refuses a weights file whose hash,
tensor names or shapes do not match the config, naming the file.

Validation (`validate_config`, run by `read_config`, so before any weights are read or any work
is done): config.json is plain JSON that nothing signs, so its numbers are checked against
documented ranges (LIMITS; README "Checkpoints") and its `preprocess` against the model input
(preprocess.size == input_size, preprocess.channels == in_channels). A bad config is BadInput
(the jobs exit 2).

Model id (`model_id`): sha256 of a canonical JSON document holding everything that changes the codes
a checkpoint produces: the weights' sha256 (normalisation buffers included), the architecture and
its options, bits, input channels and size, the class names, the normalised preprocessing parameters
and the encode settings (config.json `encode`: test-time views and precision,
`pipeline.model.settings.encode_settings`; the defaults hash as before they existed). Ingestion
names its output after it (OUT/<model_id[:12]>, shard metadata `aurorahash.model`), so a changed
preprocessing writes a new set of shards instead of mixing incompatible codes under one name.

optimizer.safetensors (resume only; inference never reads it) holds the training state beside the
weights: the optimiser's per-parameter buffers as `state.<param index>.<name>`, the airbench
lookahead/EMA copy of the float weights and buffers as `ema.<state_dict name>` (absent before the
EMA starts, and in checkpoints written before exact resume: those resume with a fresh EMA), the
method's loss state as `loss.<name>` (DPSH's memory of outputs `loss.bank`, CNNH's stage-1 codes
`loss.targets`), and a
JSON `meta` entry in the safetensors header (step, epochs_done). config.json records its sha256
(`optimizer_sha256`). model.safetensors holds the model's state_dict only, whatever the recipe.
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING

from safetensors import SafetensorError

if TYPE_CHECKING:  # torch loads where weights are read or written: a search by id needs none
    import torch

from pipeline import storage
from pipeline.errors import BadInput

FORMAT = "aurorahash-checkpoint/1"
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
OPTIM_FILE = "optimizer.safetensors"
REQUIRED = ("arch", "bits", "classes", "in_channels", "input_size")
MODEL_ID_FORMAT = "aurorahash-model-id/1"

# Documented ranges of config.json values (README "Checkpoints"); inclusive.
LIMITS = {
    "bits": (1, 4096),  # the hash layer (build_model, train --bits)
    "classes": (2, 32767),  # class names; `pred` is int16; [] for a model without a class head
    "input_size": (16, 1024),  # px, square model input (= preprocess.size)
}
IN_CHANNELS = (1, 3)  # grey or RGB (= preprocess.channels)
CONFIG_LIMIT = 16 << 20  # bytes of config.json we read at most
WEIGHTS_LIMIT = 4 << 30  # bytes of a weights file we are willing to load


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
    from safetensors.torch import save as st_save

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
    """config.json of DIR, parsed and validated (BadInput naming the file otherwise)."""
    return _config_bytes_and_dict(model_dir, storage_options)[1]


def _config_bytes_and_dict(model_dir: str, storage_options: dict | None) -> tuple[bytes, dict]:
    uri = _join(model_dir, CONFIG_FILE)
    if not storage.exists(uri, storage_options):
        raise BadInput(f"{uri}: no checkpoint config here (expected {CONFIG_FILE})")
    raw = storage.read_bytes(uri, storage_options, max_bytes=CONFIG_LIMIT)
    return raw, parse_config(raw, uri)


def parse_config(raw: bytes, uri: str) -> dict:
    """config.json's bytes as a validated dict (`validate_config`); `uri` names it in errors."""
    try:
        cfg = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{uri}: not valid JSON ({exc})") from None
    if not isinstance(cfg, dict):
        raise BadInput(f"{uri}: expected a JSON object")
    missing = [k for k in REQUIRED if k not in cfg]
    if missing:
        raise BadInput(f"{uri}: checkpoint config lacks {missing}")
    validate_config(cfg, uri)
    return cfg


def _int_in(cfg: dict, key: str, lo: int, hi: int, where: str) -> int:
    v = cfg.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise BadInput(f"{where}: {key} must be an integer, not {v!r}")
    if not lo <= v <= hi:
        raise BadInput(f"{where}: {key} = {v} is outside the supported range {lo}..{hi}")
    return v


def _preprocess_config(pre, where: str):
    from pipeline.model.preprocess import PreprocessConfig

    if not isinstance(pre, dict):
        raise BadInput(f"{where}: preprocess must be a JSON object, not {type(pre).__name__}")
    try:
        pc = PreprocessConfig.from_dict(pre)
    except BadInput as exc:
        raise BadInput(f"{where}: {exc}") from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise BadInput(f"{where}: bad preprocess settings: {exc}") from None
    numbers = {
        "mean": pc.mean,
        "std": pc.std,
        "stretch_scale": (pc.stretch_scale,),
        "mask_radius": (pc.mask_radius,),
        "background_percentile": (pc.background_percentile,),
        "white_percentile": (pc.white_percentile,),
    }
    for name in ("background", "white"):
        v = getattr(pc, name)
        if isinstance(v, bool):
            raise BadInput(f"{where}: preprocess {name} must be 'auto', a number or null")
        if isinstance(v, int | float):
            numbers[name] = (v,)
    for name, vals in numbers.items():
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in vals):
            raise BadInput(f"{where}: preprocess {name} must be finite numbers, not {vals!r}")
    for name in ("background_percentile", "white_percentile"):
        if not 0 <= getattr(pc, name) <= 100:
            raise BadInput(f"{where}: preprocess {name} must be in [0, 100]")
    return pc


def _check_classes(classes, headless: bool, where: str) -> None:
    """2..32767 distinct names; [] only for a model without a class head (trained without
    labels: nothing to name, and `pred` is -1 for all its frames)."""
    lo, hi = LIMITS["classes"]
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise BadInput(f"{where}: classes must be a list of class names")
    if headless and not classes:
        return
    if not lo <= len(classes) <= hi or len(set(classes)) != len(classes):
        raise BadInput(
            f"{where}: classes must be {lo}..{hi} distinct names (or [] for a model without a "
            f"class head, model_options.classifier 'none'), not {len(classes)}"
        )


def validate_config(cfg: dict, where: str = CONFIG_FILE, require_preprocess: bool = False) -> None:
    """Refuse (BadInput) a config whose values are outside LIMITS or whose preprocessing does not
    produce the model's input. Only checks; changes nothing."""
    from pipeline.model.archs import ARCHS

    if cfg.get("arch") not in ARCHS:
        raise BadInput(f"{where}: arch {cfg.get('arch')!r} is not one of {ARCHS}")
    _int_in(cfg, "bits", *LIMITS["bits"], where)
    size = _int_in(cfg, "input_size", *LIMITS["input_size"], where)
    ch = cfg.get("in_channels")
    if isinstance(ch, bool) or ch not in IN_CHANNELS:
        raise BadInput(f"{where}: in_channels must be one of {IN_CHANNELS}, not {ch!r}")
    opts = cfg.get("model_options")
    if opts is not None and not isinstance(opts, dict):
        raise BadInput(f"{where}: model_options must be a JSON object")
    _check_classes(cfg.get("classes"), (opts or {}).get("classifier") == "none", where)
    from pipeline.model.settings import encode_settings

    try:
        encode_settings(cfg)
    except BadInput as exc:
        raise BadInput(f"{where}: {exc}") from None
    pre = cfg.get("preprocess")
    if pre is None:
        if require_preprocess:
            raise BadInput(f"{where}: config lacks 'preprocess' (ingestion needs it)")
        return
    pc = _preprocess_config(pre, where)
    if pc.size != size or pc.channels != ch:
        raise BadInput(
            f"{where}: preprocess gives {pc.channels} x {pc.size} x {pc.size} inputs, the model "
            f"takes {ch} x {size} x {size} (in_channels, input_size): they must agree"
        )


def _canonical_preprocess(pre: dict) -> dict:
    """Preprocess settings with defaults filled in and numbers as floats (5 == 5.0)."""
    from pipeline.model.preprocess import PreprocessConfig

    d = PreprocessConfig.from_dict(dict(pre)).to_dict()
    out = {}
    for k, v in d.items():
        if k in ("size", "channels") or isinstance(v, bool) or v is None or isinstance(v, str):
            out[k] = v
        elif isinstance(v, list | tuple):
            out[k] = [float(x) for x in v]
        else:
            out[k] = float(v)
    return out


def model_id(cfg: dict, weights_sha256: str | None = None) -> str:
    """The id of the codes this checkpoint produces (64 hex digits, deterministic): sha256 of
    the canonical JSON of the weights' sha256, arch, model_options, bits, in_channels,
    input_size, classes, the canonical preprocess settings and the encode settings."""
    from pipeline.model.settings import settings_for_id

    sha = weights_sha256 or cfg.get("model_sha256") or cfg.get("weights_sha256")
    if not sha:
        raise BadInput("model id: no sha256 of the weights")
    opts = {k: v for k, v in (cfg.get("model_options") or {}).items() if v is not None}
    pre = cfg.get("preprocess")
    doc = {
        "format": MODEL_ID_FORMAT,
        "weights_sha256": str(sha),
        "arch": cfg["arch"],
        "model_options": opts,
        "bits": int(cfg["bits"]),
        "in_channels": int(cfg["in_channels"]),
        "input_size": int(cfg["input_size"]),
        "classes": list(cfg["classes"]),
        "preprocess": None if pre is None else _canonical_preprocess(pre),
        "encode": settings_for_id(cfg),
    }
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _parse_safetensors(blob: bytes, uri: str, expect_sha: str | None):
    """(tensors, sha256) of a safetensors file's bytes; BadInput naming `uri` when unusable."""
    from safetensors.torch import load as st_load

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
    return tensors, sha


def _read_safetensors(uri: str, storage_options, expect_sha: str | None, what: str):
    if not storage.exists(uri, storage_options):
        raise BadInput(f"{uri}: {what} file missing")
    blob = storage.read_bytes(uri, storage_options, max_bytes=WEIGHTS_LIMIT)
    tensors, sha = _parse_safetensors(blob, uri, expect_sha)
    return tensors, sha, blob


def build_from_config(cfg: dict):
    from pipeline.model.archs import build_model

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


def _check_weights(tensors: dict, cfg: dict, uri: str) -> None:
    """Refuse weights whose names or shapes are not those of the model the config describes.

    The model is built on the meta device: shapes only, no memory and no initialisation."""
    import torch

    with torch.device("meta"):
        expected = build_from_config(cfg).state_dict()
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


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint opened once per job: its files as bytes, its validated config, its model id.

    Why a value: the driver reads and checks the checkpoint once (`open_checkpoint`), and ingest's
    encoder actors and `search --image` build their model from these bytes (`build_model`)
    instead of reading the checkpoint again. Picklable, so Ray ships it to other nodes.
    """

    uri: str
    files: dict  # {config.json: bytes, model.safetensors: bytes}
    config: dict  # validated; plus model_sha256 and model_id
    id: str  # model_id: what names the codes
    weights_sha: str

    @property
    def nbits(self) -> int:
        return int(self.config["bits"])

    @property
    def classes(self) -> list:
        return list(self.config["classes"])

    @property
    def preprocess(self) -> dict | None:
        pre = self.config.get("preprocess")
        return None if pre is None else dict(pre)

    @property
    def settings(self) -> dict:
        """The encode settings (`pipeline.model.settings.encode_settings`)."""
        from pipeline.model.settings import encode_settings

        return encode_settings(self.config)

    def build_model(self, device: str = "cpu") -> torch.nn.Module:
        """The model in eval mode on `device`, from the weights' bytes in memory."""
        from safetensors.torch import load as st_load

        model = build_from_config(self.config)
        model.load_state_dict(st_load(self.files[MODEL_FILE]))
        return model.to(device).eval()


def open_checkpoint(
    model_dir: str, storage_options: dict | None = None, require_preprocess: bool = False
) -> Checkpoint:
    """Read DIR's config and weights once and validate them (BadInput naming the file): config
    values in range, preprocessing that gives the model's input (required by jobs that read
    archive frames), weights whose hash, names and shapes match the config."""
    raw, cfg = _config_bytes_and_dict(model_dir, storage_options)
    if require_preprocess:
        validate_config(cfg, _join(model_dir, CONFIG_FILE), require_preprocess=True)
    uri = _join(model_dir, MODEL_FILE)
    tensors, sha, blob = _read_safetensors(
        uri, storage_options, cfg.get("weights_sha256"), "weights"
    )
    _check_weights(tensors, cfg, uri)
    cfg = dict(cfg, model_sha256=sha)
    cfg["model_id"] = model_id(cfg, sha)
    files = {CONFIG_FILE: raw, MODEL_FILE: blob}
    return Checkpoint(model_dir, files, cfg, cfg["model_id"], sha)


def open_model(uri: str, storage_options: dict | None = None) -> Checkpoint:
    """A job's --model checkpoint, opened once, with the preprocessing that reading archive
    frames needs (BadInput naming it when unusable)."""
    try:
        return open_checkpoint(uri, storage_options, require_preprocess=True)
    except BadInput as exc:
        raise BadInput(f"--model {uri}: {exc}") from None
    except FileNotFoundError as exc:
        raise BadInput(f"--model {uri}: incomplete checkpoint ({exc})") from None


def load_checkpoint(model_dir: str, device: str = "cpu", storage_options: dict | None = None):
    """(model in eval mode on `device`, config) from DIR; never unpickles. Errors are BadInput."""
    ck = open_checkpoint(model_dir, storage_options)
    return ck.build_model(device), ck.config


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
