"""Joining or starting Ray the same way in every job.

Why one place: jobs must honour --ray-address / RAY_ADDRESS, keep Ray's own logging off stdout
(stdout carries only the JSON summary), only shut down an instance they started themselves, and
leave no process of it behind (`shutdown_ray`).
"""

from __future__ import annotations

import contextlib
import logging
import os

from pipeline.lifecycle import leftovers, terminate

log = logging.getLogger("aurorahash.ray")
LEFTOVER_GRACE_S = 10.0  # how long a session's process may take to end after ray.shutdown()


def init_ray(address: str | None = None, storage_env: dict | None = None) -> bool:
    """Use this process's Ray, else join `address` / $RAY_ADDRESS, else start a local one.

    Returns True when this call started (or joined) Ray, so the caller knows to shut it down.
    `storage_env` (e.g. AWS_ENDPOINT_URL) is passed to workers through the runtime env.
    """
    import ray

    if ray.is_initialized():
        return False
    if address is None and not os.environ.get("RAY_ADDRESS"):  # our own instance: no metrics
        os.environ.setdefault("RAY_enable_metrics_collection", "0")  # server, no usage report
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # "local": a new instance of our own. Without it ray.init() joins whatever cluster the
    # machine's last `ray start` (or a test's Cluster) recorded, even a dead one, and waits.
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    kwargs = dict(
        include_dashboard=False,
        configure_logging=True,
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    env = {k: v for k, v in (storage_env or {}).items() if v}
    if env:
        kwargs["runtime_env"] = {"env_vars": env}
    with terminate.kept():  # ray.init sets SIGTERM handlers of its own
        ray.init(address=address, **kwargs)
    return True


@contextlib.contextmanager
def ray_session(address: str | None = None, storage_env: dict | None = None):
    started = init_ray(address, storage_env)
    try:
        yield
    finally:
        if started:
            shutdown_ray()


def _own_node() -> tuple[int | None, list]:
    """(raylet pid, processes) of the Ray node this process started; (None, []) when it joined
    a cluster (whose processes are not ours to end)."""
    import ray

    node = getattr(ray._private.worker, "_global_node", None)
    infos = getattr(node, "all_processes", None) or {}
    pids = [i.process.pid for group in infos.values() for i in group if i.process is not None]
    procs = [p for p in map(leftovers.proc, pids) if p is not None]
    raylet = infos.get("raylet") or [None]
    return (raylet[0].process.pid if raylet[0] is not None else None), procs


def shutdown_ray(grace: float = LEFTOVER_GRACE_S) -> list:
    """`ray.shutdown()`, then make sure that no process of a node this job started outlives it:
    its own processes, the raylet's children, and workers that had already left the raylet
    (they carry RAY_RAYLET_PID) get `grace` s to end, then SIGKILL. Returns the killed ones."""
    import ray

    raylet, procs = _own_node()
    if raylet is None:
        ray.shutdown()
        return []
    procs += leftovers.descendants(raylet)
    with leftovers.adopting_orphans():  # the raylet's workers end as our zombies, not pid 1's
        ray.shutdown()
        procs = set(procs) | set(leftovers.with_env("RAY_RAYLET_PID", str(raylet)))
        left = leftovers.wait_gone(procs, grace)
        killed = leftovers.kill(left)
        if killed:
            names = ", ".join(map(leftovers.describe, killed))
            log.warning(
                "ray: %d process(es) outlived this job's Ray session; killed: %s",
                len(killed),
                names,
            )
            leftovers.wait_gone(killed, 5.0)
    return killed


@contextlib.contextmanager
def session_with(prepare, address: str | None, storage_env: dict | None, use_ray: bool = True):
    """Yield `prepare()`'s result, inside a Ray session when `use_ray`.

    Starting a local Ray takes seconds, so the driver's own work (listing the catalogue, reading
    the queries) runs in a thread meanwhile. ray.init stays on the main thread: Ray does not
    support starting from another one.
    """
    if not use_ray:
        yield prepare()
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        prepared = pool.submit(prepare)
        with ray_session(address, storage_env):
            yield prepared.result()
