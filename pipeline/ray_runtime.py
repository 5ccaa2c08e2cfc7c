"""Joining or starting Ray the same way in every job.

Why one place: jobs must honour --ray-address / RAY_ADDRESS, keep Ray's own logging off stdout
(stdout carries only the JSON summary), and only shut down an instance they started themselves.
"""

from __future__ import annotations

import contextlib
import logging
import os


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
    ray.init(address=address, **kwargs)
    return True


@contextlib.contextmanager
def ray_session(address: str | None = None, storage_env: dict | None = None):
    started = init_ray(address, storage_env)
    try:
        yield
    finally:
        if started:
            import ray

            ray.shutdown()


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
