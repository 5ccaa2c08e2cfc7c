"""Ingest throughput (issue 10): the Ray job against what bounds it, on the same frames.

    python benchmarks/bench_ingest.py                     # CPU: job vs bare loop, 2,000 frames
    python benchmarks/bench_ingest.py --device cuda --frames 50000 --arch im-alexnet-sp \
        --size 224 --bits 48                              # GPU: job vs forward-only and reading

The archive is synthetic stream0 (pipeline.synth.write_archive: gzipped PGM minute files of 20
frames, 256x256 uint16 each): `--distinct` frames rendered in parallel processes, then hard
links of those files under further folders up to `--frames` (reading costs the same per file;
rendering 50,000 frames would take ~20 CPU-minutes). The model is random-init (same cost as
trained weights).

CPU (issue 10: the job >= 0.9x the bare loop). The two alternate `--repeats` times, medians:
- bare: one process, no Ray: read -> preprocess (batched per file, the one CPU path) -> model
  (batched across files) -> shard writes, each stage timed;
- ingest: `pipeline.ingest.driver.run_ingest` on a local Ray instance started once beforehand (its
  start-up reported separately); frames/s over the pipeline, plus the job's own time breakdown
  (worker-seconds per stage) and the resources it chose.

GPU (issue 10: the job >= 0.8x the model's forward-only frames/s, or, where reading is the bound,
reading that scales: >= 0.8x the read slots x one core's read rate):
- forward: the one encode step (`encode_inputs`) on device-resident inputs, after warm-up, at
  the job's call size (one file's frames, at most --batch-size) and at --batch-size;
- read, one core: the read task's body (`read_file_rows`: gunzip, parse, pack) in this process;
- read, Ray: the job's read stage alone (its read tasks and blocks, no encoder), to the driver;
- ingest: the job, as on the CPU (`--bare` adds the bare loop).
One JSON document on stdout; --json also writes it as a result file (benchmarks/_record.py:
command, commit, machine, date, figures; alone: benchmarks/results/ingest-<date>/result.json).
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _record  # noqa: E402


def _device(arg: str) -> str:
    import torch

    if arg == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return arg


def _render(job) -> None:
    from pipeline.synth import write_archive

    out, n, start, fmt, size = job
    write_archive(out, n, seed=0, fmt=fmt, size=size, start=start)


def make_archive(workdir: Path, args) -> tuple[Path, float]:
    """`args.distinct` rendered frames (in parallel), hard-linked up to `args.frames`."""
    from concurrent.futures import ProcessPoolExecutor

    distinct = min(args.distinct, args.frames)
    root = workdir / f"archive-{args.frames}-{distinct}-{args.raw_size}-{args.fmt}"
    marker = root / "_complete"
    if marker.exists():
        return root, 0.0
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    part = 200  # frames per rendering job: 10 minute files
    jobs = [
        (
            str(root / "r000" / f"part{i // part:03d}"),
            min(part, distinct - i),
            i,
            args.fmt,
            args.raw_size,
        )
        for i in range(0, distinct, part)
    ]
    with ProcessPoolExecutor(max(1, min(len(jobs), os.cpu_count() or 1))) as ex:
        list(ex.map(_render, jobs))
    base = sorted(p for p in (root / "r000").rglob("*") if p.is_file())
    per_file = distinct / len(base)
    need = int(round((args.frames - distinct) / per_file))
    for k in range(need):
        src = base[k % len(base)]
        dst = root / f"r{1 + k // len(base):03d}" / src.relative_to(root / "r000")
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.link(src, dst)
    marker.write_text("ok\n")
    return root, time.perf_counter() - t0


def make_model(workdir: Path, size: int, bits: int, arch: str) -> str:
    import torch

    from pipeline.model.archs import build_model
    from pipeline.model.checkpoint import checkpoint_exists, save_checkpoint
    from pipeline.model.preprocess import PreprocessConfig
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
    import torch

    from pipeline.codes import store
    from pipeline.ingest.encode_actor import HashEncoder
    from pipeline.model.checkpoint import open_checkpoint
    from pipeline.model.encode import sync_device
    from pipeline.model.preprocess import preprocess_frames
    from pipeline.readers import FrameError, list_archive, read_frames
    from pipeline.storage import relative_path

    t_start = time.perf_counter()
    enc = HashEncoder(open_checkpoint(model_dir), device=device)
    meta = store.ShardMeta(
        nbits=enc.nbits, model=enc.config["model_id"], classes=enc.config["classes"]
    )
    t = dict(read_s=0.0, preprocess_s=0.0, model_s=0.0, write_s=0.0)
    files = list_archive(str(archive))
    pending: list[tuple[str, list]] = []  # (file, frames) waiting for the model
    xs: list = []
    n_frames = 0

    def flush():
        nonlocal xs, pending, n_frames
        if not xs:
            return
        t0 = time.perf_counter()
        codes, pred, score = enc.encode(torch.cat(xs))
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
        t0 = time.perf_counter()
        frames = [f for f in read_frames(uri) if not isinstance(f, FrameError)]
        t1 = time.perf_counter()
        xs.append(preprocess_frames([f.pixels for f in frames], enc.preprocess, device))
        sync_device(device)
        t["read_s"] += t1 - t0
        t["preprocess_s"] += time.perf_counter() - t1
        pending.append((uri, frames))
        if sum(len(x) for x in xs) >= batch_size:
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


def ingest_run(archive: Path, model_dir: str, out: Path, args) -> dict:
    from pipeline.ingest.config import EncodingOptions, IngestConfig, options_from
    from pipeline.ingest.driver import run_ingest

    encoding = options_from(EncodingOptions, args)  # the job's --batch-size ... --rows-per-block
    cfg = IngestConfig(
        source=str(archive), out=str(out), model=model_dir, progress_interval=30, **encoding
    )
    t0 = time.perf_counter()
    s = run_ingest(cfg)
    s["job_seconds"] = round(time.perf_counter() - t0, 3)
    s["job_frames_per_s"] = round(s["frames"] / s["job_seconds"], 2)
    keep = ("frames", "files_done", "frames_per_s", "pipeline_seconds", "job_seconds")
    keep += ("job_frames_per_s", "time_breakdown_s", "resources", "encoders")
    return {k: s[k] for k in keep}


def forward_only(model_dir: str, device: str, batch: int, seconds: float) -> dict:
    """frames/s of the one encode step on inputs already on the device, after warm-up."""
    import torch

    from pipeline.model.checkpoint import load_checkpoint
    from pipeline.model.encode import encode_inputs, input_shape, sync_device
    from pipeline.model.settings import encode_settings

    model, config = load_checkpoint(model_dir, device=device)
    settings = encode_settings(config)
    x = torch.randn((batch, *input_shape(config)), device=device)
    for _ in range(3):
        encode_inputs(model, x, settings, device)
    sync_device(device)
    n, t0 = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < seconds:
        encode_inputs(model, x, settings, device)  # returns NumPy: synchronised
        n += 1
    dt = time.perf_counter() - t0
    return {"batch": batch, "calls": n, "frames_per_s": round(n * batch / dt, 1)}


def read_one_core(archive: Path, max_frames: int) -> dict:
    """The read task's body on one core (this process): decode-only frames/s."""
    from pipeline.ingest.read import FileTask, read_file_rows
    from pipeline.ingest.rows import RowKind
    from pipeline.readers import list_archive

    n, t0 = 0, time.perf_counter()
    for uri in list_archive(str(archive)):
        for t in read_file_rows(FileTask(uri, uri)):
            n += sum(k == RowKind.FRAME for k in t.column("kind").to_pylist())
        if n >= max_frames:
            break
    dt = time.perf_counter() - t0
    return {"frames": n, "seconds": round(dt, 3), "frames_per_s": round(n / dt, 1)}


