"""SIGTERM ends a job the way Ctrl-C does: by an exception in the main thread, so it unwinds.

Why: a scheduler (cron's timeout, Kubernetes, KubeRay) stops a job with SIGTERM, whose default
action ends the process on the spot: no `finally` runs, so a local Ray and its workers outlive
the job, temp files stay, and no summary says what happened. Raised as `Terminated` (a
KeyboardInterrupt: every cleanup that holds for Ctrl-C holds for it), the job shuts Ray down,
finishes or drops what it was writing (outputs are atomic) and the CLI exits 143 (128 + 15).

`ray.init` puts its own SIGTERM handlers in (`sys.exit`, or kill the node's processes and exit
1); `kept()` around it puts ours back. Ray turns a KeyboardInterrupt raised inside a blocking
`ray.get` into a plain one, so `received()` is what tells SIGTERM from Ctrl-C. A second SIGTERM
while the job unwinds is ignored, so the cleanup finishes (SIGKILL still ends it).
"""

from __future__ import annotations

import contextlib
import signal
import threading

EXIT_CODE = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM."""


_state = {"received": False}


def _on_sigterm(signum, frame):
    if _state["received"]:
        return  # already unwinding
    _state["received"] = True
    raise Terminated("terminated (SIGTERM)")


def received() -> bool:
    """Whether SIGTERM arrived inside the current `raising()` block."""
    return _state["received"]


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def raising():
    """SIGTERM raises `Terminated` inside the block (main thread only: elsewhere Python cannot
    set a handler, and the block runs as it would without)."""
    if not _main_thread():
        yield
        return
    _state["received"] = False
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def kept():
    """Around a call that sets its own SIGTERM handler (`ray.init`): ours is back after it, and
    a SIGTERM that Ray's handler turned into `sys.exit(15)` meanwhile becomes `Terminated`."""
    ours = _main_thread() and signal.getsignal(signal.SIGTERM) is _on_sigterm
    try:
        yield
    except SystemExit as exc:
        if ours and exc.code == signal.SIGTERM:
            _state["received"] = True
            raise Terminated("terminated (SIGTERM)") from None
        raise
    finally:
        if ours:
            signal.signal(signal.SIGTERM, _on_sigterm)
