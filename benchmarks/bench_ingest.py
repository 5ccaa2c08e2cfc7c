"""Ingest throughput: the Ray job against a bare single-process loop over the same frames.

    python benchmarks/bench_ingest.py                      # CPU, 2,000 THEMIS-style frames
    python benchmarks/bench_ingest.py --device cuda        # on a GPU box (GPU-pinned actors)

Both sides read the same synthetic stream0 archive (pipeline.synth.write_archive: gzipped PGM
minute files, 20 frames of 256x256 uint16 each), run the same preprocessing, the same model
(the compact architecture at the checkpoint's input size, random weights: same cost as trained
ones) and write the same Parquet shards:

- bare: one process, no Ray: read -> preprocess -> model forward (batched across files) ->
  write, each stage timed;
- ingest: `pipeline.ingest.run_ingest` on a local Ray instance started once beforehand (its
  start-up is reported separately); frames/s over the pipeline (read tasks -> HashEncoder actor
  pool -> driver commits), plus the job's own time breakdown (worker-seconds per stage).

The two alternate `--repeats` times; the ratio uses the medians. One JSON document on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, REPO)
# Ray workers import this checkout too (when the package is not installed)
os.environ["PYTHONPATH"] = os.pathsep.join(
    [REPO] + [q for q in os.environ.get("PYTHONPATH", "").split(os.pathsep) if q]
)


def _device(arg: str) -> str:
    import torch

    if arg == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return arg


def make_archive(workdir: Path, frames: int, raw_size: int, fmt: str) -> tuple[Path, float]:
    from pipeline.synth import write_archive

    root = workdir / f"archive-{frames}-{raw_size}-{fmt}"
    marker = root / "_complete"
    if marker.exists():
        return root, 0.0
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    write_archive(str(root), frames, seed=0, fmt=fmt, size=raw_size)
    marker.write_text("ok\n")
    return root, time.perf_counter() - t0


def make_model(workdir: Path, size: int, bits: int, arch: str) -> str:
    import torch

    from pipeline.checkpoint import checkpoint_exists, save_checkpoint
    from pipeline.model import build_model
    from pipeline.preprocess import PreprocessConfig
    from pipeline.synth import CLASSES

    d = workdir / f"model-{arch}-{size}-{bits}"
    if checkpoint_exists(str(d)):
        return str(d)
    torch.manual_seed(0)
    model = build_model(arch, bits, len(CLASSES), 1, size)
    config = {
        "arch": arch,
        "bits": bits,
        "classes": list(CLASSES),
        "in_channels": 1,
        "input_size": size,
        "preprocess": PreprocessConfig(size=size, channels=1).to_dict(),
        "data": {"dataset": "none (random init: throughput benchmark)", "seed": 0},
    }
    save_checkpoint(str(d), model, config)
    return str(d)


def bare_loop(archive: Path, model_dir: str, out: Path, device: str, batch_size: int) -> dict:
    """Read, preprocess, encode and write every frame in one process, timing each stage."""
    import numpy as np

    from pipeline import store
    from pipeline.encoder import HashEncoder
    from pipeline.preprocess import PreprocessConfig, preprocess
    from pipeline.readers import FrameError, list_archive, read_frames
    from pipeline.storage import relative_path

    t_start = time.perf_counter()
    enc = HashEncoder(model_dir=model_dir, device=device)
    cfg = PreprocessConfig.from_dict(enc.config["preprocess"])
    meta = store.ShardMeta(
        nbits=enc.nbits, model=enc.config["model_id"], classes=enc.config["classes"]
    )
    t = dict(read_s=0.0, preprocess_s=0.0, model_s=0.0, write_s=0.0)
    files = list_archive(str(archive))
    pending: list[tuple[str, list]] = []  # (file, frames) waiting for the model
    xs: list[np.ndarray] = []
    n_frames = 0

    def flush():
        nonlocal xs, pending, n_frames
        if not xs:
            return
        t0 = time.perf_counter()
        codes, pred, score = enc.encode(np.stack(xs))
        t1 = time.perf_counter()
        t["model_s"] += t1 - t0
        k = 0
        for uri, frames in pending:
            rel = relative_path(uri, str(archive))
            m = len(frames)
            cols = {
                "id": [store.frame_id(rel, f.index) for f in frames],
                "source": [uri] * m,
                "frame": [f.index for f in frames],
                "site": [f.site for f in frames],
                "time": [f.time for f in frames],
                "code": codes[k : k + m],
                "label": [f.label for f in frames],
                "pred": pred[k : k + m],
                "score": score[k : k + m],
            }
            store.write_shard(store.shard_uri(str(out), rel, meta.model), cols, meta)
            k += m
            n_frames += m
        t["write_s"] += time.perf_counter() - t1
        xs, pending = [], []

    for uri in files:
        frames = []
        t0 = time.perf_counter()
        for item in read_frames(uri):
            t1 = time.perf_counter()
            t["read_s"] += t1 - t0
            if not isinstance(item, FrameError):
                xs.append(preprocess(item.pixels, cfg))
                frames.append(item)
            t0 = time.perf_counter()
            t["preprocess_s"] += t0 - t1
        pending.append((uri, frames))
        if len(xs) >= batch_size:
            flush()
    flush()
    wall = time.perf_counter() - t_start
    return {
        "frames": n_frames,
        "files": len(files),
        "seconds": round(wall, 3),
        "frames_per_s": round(n_frames / wall, 2),
        "time_breakdown_s": {k: round(v, 3) for k, v in t.items()},
    }


def ingest_run(archive: Path, model_dir: str, out: Path, batch_size: int, args) -> dict:
    from pipeline.ingest import IngestConfig, run_ingest

    cfg = IngestConfig(
        source=str(archive),
        out=str(out),
        model=model_dir,
        batch_size=batch_size,
        actors=args.actors,
        encoder_threads=args.encoder_threads,
        rows_per_block=args.rows_per_block,
        progress_interval=30,
    )
    t0 = time.perf_counter()
    s = run_ingest(cfg)
    s["job_seconds"] = round(time.perf_counter() - t0, 3)
    s["job_frames_per_s"] = round(s["frames"] / s["job_seconds"], 2)
    return s


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--raw-size", type=int, default=256, help="archive frame size (THEMIS: 256)")
    p.add_argument("--size", type=int, default=64, help="model input size (checkpoint)")
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--arch", default="compact")
    p.add_argument("--fmt", default="pgm.gz", choices=["pgm", "pgm.gz"])
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--batch-size", type=int, default=None, help="default 64 on CPU, 256 on GPU")
    p.add_argument("--actors", type=int, default=None)
    p.add_argument("--encoder-threads", type=int, default=None)
    p.add_argument("--rows-per-block", type=int, default=None)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--workdir", default=None, help="keeps the archive and model between runs")
    p.add_argument("--json", default=None, help="also write the result here")
    args = p.parse_args(argv)

    import ray
    import torch

    device = _device(args.device)
    batch = args.batch_size or (256 if device.startswith("cuda") else 64)
    workdir = Path(args.workdir or os.path.join(tempfile.gettempdir(), "aurorahash-bench-ingest"))
    workdir.mkdir(parents=True, exist_ok=True)
    archive, synth_s = make_archive(workdir, args.frames, args.raw_size, args.fmt)
    model_dir = make_model(workdir, args.size, args.bits, args.arch)

    t0 = time.perf_counter()
    ray.init(include_dashboard=False, configure_logging=False, log_to_driver=False)
    ray_start_s = time.perf_counter() - t0
    resources = ray.cluster_resources()

    bare, ingest = [], []
    try:
        for r in range(args.repeats):
            for kind in ("bare", "ingest"):
                out = workdir / f"out-{kind}"
                shutil.rmtree(out, ignore_errors=True)
                if kind == "bare":
                    res = bare_loop(archive, model_dir, out, device, batch)
                    bare.append(res)
                else:
                    res = ingest_run(archive, model_dir, out, batch, args)
                    ingest.append(res)
                print(
                    f"[{r}] {kind}: {res['frames']} frames, {res['frames_per_s']} frames/s",
                    file=sys.stderr,
                )
    finally:
        ray.shutdown()

    bare_fps = statistics.median(b["frames_per_s"] for b in bare)
    ing_fps = statistics.median(i["frames_per_s"] for i in ingest)
    job_fps = statistics.median(i["job_frames_per_s"] for i in ingest)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    result = {
        "benchmark": "ingest",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "gpu": gpu,
            "torch": torch.__version__,
            "ray": ray.__version__,
            "torch_threads_bare": torch.get_num_threads(),
            "ray_resources": {k: v for k, v in resources.items() if k in ("CPU", "GPU")},
        },
        "setup": {
            "frames": args.frames,
            "files": bare[0]["files"],
            "format": args.fmt,
            "raw_size": args.raw_size,
            "arch": args.arch,
            "input_size": args.size,
            "bits": args.bits,
            "device": device,
            "batch_size": batch,
            "repeats": args.repeats,
            "synth_seconds": round(synth_s, 2),
            "ray_start_seconds": round(ray_start_s, 2),
        },
        "bare_frames_per_s": bare_fps,
        "ingest_frames_per_s": ing_fps,
        "ingest_job_frames_per_s": job_fps,
        "ratio": round(ing_fps / bare_fps, 3),
        "ratio_job_wall": round(job_fps / bare_fps, 3),
        "bare_runs": bare,
        "ingest_runs": [
            {
                k: i[k]
                for k in (
                    "frames",
                    "files_done",
                    "frames_per_s",
                    "pipeline_seconds",
                    "job_seconds",
                    "job_frames_per_s",
                    "time_breakdown_s",
                )
            }
            for i in ingest
        ],
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