def ray_read_only(archive: Path, resources: dict) -> dict:
    """The job's read stage alone (its read tasks, CPUs and blocks), rows to the driver."""
    import ray
    from ray.data import DataContext

    from pipeline.ingest.datasource import ArchiveDatasource
    from pipeline.ingest.read import FileTask
    from pipeline.readers import list_archive

    files = [FileTask(u, u) for u in list_archive(str(archive))]
    ctx = DataContext.get_current()
    old, ctx.target_max_block_size = ctx.target_max_block_size, resources["block_bytes"]
    try:
        t0 = time.perf_counter()
        ds = ray.data.read_datasource(
            ArchiveDatasource(files, {}, resources["block_rows"]),
            num_cpus=resources["read_cpus"],
            concurrency=resources["read_tasks"],
            override_num_blocks=len(files),
        )
        n = 0
        for b in ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=4):
            n += sum(k == "frame" for k in b.column("kind").to_pylist())
        dt = time.perf_counter() - t0
    finally:
        ctx.target_max_block_size = old
    return {"frames": n, "seconds": round(dt, 3), "frames_per_s": round(n / dt, 1)}


def parse_args(argv=None):
    from jobs.ingest import add_encoding_arguments

    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--distinct", type=int, default=2000, help="frames rendered; the rest linked")
    p.add_argument("--raw-size", type=int, default=256, help="archive frame size (THEMIS: 256)")
    p.add_argument("--size", type=int, default=64, help="model input size (checkpoint)")
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--arch", default="compact")
    p.add_argument("--fmt", default="pgm.gz", choices=["pgm", "pgm.gz"])
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    add_encoding_arguments(p)  # the ingest job's own options, defaults and help
    p.add_argument("--repeats", type=int, default=None, help="default 2 on CPU, 1 on GPU")
    p.add_argument("--bare", action="store_true", help="GPU: also run the bare loop")
    p.add_argument(
        "--figures", action="store_true", help="CPU: also forward-only and read rates (GPU: always)"
    )
    p.add_argument("--forward-seconds", type=float, default=5.0)
    p.add_argument("--read-sample", type=int, default=2000, help="frames read on one core")
    p.add_argument("--workdir", default=None, help="keeps the archive and model between runs")
    _record.add_json_argument(p, "ingest")
    return p.parse_args(argv)


