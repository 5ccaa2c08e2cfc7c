"""How ingest sizes its actors, reads and batches from the cluster (pipeline.ingest.resources)."""

from __future__ import annotations

import pytest

from pipeline.errors import BadInput
from pipeline.ingest.resources import SMALL_MODEL_BYTES, Node, plan_encoders

SMALL, BIG = 5 << 20, SMALL_MODEL_BYTES + 1


def test_one_gpu_node_small_model_two_actors_share_the_gpu_the_rest_reads():
    p = plan_encoders([Node(cpus=16, gpus=1)], SMALL)
    assert (p.actors, p.gpus_per_actor, p.cpus_per_actor) == (2, 0.5, 1.0)
    assert p.read_cpus == 1.0 and p.read_slots == 14 and p.batch_size == 256
    assert p.threads == 1  # preprocessing and model run on the GPU


def test_big_model_or_few_cpus_one_actor_per_gpu():
    assert plan_encoders([Node(cpus=16, gpus=1)], BIG).actors == 1
    p = plan_encoders([Node(cpus=8, gpus=2)], SMALL)  # 4 CPUs per GPU
    assert (p.actors, p.gpus_per_actor) == (2, 1.0)
    assert p.cpus_per_actor == 1.0 and p.read_slots == 6


def test_gpu_nodes_with_few_cpus_keep_half_of_them_for_reading():
    """The test cluster of tests/test_ingest_gpus.py: 2 nodes of 2 CPUs and 2 GPUs."""
    p = plan_encoders([Node(0, 0), Node(2, 2), Node(2, 2)], SMALL)
    assert (p.actors, p.gpus_per_actor, p.cpus_per_actor) == (4, 1.0, 0.5)
    assert p.read_slots == 2


def test_gpu_overrides():
    nodes = [Node(cpus=32, gpus=4)]
    p = plan_encoders(nodes, SMALL, actors_per_gpu=3, batch_size=512, read_tasks=10)
    assert (p.actors, p.gpus_per_actor) == (12, 1 / 3)
    assert p.batch_size == 512 and p.read_tasks == 10 and p.read_slots == 10
    p = plan_encoders(nodes, SMALL, actors=3, actors_per_gpu=1, read_cpus=2.0, encoder_threads=4)
    assert (p.actors, p.gpus_per_actor, p.read_cpus, p.threads) == (3, 1.0, 2.0, 4)
    assert p.read_slots == (32 - 3) // 2
    p = plan_encoders(nodes, SMALL, actors=99, actors_per_gpu=1)
    assert p.actors == 4  # one per GPU
    (note,) = p.adjusted  # said, not silent
    assert note.startswith("--actors 99: the cluster's GPUs take 4 actor(s) at 1 per GPU")


def test_cpu_only_as_before():
    p = plan_encoders([Node(cpus=2)], SMALL)
    assert (p.actors, p.gpus_per_actor, p.cpus_per_actor, p.threads) == (1, 0.0, 1.0, 2)
    assert p.read_cpus == 0.75 and p.read_slots == 1 and p.batch_size == 64
    p = plan_encoders([Node(cpus=16), Node(cpus=16)], SMALL)
    assert (p.actors, p.threads) == (16, 2)
    p = plan_encoders([Node(cpus=4)], SMALL, actors=9)
    assert p.actors == 3  # one CPU left to read
    assert p.adjusted and p.adjusted[0].startswith("--actors 9: 4 CPU(s) take 3 actor(s)")


def test_read_cpus_of_the_actors_refused_on_cpu_only_clusters():
    """Read tasks must not ask for the actors' resources (Ray Data would fuse them): refused,
    not silently turned into another value; with GPUs 1 is the default."""
    with pytest.raises(BadInput, match=r"--read-cpus 1 on a CPU-only cluster.*fuses"):
        plan_encoders([Node(cpus=4)], SMALL, read_cpus=1.0)
    assert plan_encoders([Node(cpus=4)], SMALL, read_cpus=0.9).read_cpus == 0.9
    assert plan_encoders([Node(cpus=4)], SMALL, read_cpus=2.0).read_slots == 1
    assert plan_encoders([Node(cpus=16, gpus=1)], SMALL, read_cpus=1.0).read_cpus == 1.0


def test_what_the_cluster_takes_as_given_is_not_adjusted():
    assert plan_encoders([Node(cpus=16, gpus=1)], SMALL, actors=2).adjusted == ()
    assert plan_encoders([Node(cpus=4)], SMALL, actors=3, rows_per_block=64).adjusted == ()


def test_blocks_are_at_most_one_model_call():
    p = plan_encoders([Node(cpus=4)], SMALL, rows_per_block=16)
    assert (p.block_rows, p.batch_size) == (16, 64)
    assert plan_encoders([Node(cpus=4)], SMALL).block_rows == 64
    p = plan_encoders([Node(cpus=4)], SMALL, rows_per_block=100)  # past the default batch
    assert p.block_rows == 64 and "--rows-per-block 100" in p.adjusted[0]
    with pytest.raises(BadInput, match="--rows-per-block 100 must be at most --batch-size 50"):
        plan_encoders([Node(cpus=4)], SMALL, rows_per_block=100, batch_size=50)
