"""Encoder actors end with `os._exit` once their interpreter starts to exit: no teardown.

Why (issue 20, a HashEncoder actor alive 20 minutes after the demo): Ray Data releases a pool's
actors when the dataset is done; each actor's core worker then shuts down ("Shutdown completed
successfully"), leaves the raylet's books, and the process returns into `sys.exit(0)`. The
interpreter's teardown follows: module finalisation and the C++ static destructors of torch
(`~OperatorRegistry`, `Library::reset`), while the threads of Ray's C++ core (gRPC pollers,
opencensus's `DeltaProducer::RunHarvesterLoop`, a thread that sleeps in a loop forever) still
run. That teardown takes seconds on a loaded machine (measured: > 20 s) and can block for good
on a futex; and with the core worker gone, nothing ends the process when the raylet goes: the
watchdog that ends a worker whose raylet died was part of the core worker. The demo shut its
Ray down while such an actor was still tearing down, and the actor was orphaned.

An encoder has nothing to finalise: its results went back through the object store before its
core worker shut down. So the first atexit callback (atexit runs the last registered first,
before module teardown) is `pipeline.lifecycle.quick_exit`: flush the log, then `os._exit(0)`.
Only in a Ray worker process: where HashEncoder runs in the caller's process (the bare loop, tests)
nothing changes.
"""

from __future__ import annotations

import atexit

from pipeline.lifecycle.quick_exit import quick_exit

_registered = False


def _in_ray_worker() -> bool:
    try:
        import ray

        worker = ray._private.worker.global_worker
        return ray.is_initialized() and worker.mode == ray._private.worker.WORKER_MODE
    except Exception:  # not Ray, or an API that moved: keep the normal exit
        return False


def exit_without_teardown() -> bool:
    """In a Ray worker process, register `quick_exit(0)` once; True when registered."""
    global _registered
    if _registered or not _in_ray_worker():
        return _registered
    atexit.register(quick_exit, 0)
    _registered = True
    return True
