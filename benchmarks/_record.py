"""One result file per benchmark run: what ran, at which commit, where, when, and the figures.

Every script in benchmarks/ that prints figures writes them through here (`--json [PATH]`), so a
figure in RESULTS.md or the README can name the file it came from:

    {"command": "python benchmarks/bench_knn.py --repeat 5",
     "commit": "<git rev-parse HEAD>", "dirty": false,
     "machine": {"platform": ..., "cpu": ..., "cores": ..., "python": ...},
     "date": "2026-12-01T10:00:00Z",
     "figures": {...}}

`--json` alone writes `benchmarks/results/<name>-<UTC date>/result.json` (`-2`, `-3`, ... when
taken: a result file is never overwritten); `--json PATH` writes PATH. Paths in the record are
made portable: under the project they become relative to it (`runs/x`), under the temporary
folder `$TMPDIR/...`, under the home `~/...` (see `portable`).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def commit() -> str | None:
    """`git rev-parse HEAD` of the project (None outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def dirty() -> bool | None:
    """Whether tracked files differ from that commit (the figures are then not exactly its)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(**extra) -> dict:
    """Platform, CPU model, cores, Python, load average; `extra` (e.g. gpu=...) is added."""
    doc = {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }
    if hasattr(os, "getloadavg"):
        doc["load_average"] = [round(v, 2) for v in os.getloadavg()]
    doc.update(extra)
    return doc


def _prefixes() -> list[tuple[str, str]]:
    """(absolute prefix, portable form), longest first: the project, its parent, tmp, home."""
    pairs = [(str(ROOT), "."), (str(ROOT.parent), "..")]
    for tmp in {tempfile.gettempdir(), "/tmp"}:
        pairs.append((os.path.realpath(tmp), "$TMPDIR"))
        pairs.append((tmp, "$TMPDIR"))
    home = os.path.expanduser("~")
    if home not in ("/", "~"):
        pairs.append((home, "~"))
    return sorted(set(pairs), key=lambda p: -len(p[0]))


def portable(obj):
    """`obj` (JSON-like) with absolute paths in its strings rewritten: under the project relative
    to it (`/x/aurorahash/runs/a` -> `runs/a`; the project itself -> `.`), beside it relative to
    it (`../shared/data`), under the temporary folder `$TMPDIR/...`, under the home `~/...`."""
    if isinstance(obj, dict):
        return {k: portable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [portable(v) for v in obj]
    if not isinstance(obj, str) or "/" not in obj:
        return obj
    s = obj
    for prefix, short in _prefixes():
        if not prefix or prefix == "/":
            continue
        # a path that starts with `prefix`: not inside a longer path or word
        pat = re.compile(r"(?<![\w./~$-])" + re.escape(prefix) + r"(/|(?=[\s\"'),;:#]|$))")

        def sub(m, short=short):
            if m.group(1) == "/":
                return "" if short == "." else short + "/"
            return short

        s = pat.sub(sub, s)
    return s


ABSOLUTE = re.compile(r"(?<![\w.~$-])/(?:tmp|work|root|home|Users|var|mnt|private)/[^\s\"'<>]*")


def absolute_paths(text: str) -> list[str]:
    """Absolute machine paths in `text` (e.g. a rendered page), which a committed result or
    screenshot should not show."""
    return sorted(set(ABSOLUTE.findall(text)))


@contextlib.contextmanager
def inside(folder):
    """Run in `folder`, so that the paths given to a job (and shown by its report) are relative
    to it."""
    old = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(old)


def command(argv: list[str] | None = None) -> str:
    """The command line of this process, the script relative to the project."""
    argv = list(sys.argv if argv is None else argv)
    script = argv[0] if argv else ""
    with contextlib.suppress(ValueError):  # another drive (Windows)
        script = os.path.relpath(os.path.abspath(script), ROOT) if script else script
    return portable("python " + shlex.join([script, *argv[1:]]))


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def header(argv: list[str] | None = None, **machine_extra) -> dict:
    """{command, commit, dirty, machine, date} of this run."""
    return {
        "command": command(argv),
        "commit": commit(),
        "dirty": dirty(),
        "machine": machine(**machine_extra),
        "date": utc_now(),
    }


def default_path(name: str) -> Path:
    """benchmarks/results/<name>-<UTC date>/result.json; -2, -3, ... when that one exists."""
    day = time.strftime("%Y-%m-%d", time.gmtime())
    base = RESULTS / f"{name}-{day}"
    folder, n = base, 1
    while (folder / "result.json").exists():
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    return folder / "result.json"


def add_json_argument(parser, name: str) -> None:
    """`--json [PATH]`: without PATH, `default_path(name)`."""
    parser.add_argument(
        "--json",
        nargs="?",
        const=f"@default:{name}",
        default=None,
        metavar="PATH",
        help=(
            "write the result file (command, commit, machine, date, figures) here; "
            f"alone: benchmarks/results/{name}-<UTC date>/result.json"
        ),
    )


def resolve(path: str | os.PathLike | None) -> Path | None:
    """The path `--json` asked for (None: no result file)."""
    if path is None:
        return None
    text = os.fspath(path)
    if text.startswith("@default:"):
        return default_path(text.split(":", 1)[1])
    return Path(text)


def write(path, figures, argv=None, machine_extra: dict | None = None, **fields) -> Path | None:
    """Write {command, commit, dirty, machine (+ machine_extra), date, figures, **fields}, paths
    made portable, to `path` (`--json`'s value; None writes nothing), atomically; returns the
    file written."""
    target = resolve(path)
    if target is None:
        return None
    doc = header(argv, **(machine_extra or {}))
    doc["figures"] = figures
    doc.update(fields)
    doc = portable(json.loads(json.dumps(doc, default=str)))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, target)
    print(f"result file: {portable(str(target.resolve()))}", file=sys.stderr, flush=True)
    return target
