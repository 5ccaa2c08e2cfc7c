"""The processes of a local Ray session that outlive `ray.shutdown()`: find, wait, kill.

Why: `ray.shutdown()` stops the raylet, and the raylet kills the workers it still knows. A worker
that has already begun to exit (an actor released when its dataset finished) has left the
raylet's books and shut its core worker down, and with it the watchdog that ends a worker whose
raylet died. If its interpreter teardown then blocks, nothing ever ends it: it is orphaned to
pid 1 and keeps its memory (issue 20: a HashEncoder actor, 1.3 GB, alive 20 minutes after the
demo). So a job that started Ray notes the session's processes, and after the shutdown waits for
them and kills what is left.

A process is named by (pid, start time), so a pid the kernel reuses is never mistaken for it.
Linux only (/proc); elsewhere every function finds nothing.

Ended is not gone: a worker whose raylet died first is a zombie of pid 1 until pid 1 reaps it,
and a process table looked at the instant the job exits still lists it (issue 20: `search
--ray` over 1M codes "left" 1-2 processes, all zombies). `adopting_orphans` makes the job their
parent for the shutdown, so that it reaps them itself (`reap`).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass

log = logging.getLogger("aurorahash.ray")


@dataclass(frozen=True)
class Proc:
    pid: int
    start: int  # clock ticks after boot (/proc/PID/stat field 22)


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of `pid`, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces and brackets
    return fields[0], int(fields[1]), int(fields[19])


def proc(pid: int) -> Proc | None:
    st = _stat(pid)
    return None if st is None else Proc(pid, st[2])


def alive(p: Proc) -> bool:
    """Still running (a zombie has ended: its parent only has not reaped it yet)."""
    st = _stat(p.pid)
    return st is not None and st[2] == p.start and st[0] not in ("Z", "X")


def _pids() -> list[int]:
    try:
        return [int(n) for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return []


def with_env(key: str, value: str) -> list[Proc]:
    """Processes whose environment holds KEY=VALUE (Ray gives its workers RAY_RAYLET_PID)."""
    want = f"{key}={value}".encode()
    out = []
    for pid in _pids():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:  # gone, or not ours to read
            continue
        if want in env and (p := proc(pid)) is not None:
            out.append(p)
    return out


def _child_map() -> dict[int, list[int]]:
    """{parent pid: child pids} of the whole process table."""
    children: dict[int, list[int]] = {}
    for q in _pids():
        st = _stat(q)
        if st is not None:
            children.setdefault(st[1], []).append(q)
    return children


def descendants(pid: int) -> list[Proc]:
    """Every process below `pid` in the process tree."""
    children = _child_map()
    out, todo = [], list(children.get(pid, []))
    while todo:
        q = todo.pop()
        if (p := proc(q)) is not None:
            out.append(p)
        todo.extend(children.get(q, []))
    return out


def wait_gone(procs, timeout: float, poll: float = 0.1) -> list[Proc]:
    """Wait up to `timeout` s for `procs` to end; returns those still alive."""
    deadline = time.monotonic() + timeout
    left = [p for p in procs if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(poll)
        left = [p for p in left if alive(p)]
    return left


def kill(procs) -> list[Proc]:
    """SIGKILL each of `procs` still alive; returns those signalled."""
    done = []
    for p in procs:
        if alive(p):
            try:
                os.kill(p.pid, signal.SIGKILL)
                done.append(p)
            except OSError:  # ended meanwhile
                pass
    return done


def describe(p: Proc) -> str:
    try:
        with open(f"/proc/{p.pid}/cmdline", "rb") as f:
            name = f.read().split(b"\0")[0].decode(errors="replace")
    except OSError:
        name = "?"
    return f"{p.pid} ({name[:60]})"


_PR_SET_CHILD_SUBREAPER = 36


def _subreaper(on: bool) -> bool:
    """Set this process as its orphaned descendants' parent (Linux prctl); False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, int(on)) == 0
    except (OSError, AttributeError):
        return False


def _children(pid: int) -> list[Proc]:
    return [p for q in _child_map().get(pid, []) if (p := proc(q)) is not None]


@contextlib.contextmanager
def adopting_orphans():
    """While inside, descendants orphaned by their parent's end (a Ray worker after its
    raylet) become this process's children, not pid 1's; on leaving, those that have ended are
    reaped, so no zombie of the job is left in the process table. Children this process had
    before (Popen objects of their own, which wait for them) are never touched."""
    me = os.getpid()
    own = set(_children(me))
    on = _subreaper(True)
    try:
        yield
    finally:
        if on:
            adopted = [p for p in _children(me) if p not in own]
            _subreaper(False)
            reap(adopted)


def reap(procs) -> int:
    """Collect those of `procs` that have ended and are this process's children; returns how
    many. Never waits on a process still running."""
    n = 0
    for p in procs:
        st = _stat(p.pid)
        if st is None or st[2] != p.start or st[1] != os.getpid() or st[0] not in ("Z", "X"):
            continue
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(p.pid, os.WNOHANG)[0] == p.pid:
                n += 1
    return n
