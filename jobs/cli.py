"""The `aurorahash` console script: one subcommand per job, a JSON summary line on stdout.

Exit codes: 0 done, 1 failed work, 2 bad usage or bad input, 130 interrupted (Ctrl-C), 143
terminated (SIGTERM: the job unwinds as for Ctrl-C, `pipeline.lifecycle.terminate`, and prints a
summary with ok false).

The summary's `error` is one line (`pipeline.messages.one_line`: the exception type and message,
no traceback, no terminal colour codes); tracebacks go to the stderr log only.

Run as a command (`cli`: the console script, `python -m jobs.cli`), the process leaves through
`exit_now` once the job has returned: no interpreter teardown after a finished job.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import NoReturn

from jobs.common import JobFailed, emit_summary, setup_logging
from pipeline.errors import BadInput
from pipeline.lifecycle import terminate
from pipeline.messages import clean_text, one_line

# Job name -> module. Each module defines HELP, add_arguments(parser) and run(args) -> dict.
JOBS = {
    "demo": "jobs.demo",
    "train": "jobs.train",
    "evaluate": "jobs.evaluate",
    "ingest": "jobs.ingest",
    "check": "jobs.check",
    "compact": "jobs.compact",
    "search": "jobs.search",
    "benchmark": "jobs.benchmark",
    "export": "jobs.export",
    "synth": "jobs.synth",
}

# Jobs whose process hands pyarrow no pandas objects: their console script keeps pandas out
# (`jobs.no_pandas` says why). Not ingest, demo or check: Ray Data's driver uses pandas.
WITHOUT_PANDAS = frozenset({"search", "benchmark", "compact", "export"})

log = logging.getLogger("aurorahash")
VERBOSE_HELP = "debug-level progress on stderr"


def _available_jobs() -> dict:
    mods = {}
    for name, modname in JOBS.items():
        try:
            mods[name] = importlib.import_module(modname)
        except ModuleNotFoundError as exc:  # a job not built yet, not a broken one
            if exc.name != modname:
                raise
    return mods


def _job_name(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(only: str | None = None) -> tuple[argparse.ArgumentParser, dict]:
    """The CLI parser. With `only`, the other jobs get no options: `aurorahash --help` (only="")
    lists the jobs, and a job's start builds its own options, not every job's (some import
    pyarrow or the synthetic-frame writers to fill in their defaults)."""
    mods = _available_jobs()
    parser = argparse.ArgumentParser(
        prog="aurorahash",
        description="Deep-hashing index for all-sky auroral image archives. Each job prints one "
        "JSON summary line on stdout; progress goes to stderr.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="job", metavar="JOB", required=True)
    for name, mod in mods.items():
        p = sub.add_parser(
            name,
            help=mod.HELP.splitlines()[0],
            description=mod.HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        # -v also after the job name; SUPPRESS keeps a -v given before it
        p.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP
        )
        if only is None or only == name:
            mod.add_arguments(p)
    return parser, mods


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    job = _job_name(argv)
    parser, mods = build_parser(job if job in JOBS else "")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        with terminate.raising():
            summary = mods[args.job].run(args)
    except BadInput as exc:
        log.error("%s", exc)
        emit_summary({"job": args.job, "ok": False, "error": clean_text(exc)})
        return 2
    except FileNotFoundError as exc:
        log.error("not found: %s", exc)
        emit_summary({"job": args.job, "ok": False, "error": f"not found: {clean_text(exc)}"})
        return 2
    except JobFailed as exc:
        log.error("%s", exc)
        emit_summary({"job": args.job, "ok": False, **exc.summary, "error": clean_text(exc)})
        return 1
    except KeyboardInterrupt:
        if terminate.received():  # Ray may have turned our Terminated into a plain one
            log.error("terminated (SIGTERM)")
            emit_summary({"job": args.job, "ok": False, "error": "terminated (SIGTERM)"})
            return terminate.EXIT_CODE
        log.error("interrupted")
        return 130
    except Exception as exc:  # the work failed: report it, exit 1
        log.exception("job %s failed", args.job)
        emit_summary({"job": args.job, "ok": False, "error": one_line(exc)})
        return 1
    emit_summary({"job": args.job, "ok": True, **summary})
    return 0


def exit_now(rc: int) -> NoReturn:
    """Leave with `rc` without the interpreter's teardown (`pipeline.lifecycle.quick_exit`).

    Why here: the job is done and its summary printed. delta-rs's tokio runtime (one per
    process, never shut down: its Python binding has no way to) keeps its threads through the
    teardown that normally follows, and a tokio thread that touches the interpreter or a
    library's statics while they are torn down aborts the process: a finished compaction could
    exit with SIGABRT (issue 20). Jobs close their files and shut Ray down before they return.
    """
    from pipeline.lifecycle.quick_exit import quick_exit

    quick_exit(rc)


def prepare_process(argv: list[str]) -> None:
    """What the console script does to its process before the job: keep pandas out of the jobs
    in WITHOUT_PANDAS."""
    if _job_name(argv) in WITHOUT_PANDAS:
        from jobs import no_pandas

        no_pandas.keep_out()


def cli() -> NoReturn:
    """The console script: run the job named in sys.argv, then `exit_now` with its code."""
    prepare_process(sys.argv[1:])
    exit_now(main())


if __name__ == "__main__":
    cli()
