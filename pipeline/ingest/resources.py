"""How an ingest job uses its cluster: encoder actors and their resources, read slots, batch
size; chosen from what the nodes offer, each one overridable (`EncodingOptions`, CLI options).
A value given that the cluster cannot take as it is, is never changed silently: it is refused
(BadInput: exit 2), or lowered where fewer serve (more actors than the cluster takes, a block
larger than the batch) and the plan's `adjusted` says so (logged as a warning, and in the job
summary's `resources`).

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
that land there as torch threads; read tasks at 0.75 CPU (never the actors' 1.0, or Ray Data
fuses reads into the actors: see `pipeline.ingest.driver._run_pipeline`; --read-cpus 1 is
refused there); batch 64.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from pipeline.errors import BadInput
from pipeline.ingest.config import EncodingOptions

SMALL_MODEL_BYTES = 1 << 30
GPU_BATCH, CPU_BATCH = 256, 64
CPU_ACTOR_CPUS = 1.0  # what a CPU encoder actor asks for
READ_CPUS_REFUSED = (
    "--read-cpus 1 on a CPU-only cluster: read tasks must not ask for the encoder actors' "
    "resources (1 CPU), or Ray Data fuses every read into an actor call and one big file holds "
    "back all the others; leave it out (0.75) or give another value, e.g. 0.9"
)


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
    block_rows: int  # frames per read block, so per encoder call
    adjusted: tuple[str, ...] = ()  # options the cluster could not take as given, and why

    def to_dict(self) -> dict:
        return asdict(self)


def plan_encoders(nodes: list[Node], model_bytes: int, **options) -> EncoderPlan:
    """The plan for these nodes (alive ones, with their logical CPUs and GPUs); `options` are
    `EncodingOptions` fields, None or left out: chosen here."""
    opts = EncodingOptions(**options)
    gpu_nodes = [n for n in nodes if n.gpus >= 1]
    if gpu_nodes:
        return _gpu_plan(nodes, gpu_nodes, model_bytes, opts)
    return _cpu_plan(nodes, opts)


def _gpu_plan(nodes, gpu_nodes, model_bytes: int, o: EncodingOptions) -> EncoderPlan:
    cpus_per_gpu = min(n.cpus / int(n.gpus) for n in gpu_nodes)
    per_gpu = o.actors_per_gpu
    if per_gpu is None:
        per_gpu = 2 if model_bytes < SMALL_MODEL_BYTES and cpus_per_gpu >= 8 else 1
    slots = sum(int(n.gpus) * per_gpu for n in gpu_nodes)
    adjusted = []
    if o.actors and o.actors > slots:
        adjusted.append(
            f"--actors {o.actors}: the cluster's GPUs take {slots} actor(s) at {per_gpu} per "
            f"GPU (--actors-per-gpu); using {slots}"
        )
    n_actors = min(o.actors or slots, slots)
    cpus_per_actor = min(1.0, min(n.cpus / (2 * int(n.gpus) * per_gpu) for n in gpu_nodes))
    cpus_per_actor = math.floor(cpus_per_actor * 100) / 100
    read_cpus = o.read_cpus or 1.0
    left = sum(n.cpus for n in nodes) - n_actors * cpus_per_actor
    batch = o.batch_size or GPU_BATCH
    return EncoderPlan(
        actors=n_actors,
        gpus_per_actor=1.0 / per_gpu,
        cpus_per_actor=cpus_per_actor,
        threads=o.encoder_threads or 1,  # the model and preprocessing run on the GPU
        read_cpus=read_cpus,
        read_tasks=o.read_tasks,
        read_slots=_slots(left, read_cpus, o.read_tasks),
        batch_size=batch,
        block_rows=_block_rows(o.rows_per_block, batch, adjusted),
        adjusted=tuple(adjusted),
    )


def _cpu_plan(nodes, o: EncodingOptions) -> EncoderPlan:
    cpu_nodes = [n for n in nodes if n.cpus > 0]
    cpus = int(sum(n.cpus for n in cpu_nodes)) or 1
    most = max(1, cpus - 1)  # at least one CPU left for read tasks, or the pipeline starves
    adjusted = []
    if o.actors and o.actors > most:
        adjusted.append(
            f"--actors {o.actors}: {cpus} CPU(s) take {most} actor(s) beside one CPU for read "
            f"tasks; using {most}"
        )
    n_actors = min(o.actors or max(1, cpus // 2), most)
    node_cpus = int(min((n.cpus for n in cpu_nodes), default=cpus))
    per_node = -(-n_actors // max(1, len(cpu_nodes)))
    read_cpus = o.read_cpus or 0.75
    if read_cpus == CPU_ACTOR_CPUS:
        raise BadInput(READ_CPUS_REFUSED)
    batch = o.batch_size or CPU_BATCH
    return EncoderPlan(
        actors=n_actors,
        gpus_per_actor=0.0,
        cpus_per_actor=CPU_ACTOR_CPUS,
        threads=o.encoder_threads or max(1, node_cpus // per_node),
        read_cpus=read_cpus,
        read_tasks=o.read_tasks,
        read_slots=_slots(cpus - n_actors, read_cpus, o.read_tasks),
        batch_size=batch,
        block_rows=_block_rows(o.rows_per_block, batch, adjusted),
        adjusted=tuple(adjusted),
    )


def _block_rows(rows_per_block: int | None, batch: int, adjusted: list[str]) -> int:
    """Frames per read block: --rows-per-block, at most one model call's (`EncodingOptions`
    refuses more than an explicit --batch-size; past the cluster's default it is lowered)."""
    if rows_per_block and rows_per_block > batch:
        adjusted.append(
            f"--rows-per-block {rows_per_block}: a block is one model call, at most {batch} "
            f"frames (the default --batch-size here); using {batch}"
        )
        return batch
    return rows_per_block or batch


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
