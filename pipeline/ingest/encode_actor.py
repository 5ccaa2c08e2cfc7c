"""HashEncoder: the callable class that Ray Data runs in an actor pool (`map_batches`).

Each actor builds the model once from the job's checkpoint value
(`pipeline.model.checkpoint.Checkpoint`: the files as bytes, validated on the driver), on its
assigned GPU when Ray gave it one (`num_gpus=1`: Ray sets CUDA_VISIBLE_DEVICES, so the device is
`cuda:0` inside the actor), on the CPU otherwise. The value travels through the object store, so
workers on other nodes need no access to the driver's model directory or bucket.

`HashEncoder.encode(x)` is the model step: the one encode step
(`pipeline.model.encode.encode_inputs`, under the checkpoint's encode settings) and the packing.
`__call__` takes an Arrow batch of `pipeline.ingest.read.ROW_SCHEMA` rows (raw frames as read),
preprocesses the frame rows on the actor's device (`pipeline.ingest.frame_rows.model_inputs`, at
most `batch_size` frames at a time), encodes them and returns the batch without the pixel
columns plus `code` (packed little-endian uint64 bytes, DESIGN.md "Packed codes"), `pred`
(int16), `score` (float32, probability of `pred`), `cost` and `prep_cost` (model and
preprocessing seconds per row, for reports) and `encoder` (JSON: the actor's node, pid, device
and CUDA_VISIBLE_DEVICES, for the job's summary). Rows of other kinds pass through with a zero
code, pred -1 and score NaN; so do the frames of a model without a class head (DPSH, DSH), whose
codes are real but which predicts no class. A frame that preprocessing rejects becomes an error
row (`pipeline.ingest.rows.RowKind`).
"""

from __future__ import annotations

import json
import logging
import os
import time

import numpy as np
import pyarrow as pa

from pipeline.model.encode import encode_inputs, sync_device

log = logging.getLogger("aurorahash.encoder")


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


class HashEncoder:
    """Callable class for `Dataset.map_batches(HashEncoder, compute=ActorPoolStrategy(...))`."""

    def __init__(
        self,
        checkpoint,
        device: str | None = None,
        threads: int | None = None,
        batch_size: int | None = None,
    ):
        """`checkpoint`: a `Checkpoint`, or `(ObjectRef,)` of one from `ray.put`."""
        import torch

        from pipeline.ingest.actor_exit import exit_without_teardown
        from pipeline.model.preprocess import PreprocessConfig

        exit_without_teardown()  # a released actor must not linger in teardown (issue 20)

        if isinstance(checkpoint, tuple | list):  # (ObjectRef,) from ray.put
            import ray

            checkpoint = ray.get(checkpoint[0])
        self.device = device or ray_assigned_device()
        if threads:
            torch.set_num_threads(int(threads))
        self.model = checkpoint.build_model(self.device)
        self.config = checkpoint.config
        self.model.eval()
        self.settings = checkpoint.settings
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
        from pipeline.ingest import frame_rows

        n = batch.num_rows
        frames = frame_rows.frame_row_indices(batch)
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
            inp = frame_rows.model_inputs(batch, self.preprocess, self.device, rows=part)
            sync_device(self.device)
            t1 = time.perf_counter()
            c, p, s = self.encode(inp.x)
            prep[part] = (t1 - t0) / len(part)
            cost[part] = (time.perf_counter() - t1) / len(part)
            code[inp.rows] = c.astype("<u8").view(np.uint8).reshape(len(inp.rows), width)
            pred[inp.rows] = p
            score[inp.rows] = s
            errors.update(inp.errors)
        out = batch.drop_columns([c for c in frame_rows.PIXEL_COLUMNS if c in batch.column_names])
        out = frame_rows.with_errors(out, errors)  # frames preprocessing rejected: quarantined
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
