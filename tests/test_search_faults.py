"""A worker node dies in the middle of a MAP benchmark or a k-NN search on a real multi-node
Ray cluster (ray.cluster_utils.Cluster): Ray re-runs the lost tasks and the answers are the
same as the in-memory kernels', exactly. Codes on local disk and on the moto S3 server."""

from __future__ import annotations

import pytest
from code_archive import Archive, assert_equals_kernels

from pipeline import storage
from pipeline.codes import compact, search
from pipeline.synth.codes import archive_relpaths

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class KillingExecutor(search.RayExecutor):
    """Kills a worker node (raylet and its workers, no grace) once `after` results are in."""

    def __init__(self, kill, after: int = 3):
        super().__init__()
        self.kill, self.after, self.got, self.killed_at = kill, after, 0, None

    def get(self, handle):
        self.got += 1
        if self.got == self.after:
            self.kill()
            self.killed_at = self.got
        return super().get(handle)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_worker_node_lost_mid_benchmark_gives_the_same_map(ray_cluster, tmp_path, where, request):
    import ray

    c, workers = ray_cluster
    if where == "s3":
        s3 = request.getfixturevalue("s3")
        root = f"s3://{s3.bucket('codes')}/out"
        # the jobs' options: endpoint and credentials travel to the workers with the tasks
        a = Archive(root, storage.options_for(root, endpoint=s3.endpoint), nbits=64)
    else:
        a = Archive(tmp_path / "codes", nbits=64)
    a.write(archive_relpaths(240), rows=250)  # 60,000 codes
    compact.compact(a.loc, target_rows=20_000)
    night2 = [r.replace("/10/", "/11/") for r in archive_relpaths(60)]
    a.write(night2, seed=1, rows=250)  # and a night of 60 shards not compacted yet
    ray.init(address=c.address)
    try:
        victim = workers[0]
        ex = KillingExecutor(lambda: c.remove_node(victim, allow_graceful=False), after=3)
        res, m = assert_equals_kernels(a, task_rows=5_000, executor=ex, n_queries=40)
        assert ex.killed_at == 3 and m.tasks >= 8
    finally:
        ray.shutdown()
        workers.remove(victim)  # a fresh node for the next test
        workers.append(c.add_node(num_cpus=2, object_store_memory=80 * 1024 * 1024))
        c.wait_for_nodes()
