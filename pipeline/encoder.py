"""HashEncoder: the callable class that Ray Data runs in an actor pool (`map_batches`).

Each actor loads the checkpoint once, on its assigned GPU when Ray gave it one (`num_gpus=1`:
Ray sets CUDA_VISIBLE_DEVICES, so the device is `cuda:0` inside the actor), on the CPU otherwise.
The checkpoint travels as bytes through the object store (`model_files`), so workers on other
nodes need no access to the driver's model directory or bucket.

`encode_inputs` is THE encode function: model inputs -> relaxed codes and class log-probabilities,
under the checkpoint's encode settings (`encode_settings`: test-time views and precision). Train's
final evaluation, `evaluate`, the benchmarks and `HashEncoder` all call it, so the codes a run
measures are the codes ingest stores (tests/test_encode_parity.py checks this bit for bit).

`HashEncoder.encode(x)` is the model step on its own (also used by the benchmark's bare loop);
`__call__` takes an Arrow batch of `pipeline.datasource.ROW_SCHEMA` rows (raw frames as read),
preprocesses the `kind == "frame"` rows on the actor's device (`pipeline.frame_rows.
model_inputs`, at most `batch_size` frames at a time), encodes them and returns the batch without
the pixel columns plus `code` (packed little-endian uint64 bytes, DESIGN.md "Packed codes"),
`pred` (int16), `score` (float32, probability of `pred`), `cost` and `prep_cost` (model and
preprocessing seconds per row, for reports) and `encoder` (JSON: the actor's node, pid, device
and CUDA_VISIBLE_DEVICES, for the job's summary). Rows of other kinds pass through with a zero
code, pred -1 and score NaN; so do the frames of a model without a class head (DPSH, DSH), whose
codes are real but which predicts no class. A frame that preprocessing rejects becomes an "error"
row.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time

import numpy as np
import pyarrow as pa

from pipeline import storage
from pipeline.errors import BadInput

log = logging.getLogger("aurorahash.encoder")

MODEL_FILE_LIMIT = 4 << 30  # bytes per checkpoint file we are willing to load


CHECKPOINT_FILES = ("config.json", "model.safetensors")  # DESIGN.md: safetensors beside JSON

# How `HashEncoder` turns model outputs into codes. Part of the model id
# (`pipeline.checkpoint.model_id`): change anything here that changes the codes (a threshold, test-
# time augmentation, the packing) and say so in this dict, so that the new codes get a new id.
# `frames` too: the readers' orientation changes the codes of the same archive file.
ENCODE_SETTINGS = {
    "frames": "THEMIS PGM and CDF rows flipped top to bottom (pyucalgarysrs), docs/READERS.md",
    "input": "preprocess(frame) as float32 (C, S, S), one forward pass in eval mode",
    "tta": "none",
    "bit": "h > 0",
    "layout": "1",  # pipeline.store.LAYOUT: little-endian uint64 words, bit j -> word j // 64
}

# The settings a checkpoint may choose (config.json "encode"); the defaults are what
# ENCODE_SETTINGS describes, so checkpoints written before the settings existed keep their id.
VIEWS = ("none", "mirror", "mirror+shift")
PRECISIONS = ("fp32", "bf16")
DEFAULT_ENCODE = {"views": "none", "precision": "fp32"}


def encode_settings(config: dict | None) -> dict:
    """The checkpoint's encode settings (defaults filled in), validated."""
    raw = (config or {}).get("encode") or {}
    if not isinstance(raw, dict):
        raise BadInput(f"config encode must be an object, not {type(raw).__name__}")
    unknown = set(raw) - set(DEFAULT_ENCODE)
    if unknown:
        raise BadInput(f"config encode: unknown settings {sorted(unknown)}")
    out = {**DEFAULT_ENCODE, **raw}
    if out["views"] not in VIEWS:
        raise BadInput(f"config encode views must be one of {VIEWS}, not {out['views']!r}")
    if out["precision"] not in PRECISIONS:
        raise BadInput(f"encode precision must be one of {PRECISIONS}, not {out['precision']!r}")
    return out


def settings_for_id(config: dict | None) -> dict:
    """What `pipeline.checkpoint.model_id` hashes for the encode step."""
    s = encode_settings(config)
    if s == DEFAULT_ENCODE:
        return ENCODE_SETTINGS
    return {**ENCODE_SETTINGS, "tta": s["views"], "precision": s["precision"]}


