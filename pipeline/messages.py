"""One-line error text for JSON summaries and records (tracebacks go to the stderr log only).

Exceptions that cross Ray carry the remote traceback in their text, with terminal colour codes
(`RayTaskError`: "ray::ReadArchive() (pid=..)\\n  File ...\\n\\x1b[36m...ValueError: boom"). A
summary wants the type and the message: `one_line(exc)` unwraps Ray's wrapper to the exception
that was raised in the worker, strips ANSI escape sequences and control characters, keeps the
last line of an embedded traceback (where Python puts "Type: message") and caps the length.
"""

from __future__ import annotations

import re

MAX_CHARS = 500

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_TRACE_LINE = re.compile(r"^(Traceback \(most recent call last\):|File \"|ray::|\^+$|~+$)")


def clean_text(text: str, max_chars: int = MAX_CHARS) -> str:
    """`text` as one line: no ANSI codes or control characters; of an embedded traceback only its
    last line; at most `max_chars` characters."""
    text = _ANSI.sub("", str(text)).replace("\r", "\n").replace("\t", " ")
    lines = [_CONTROL.sub("", ln).strip() for ln in text.split("\n")]
    lines = [ln for ln in lines if ln]
    if not lines:
        return ""
    if len(lines) > 1 and any(_TRACE_LINE.match(ln) for ln in lines):
        lines = [ln for ln in lines if not _TRACE_LINE.match(ln)][-1:] or lines[-1:]
    out = " ".join(" ".join(lines).split())
    if len(out) > max_chars:
        out = out[: max_chars - 3].rstrip() + "..."
    return out


def _root(exc: BaseException) -> BaseException:
    """The exception raised in a Ray worker, not Ray's wrapper around it."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        cause = getattr(exc, "cause", None)  # ray.exceptions.RayTaskError
        if isinstance(cause, BaseException):
            exc = cause
            continue
        if type(exc).__name__ == "UserCodeException" and exc.__cause__ is not None:
            exc = exc.__cause__  # ray.data: "exception raised in user code" around the real one
            continue
        break
    return exc


def one_line(exc: BaseException, max_chars: int = MAX_CHARS) -> str:
    """'TypeName: message' in one clean line (see the module docstring)."""
    root = _root(exc)
    name = type(root).__name__
    msg = clean_text(str(root), max_chars)
    if not msg:
        return name
    if msg.startswith(name + ":") or msg.startswith(name + "("):
        return msg
    return clean_text(f"{name}: {msg}", max_chars)