def machine(resources: dict) -> dict:
    import ray
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "gpu": gpu,
        "torch": torch.__version__,
        "ray": ray.__version__,
        "torch_threads_bare": torch.get_num_threads(),
        "ray_resources": {k: v for k, v in resources.items() if k in ("CPU", "GPU")},
    }


def alternate(archive, model_dir, workdir, device, args, bare_too: bool) -> tuple[list, list]:
    from pipeline.ingest.resources import CPU_BATCH, GPU_BATCH

    bare, ingest = [], []
    for r in range(args.repeats):
        for kind in ("bare", "ingest") if bare_too else ("ingest",):
            out = workdir / f"out-{kind}"
            shutil.rmtree(out, ignore_errors=True)
            if kind == "bare":
                batch = args.batch_size or (GPU_BATCH if device.startswith("cuda") else CPU_BATCH)
                res = bare_loop(archive, model_dir, out, device, batch)
                bare.append(res)
            else:
                res = ingest_run(archive, model_dir, out, args)
                ingest.append(res)
            print(f"[{r}] {kind}: {res['frames_per_s']} frames/s", file=sys.stderr)
    return bare, ingest


def bound_figures(archive, model_dir, device, args, ingest: list) -> dict:
    """Forward-only and read rates beside the job's, and the ratios issue 10 asks for."""
    res = ingest[0]["resources"]
    per_file = round(ingest[0]["frames"] / max(1, ingest[0]["files_done"]))
    call = min(res["block_rows"], per_file)  # one call = one block of one file
    sizes = sorted({call, res["batch_size"]})
    forward = {b: forward_only(model_dir, device, b, args.forward_seconds) for b in sizes}
    one = read_one_core(archive, args.read_sample)
    ray_read = ray_read_only(archive, res)
    job = statistics.median(i["frames_per_s"] for i in ingest)
    reads = res["read_slots"] * one["frames_per_s"]
    return {
        "forward": list(forward.values()),
        "read_one_core": one,
        "read_ray": ray_read,
        "read_slots": res["read_slots"],
        "ratio_ingest_to_forward_at_call_size": round(job / forward[call]["frames_per_s"], 3),
        "ratio_ingest_to_forward_at_batch": round(
            job / forward[res["batch_size"]]["frames_per_s"], 3
        ),
        "ratio_ingest_to_slots_x_one_core_read": round(job / reads, 3),
        "ratio_ray_read_to_slots_x_one_core_read": round(ray_read["frames_per_s"] / reads, 3),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    import ray

    device = _device(args.device)
    gpu = device.startswith("cuda")
    args.repeats = args.repeats or (1 if gpu else 2)
    workdir = Path(args.workdir or os.path.join(tempfile.gettempdir(), "aurorahash-bench-ingest"))
    workdir.mkdir(parents=True, exist_ok=True)
    archive, synth_s = make_archive(workdir, args)
    model_dir = make_model(workdir, args.size, args.bits, args.arch)

    t0 = time.perf_counter()
    ray.init(include_dashboard=False, configure_logging=False, log_to_driver=False)
    ray_start_s = time.perf_counter() - t0
    resources = ray.cluster_resources()
    try:
        bare, ingest = alternate(archive, model_dir, workdir, device, args, not gpu or args.bare)
        figures = gpu or args.figures
        extra = bound_figures(archive, model_dir, device, args, ingest) if figures else {}
    finally:
        ray.shutdown()

    ing_fps = statistics.median(i["frames_per_s"] for i in ingest)
    result = {
        "benchmark": "ingest",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
        "machine": machine(resources),
        "setup": {
            **{k: getattr(args, k) for k in ("frames", "distinct", "fmt", "raw_size", "arch")},
            **{k: getattr(args, k) for k in ("size", "bits", "repeats")},
            "files": len(list(archive.rglob("*.pgm*"))),
            "device": device,
            "synth_seconds": round(synth_s, 2),
            "ray_start_seconds": round(ray_start_s, 2),
        },
        "ingest_frames_per_s": ing_fps,
        "ingest_job_frames_per_s": statistics.median(i["job_frames_per_s"] for i in ingest),
        **extra,
        "ingest_runs": ingest,
    }
    if bare:
        bare_fps = statistics.median(b["frames_per_s"] for b in bare)
        result.update(bare_frames_per_s=bare_fps, ratio=round(ing_fps / bare_fps, 3))
        result["bare_runs"] = bare
    print(json.dumps(result, indent=2))
    figures = {k: v for k, v in result.items() if k not in ("date", "command", "machine")}
    _record.write(args.json, figures, machine_extra=result["machine"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