def _views(x, views: str):
    """Test-time views with weights: none; + mirror; + mirrors of 1-px translations."""
    import torch

    if views == "none":
        return [(x, 1.0)]
    if views == "mirror":
        return [(x, 0.5), (x.flip(-1), 0.5)]
    s = x.shape[-1]
    xp = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    a, b = xp[..., 0:s, 0:s], xp[..., 2 : s + 2, 2 : s + 2]
    return [
        (x, 0.25),
        (x.flip(-1), 0.25),
        (a, 0.125),
        (a.flip(-1), 0.125),
        (b, 0.125),
        (b.flip(-1), 0.125),
    ]


def encode_inputs(model, x, settings: dict, device: str = "cpu"):
    """float32 model inputs (n, C, S, S), NumPy or torch on any device -> (h float32 (n, bits),
    log-probabilities (n, K)) as NumPy arrays.

    The one encode step: eval mode, no grad, channels_last on the CPU, the settings' views
    averaged (h and log-probabilities alike) under the settings' precision. Codes are
    `kernels.pack_codes(h)` (bit = h > 0). A model without a class head (DPSH, DSH: it returns
    logits None) gives log-probabilities None.
    """
    import torch

    s = encode_settings({"encode": settings})
    model.eval()
    dev = torch.device(device)
    with torch.inference_mode():
        if isinstance(x, torch.Tensor):  # preprocessed on the device already (ingest)
            xb = x.to(dev, torch.float32)
        else:
            xb = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32)).to(dev)
        if dev.type == "cpu":
            xb = xb.contiguous(memory_format=torch.channels_last)
        h_acc, l_acc = 0.0, 0.0
        for v, w in _views(xb, s["views"]):
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=s["precision"] == "bf16"):
                h, logits = model(v)
            h_acc = h_acc + w * h.float()
            if logits is not None:
                l_acc = l_acc + w * torch.log_softmax(logits.float(), 1)
        logp = l_acc.cpu().numpy() if logits is not None else None
        return h_acc.cpu().numpy(), logp


def read_model_files(model_uri: str, storage_options: dict | None = None) -> dict[str, bytes]:
    """The checkpoint files that inference needs (local or s3:// directory), as bytes."""
    fs, path, protocol = storage.split_uri(model_uri, storage_options)
    if not fs.exists(path) or not fs.isdir(path):
        raise BadInput(f"model {model_uri}: not a checkpoint directory")
    out = {}
    for name in CHECKPOINT_FILES:
        uri = storage.join_uri(protocol, path.rstrip("/") + "/" + name)
        if not storage.exists(uri, storage_options):
            raise BadInput(f"model {model_uri}: {name} missing")
        out[name] = storage.read_bytes(uri, storage_options, max_bytes=MODEL_FILE_LIMIT)
    return out


def materialize(model_files: dict[str, bytes], where: str | None = None) -> str:
    """Write checkpoint files into a fresh local directory (for `load_checkpoint`)."""
    d = tempfile.mkdtemp(prefix="aurorahash-model-", dir=where)
    for name, data in model_files.items():
        if "/" in name or name in (".", ".."):
            raise BadInput(f"unusable checkpoint file name {name!r}")
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    return d


def load_model(model_files: dict[str, bytes], device: str = "cpu"):
    """(model, config) from checkpoint bytes, via `pipeline.checkpoint.load_checkpoint`."""
    from pipeline.checkpoint import load_checkpoint

    d = materialize(model_files)
    try:
        return load_checkpoint(d, device=device)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def ray_assigned_device() -> str:
    """`cuda:0` inside a Ray worker that was given a GPU, else `cpu`."""
    try:
        import ray

        if ray.is_initialized() and ray.get_gpu_ids():
            import torch

            if torch.cuda.is_available():
                return "cuda:0"  # Ray narrowed CUDA_VISIBLE_DEVICES to the assigned GPU
    except Exception:  # not in a worker, or no CUDA: the CPU it is
        pass
    return "cpu"


def input_shape(config: dict) -> tuple[int, int, int]:
    """(channels, size, size) of the model input, as preprocessing produces it."""
    if "in_channels" in config and "input_size" in config:
        size = int(config["input_size"])
        return int(config["in_channels"]), size, size
    from pipeline.preprocess import PreprocessConfig

    pc = PreprocessConfig.from_dict(dict(config["preprocess"]))
    return int(pc.channels), int(pc.size), int(pc.size)


def worker_identity(device: str) -> dict:
    """Where an encoder runs: Ray node (12 hex digits), pid, device, CUDA_VISIBLE_DEVICES."""
    node = None
    try:
        import ray

        if ray.is_initialized():
            node = ray.get_runtime_context().get_node_id()[:12]
    except Exception:  # not in a Ray worker
        pass
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
    return {"node": node, "pid": os.getpid(), "device": device, "gpus": gpus}


