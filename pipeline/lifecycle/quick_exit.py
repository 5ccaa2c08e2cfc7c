"""Leave the process now, without the interpreter's teardown, once the work is delivered.

Why: what runs after a job or an actor has finished is the finalisation of the interpreter and
of native libraries' statics, while their threads (delta-rs's tokio runtime, Ray's gRPC and
metrics threads, torch's pools) still run. That teardown is where a finished compaction aborted
and where a released encoder actor lingered (issue 20); nothing of ours needs it. So the log and
the standard streams are flushed, then `os._exit`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import NoReturn


def quick_exit(rc: int) -> NoReturn:
    logging.shutdown()  # its own atexit callback never runs after os._exit
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe: nothing more to deliver
            stream.flush()
    os._exit(rc)
