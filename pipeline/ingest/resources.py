"""How an ingest job uses its cluster: encoder actors and their resources, read slots, batch
size; chosen from what the nodes offer, each one overridable (IngestConfig, CLI options).

GPU nodes. Each GPU takes `actors_per_gpu` encoder actors (fractional `num_gpus`): Ray pins every
actor to one GPU and narrows its CUDA_VISIBLE_DEVICES to it, so on a node with several GPUs each
actor sees its own. Two actors share a GPU by default where the model is small (weights under
SMALL_MODEL_BYTES) and the GPU has at least 8 CPUs beside it: while one actor is between calls
(Arrow, host-device copies, Python), the other keeps the GPU busy; a big model, or a node with
few CPUs, gets one. An actor reserves at most one CPU, and the actors of a node at most half of
its CPUs: the rest is for reading. Read tasks take one CPU each, so a node reads as many files
at once as it has CPUs left; preprocessing runs on the GPUs. Batch: 256 frames per model call.

CPU-only clusters (as before issue 10): half the CPUs as actors (at least one CPU always left
for read tasks, or the pipeline starves), each with its node's CPUs shared among the actors
that land there as torch threads; read tasks at 0.75 CPU (not the actors' 1.0, or Ray Data
fuses reads into the actors: see `pipeline.ingest.driver._run_pipeline`); batch 64.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

SMALL_MODEL_BYTES = 1 << 30
GPU_BATCH, CPU_BATCH = 256, 64


@dataclass(frozen=True)
class Node:
    cpus: float
    gpus: float = 0.0


@dataclass(frozen=True)
class EncoderPlan:
    actors: int
    gpus_per_actor: float  # 0 on CPU-only clusters
    cpus_per_actor: float
    threads: int | None  # torch threads per actor
    read_cpus: float  # CPU slots per read task
    read_tasks: int | None  # read tasks at once at most (None: as many as the CPUs take)
    read_slots: int  # read tasks that fit beside the actors (reported)
    batch_size: int  # frames per model call at most

    def to_dict(self) -> dict:
        return asdict(self)


def plan_encoders(
    nodes: list[Node],
    model_bytes: int,
    actors: int | None = None,
    actors_per_gpu: int | None = None,
    batch_size: int | None = None,
    read_cpus: float | None = None,
    read_tasks: int | None = None,
    threads: int | None = None,
) -> EncoderPlan:
    """The plan for these nodes (alive ones, with their logical CPUs and GPUs)."""
    gpu_nodes = [n for n in nodes if n.gpus >= 1]
    if gpu_nodes:
        return _gpu_plan(
            nodes, gpu_nodes, model_bytes, actors, actors_per_gpu, batch_size, read_cpus,
            read_tasks, threads,
        )  # fmt: skip
    return _cpu_plan(nodes, actors, batch_size, read_cpus, read_tasks, threads)


def _gpu_plan(
    nodes, gpu_nodes, model_bytes, actors, per_gpu, batch, read_cpus, read_tasks, threads
):
    cpus_per_gpu = min(n.cpus / int(n.gpus) for n in gpu_nodes)
    if per_gpu is None:
        per_gpu = 2 if model_bytes < SMALL_MODEL_BYTES and cpus_per_gpu >= 8 else 1
    slots = sum(int(n.gpus) * per_gpu for n in gpu_nodes)
    n_actors = max(1, min(actors or slots, slots))
    cpus_per_actor = min(1.0, min(n.cpus / (2 * int(n.gpus) * per_gpu) for n in gpu_nodes))
    cpus_per_actor = math.floor(cpus_per_actor * 100) / 100
    read_cpus = read_cpus or 1.0
    left = sum(n.cpus for n in nodes) - n_actors * cpus_per_actor
    return EncoderPlan(
        actors=n_actors,
        gpus_per_actor=1.0 / per_gpu,
        cpus_per_actor=cpus_per_actor,
        threads=threads or 1,  # the model and preprocessing run on the GPU
        read_cpus=read_cpus,
        read_tasks=read_tasks,
        read_slots=_slots(left, read_cpus, read_tasks),
        batch_size=batch or GPU_BATCH,
    )


def _cpu_plan(nodes, actors, batch, read_cpus, read_tasks, threads):
    cpu_nodes = [n for n in nodes if n.cpus > 0]
    cpus = int(sum(n.cpus for n in cpu_nodes)) or 1
    n_actors = max(1, min(actors or max(1, cpus // 2), max(1, cpus - 1)))
    node_cpus = int(min((n.cpus for n in cpu_nodes), default=cpus))
    per_node = -(-n_actors // max(1, len(cpu_nodes)))
    read_cpus = read_cpus or 0.75
    if read_cpus == 1.0:  # the actors' resources: Ray Data would fuse reads into the actors
        read_cpus = 0.5
    return EncoderPlan(
        actors=n_actors,
        gpus_per_actor=0.0,
        cpus_per_actor=1.0,
        threads=threads or max(1, node_cpus // per_node),
        read_cpus=read_cpus,
        read_tasks=read_tasks,
        read_slots=_slots(cpus - n_actors, read_cpus, read_tasks),
        batch_size=batch or CPU_BATCH,
    )


def _slots(cpus_left: float, read_cpus: float, read_tasks: int | None) -> int:
    slots = max(0, math.floor(cpus_left / read_cpus + 1e-9))
    return min(slots, read_tasks) if read_tasks else slots


def cluster_nodes() -> list[Node]:
    """The alive nodes of the Ray cluster this process is connected to."""
    import ray

    out = []
    for n in ray.nodes():
        if n.get("Alive"):
            r = n.get("Resources", {})
            out.append(Node(cpus=float(r.get("CPU", 0)), gpus=float(r.get("GPU", 0))))
    return out