def sync_device(device: str) -> None:
    """Wait for the device's queued work (honest per-stage times on a GPU)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


class HashEncoder:
    """Callable class for `Dataset.map_batches(HashEncoder, compute=ActorPoolStrategy(...))`."""

    def __init__(
        self,
        model_files=None,
        model_dir: str | None = None,
        device: str | None = None,
        threads: int | None = None,
        batch_size: int | None = None,
    ):
        import torch

        from pipeline.preprocess import PreprocessConfig

        if isinstance(model_files, tuple | list):  # (ObjectRef,) from ray.put
            import ray

            model_files = ray.get(model_files[0])
        if model_files is None:
            if model_dir is None:
                raise BadInput("HashEncoder needs model_files or model_dir")
            model_files = read_model_files(model_dir)
        self.device = device or ray_assigned_device()
        if threads:
            torch.set_num_threads(int(threads))
        self.model, self.config = load_model(model_files, self.device)
        self.model.eval()
        self.settings = encode_settings(self.config)
        self.preprocess = PreprocessConfig.from_dict(dict(self.config["preprocess"]))
        self.batch_size = int(batch_size) if batch_size else None
        self.nbits = int(self.config["bits"])
        self.words = max(1, -(-self.nbits // 64))
        self.identity = json.dumps(worker_identity(self.device), sort_keys=True)
        log.info(
            "HashEncoder %s (%d torch threads): %s, %d bits, encode %s",
            self.identity,
            torch.get_num_threads(),
            self.config.get("arch"),
            self.nbits,
            self.settings,
        )

    def encode(self, x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """float32 (n, C, S, S), NumPy or torch -> (codes (n, words) uint64, pred (n,) int16,
        score (n,) f32)."""
        from kernels import pack_codes

        n = len(x)
        if n == 0:
            return (
                np.zeros((0, self.words), np.uint64),
                np.zeros(0, np.int16),
                np.zeros(0, np.float32),
            )
        h, logp = encode_inputs(self.model, x, self.settings, self.device)
        codes = np.ascontiguousarray(pack_codes(h), dtype=np.uint64).reshape(n, self.words)
        if logp is None:  # no class head: no prediction (the shard says pred -1, score NaN)
            return codes, np.full(n, -1, np.int16), np.full(n, np.nan, np.float32)
        pred = logp.argmax(1)
        score = np.exp(logp[np.arange(n), pred]).astype(np.float32)
        return codes, pred.astype(np.int16), score

    def __call__(self, batch: pa.Table) -> pa.Table:
        from pipeline.frame_rows import PIXEL_COLUMNS, model_inputs, with_errors

        n = batch.num_rows
        kind = np.asarray(batch.column("kind").to_pylist(), dtype=object)
        frames = np.flatnonzero(kind == "frame")
        width = 8 * self.words
        code = np.zeros((n, width), dtype=np.uint8)
        pred = np.full(n, -1, dtype=np.int16)
        score = np.full(n, np.nan, dtype=np.float32)
        cost = np.zeros(n, dtype=np.float64)
        prep = np.zeros(n, dtype=np.float64)
        errors: dict[int, str] = {}
        step = self.batch_size or max(1, len(frames))
        for k in range(0, len(frames), step):
            part = frames[k : k + step]
            t0 = time.perf_counter()
            inp = model_inputs(batch, self.preprocess, self.device, rows=part)
            sync_device(self.device)
            t1 = time.perf_counter()
            c, p, s = self.encode(inp.x)
            prep[part] = (t1 - t0) / len(part)
            cost[part] = (time.perf_counter() - t1) / len(part)
            code[inp.rows] = c.astype("<u8").view(np.uint8).reshape(len(inp.rows), width)
            pred[inp.rows] = p
            score[inp.rows] = s
            errors.update(inp.errors)
        out = batch.drop_columns([c for c in PIXEL_COLUMNS if c in batch.column_names])
        out = with_errors(out, errors)  # frames preprocessing rejected: quarantined
        code_arr = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(width), n, [None, pa.py_buffer(code.tobytes())]
        )
        return (
            out.append_column("cost", pa.array(cost))
            .append_column("prep_cost", pa.array(prep))
            .append_column("code", code_arr)
            .append_column("pred", pa.array(pred))
            .append_column("score", pa.array(score))
            .append_column("encoder", pa.array([self.identity] * n, pa.string()))
        )
