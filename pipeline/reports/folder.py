"""Write a report into a new dated folder under a parent: DIR/2026-11-30T231500Z-benchmark/.

Why a new folder each time: reports are a record (one per night, per run); a later run must
never overwrite an older one, so a name that exists gets a suffix (-2, -3, ...). Locally the
folder is written under a hidden temporary name and renamed into place in one step, so readers
see a whole report or none. On object stores (s3://) there is no rename: the figures and
report.json go first and report.html last, so its presence means the report is complete.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import re
import shutil
import uuid

import numpy as np

from pipeline import storage
from pipeline.reports.html import render_html
from pipeline.reports.model import Report

HTML, JSON = "report.html", "report.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
MAX_SUFFIX = 1000


def report_name(kind: str, now: _dt.datetime | None = None) -> str:
    """`<UTC time>-<kind>`, e.g. 2026-11-30T231500Z-benchmark (sorts by time)."""
    if not _NAME.match(kind):
        raise ValueError(f"report kind must be letters, digits, '-' or '_': {kind!r}")
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return f"{now.astimezone(_dt.timezone.utc):%Y-%m-%dT%H%M%SZ}-{kind}"


def _json_default(v):
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def report_files(report: Report, created: str) -> dict[str, bytes]:
    """File name -> bytes: the figures as PNGs, report.json, and report.html (last)."""
    figures = report.figures()
    names = [f.name for f in figures]
    bad = [n for n in names if not _NAME.match(n) or n in ("report",)]
    if bad or len(set(names)) != len(names):
        raise ValueError(f"figure names must be distinct file stems: {names}")
    meta = {
        "kind": report.kind,
        "title": report.title,
        "created": created,
        "facts": dict(report.facts),
        "figures": [f"{n}.png" for n in names],
    }
    clash = set(meta) & set(report.data)
    if clash:
        raise ValueError(f"report data may not use the keys {sorted(clash)}")
    doc = json.dumps({**meta, **report.data}, indent=2, default=_json_default, allow_nan=False)
    files = {f"{f.name}.png": f.png for f in figures}
    files[JSON] = doc.encode()
    files[HTML] = render_html(report, created).encode()
    return files


def _candidates(name: str):
    yield name
    for i in range(2, MAX_SUFFIX):
        yield f"{name}-{i}"


def _write_local(parent: str, name: str, files: dict[str, bytes]) -> str:
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".tmp-{name}-{uuid.uuid4().hex[:8]}")
    os.mkdir(tmp)
    try:
        for fname, data in files.items():
            with open(os.path.join(tmp, fname), "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for cand in _candidates(name):
            dst = os.path.join(parent, cand)
            if os.path.lexists(dst):
                continue
            try:
                os.rename(tmp, dst)  # fails on a non-empty folder that appeared meanwhile
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    continue
                raise
            return dst
        raise FileExistsError(f"{parent}: {MAX_SUFFIX} reports named {name}*")
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def _write_remote(fs, parent: str, name: str, files: dict[str, bytes]) -> str:
    for cand in _candidates(name):
        dst = f"{parent.rstrip('/')}/{cand}"
        if not fs.exists(dst):
            break
    else:
        raise FileExistsError(f"{parent}: {MAX_SUFFIX} reports named {name}*")
    for fname, data in files.items():  # report.html is last
        fs.pipe_file(f"{dst}/{fname}", data)
    return dst


def write_report(
    report: Report,
    parent: str,
    storage_options: dict | None = None,
    now: _dt.datetime | None = None,
) -> str:
    """Write `report` into a new folder under `parent` (local path, file:// or s3://); returns
    the folder's URI."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    files = report_files(report, now.astimezone(_dt.timezone.utc).isoformat(timespec="seconds"))
    name = report_name(report.kind, now)
    fs, path, protocol = storage.split_uri(parent, storage_options)
    if protocol == "file":
        return _write_local(path, name, files)
    return storage.join_uri(protocol, _write_remote(fs, path, name, files))
