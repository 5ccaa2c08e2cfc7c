"""Leave the process now, without the interpreter's teardown, once the work is delivered.

Why: what runs after a job or an actor has finished is the finalisation of the interpreter and
of native libraries' statics, while their threads (delta-rs's tokio runtime, Ray's gRPC and
metrics threads, torch's pools) still run. That teardown is where a finished compaction aborted
and where a released encoder actor lingered (issue 20); nothing of ours needs it. So the log and
the standard streams are flushed, then `os._exit`.

One child of ours would outlive that exit: multiprocessing's resource tracker (a spawn pool
starts it: local reads, compaction workers) ends only when its pipe closes, so after `os._exit`
it ended as an orphan of pid 1, a moment after the job (issue 20, seen in the demo). It is
stopped and waited for first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import NoReturn


def quick_exit(rc: int) -> NoReturn:
    _stop_resource_tracker()
    logging.shutdown()  # its own atexit callback never runs after os._exit
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe: nothing more to deliver
            stream.flush()
    os._exit(rc)


def _stop_resource_tracker() -> None:
    tracker = sys.modules.get("multiprocessing.resource_tracker")
    if tracker is not None:
        with contextlib.suppress(Exception):  # a private method: if it changes, exit anyway
            tracker._resource_tracker._stop()
