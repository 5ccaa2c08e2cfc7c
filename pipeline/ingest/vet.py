"""Vet an archive before ingesting it: read every file as ingestion would, encode and write nothing.

`aurorahash check --source NIGHT [--model DIR] [--out OUT]` and `aurorahash ingest --dry-run`
run `check_archive`. Each archive file goes through the same read task body as ingestion
(`pipeline.ingest.read.read_file_rows`: the readers), then the same preprocessing as the encoder
actors (`pipeline.ingest.frame_rows.model_inputs`, on the CPU; `local_read.file_rows`), in this
process, a few files at a time (threads; the readers' per-file memory caps hold per thread). No
Ray, no encoder, nothing written anywhere. With --model the checkpoint is validated first (a bad
one is BadInput: exit 2) and frames are preprocessed with its settings; without, with the
default aurora settings (`PreprocessConfig()`). With --model and --out only the files that an
ingest would still encode are read (the others are counted as files_skipped).

The summary counts what ingestion would do with each file (its rows' verdict,
`pipeline.ingest.rows.FileOutcome`, as the committer reduces them):
    files_ok           every frame readable
    files_quarantine   some frames would be quarantined (the rest ingested)
    files_corrupt      nothing readable: ingestion writes an empty shard + a quarantine record
    files_ignored      deliberately not ingested (THEMIS thumbnails)
    files_failed       reading failed for a reason that is not the file's (I/O): exit 1
and `files` lists per file: rel, status, frames, quarantined, reasons ({reason: count}, the
most common `max_reasons`), and sequence_gaps / frames_dropped (jumps in the THEMIS mode sequence
number and the exposures they skip, `pipeline.ingest.frame_meta.sequence_gaps`; summed in the
summary); files with problems first, at most `max_listed` entries (`files_listed_truncated`
says how many more were left out).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from pipeline import storage
from pipeline.ingest import frame_meta
from pipeline.ingest.config import CheckConfig
from pipeline.ingest.read import FileTask
from pipeline.ingest.rows import FileOutcome, Verdict
from pipeline.messages import clean_text, one_line

log = logging.getLogger("aurorahash.check")

STATUS_ORDER = tuple(
    v.value
    for v in (Verdict.FAILED, Verdict.CORRUPT, Verdict.QUARANTINE, Verdict.IGNORED, Verdict.OK)
)


class CheckFailed(Exception):
    """Some files could not be read for reasons that are not theirs; `summary` has the rest."""

    def __init__(self, message: str, summary: dict):
        super().__init__(message)
        self.summary = summary


def check_file(task: FileTask, preprocess: dict, storage_options: dict, max_reasons: int) -> dict:
    """What ingestion's read task and preprocessing make of one archive file, as counts and
    reasons: the committer's FileOutcome of the same rows."""
    from pipeline.ingest.local_read import file_rows
    from pipeline.model.preprocess import PreprocessConfig

    cfg = PreprocessConfig.from_dict(dict(preprocess))
    outcome, crashed = FileOutcome(), None
    try:
        for row in file_rows(task, cfg, storage_options, rows_per_block=256, inputs=False):
            outcome.add(row)
    except Exception as exc:  # read_file_rows turns reading errors into rows; this is a bug
        log.warning("checking %s failed", task.uri, exc_info=True)
        crashed = one_line(exc)
    return _entry(task, outcome, crashed, max_reasons)


def _entry(task: FileTask, outcome: FileOutcome, crashed: str | None, max_reasons: int) -> dict:
    """The summary's line for one file."""
    reasons = Counter(clean_text(p.reason, 200) for p in outcome.problems)
    if outcome.stop is not None:
        kind, why = outcome.stop
        reasons[clean_text(why or kind.value, 200)] += 1
    if crashed is not None:
        reasons[crashed] += 1
    status = Verdict.FAILED if crashed is not None else outcome.verdict
    entry = {"file": task.rel, "status": status.value, "frames": len(outcome.frames)}
    entry["quarantined"] = outcome.n_problems
    numbers = [(r["frame"], frame_meta.sequence_of(r["meta"])) for r in outcome.frames]
    numbers = [(i, n) for i, n in numbers if n is not None]  # THEMIS PGM frames only
    entry["sequence_gaps"], entry["frames_dropped"] = frame_meta.sequence_gaps(numbers)
    if reasons:
        entry["reasons"] = dict(reasons.most_common(max(1, max_reasons)))
        if len(reasons) > max_reasons:
            entry["reasons_distinct"] = len(reasons)
    return entry


def _tasks(cfg: CheckConfig, model, src_opts: dict) -> tuple[list[FileTask], dict]:
    from pipeline.ingest.plan import list_source, plan_files
    from pipeline.storage import options_for

    if model is not None and cfg.out:
        out_opts = options_for(cfg.out, endpoint=cfg.s3_endpoint)
        plan = plan_files(cfg, model.id, src_opts, out_opts)
        info = {
            "files_seen": plan.seen,
            "files_skipped": plan.skipped,
            "files_changed": len(plan.changed),
            "files_ignored_before": plan.ignored,
            "out": plan.prefix,
        }
        return plan.todo, info
    listing = list_source(cfg.source, cfg.since, src_opts, cfg.out)
    todo = [FileTask(f, storage.relative_path(f, listing.root)) for f in listing.entries.uris]
    return todo, {"files_seen": len(todo), "files_skipped": 0}


def check_archive(cfg: CheckConfig) -> dict:
    """Vet the archive under cfg.source (module docstring); raises CheckFailed (with the summary)
    when files could not be read for reasons that are not theirs, BadInput for a bad checkpoint
    (bad options: `CheckConfig` refuses them)."""
    from pipeline.model.checkpoint import open_model
    from pipeline.model.preprocess import PreprocessConfig
    from pipeline.storage import options_for

    t0 = time.monotonic()
    src_opts = options_for(cfg.source, endpoint=cfg.s3_endpoint)
    model = None
    if cfg.model:
        model = open_model(cfg.model, options_for(cfg.model, endpoint=cfg.s3_endpoint))
    preprocess = model.preprocess if model is not None else PreprocessConfig().to_dict()
    todo, info = _tasks(cfg, model, src_opts)
    if cfg.max_files is not None:
        todo = todo[: cfg.max_files]
    log.info("check: %d archive files to read under %s", len(todo), cfg.source)

    entries, lock, done = [], threading.Lock(), [0]
    next_log = [t0 + cfg.progress_interval]

    def one(task: FileTask) -> None:
        e = check_file(task, preprocess, src_opts, cfg.max_reasons)
        with lock:
            entries.append(e)
            done[0] += 1
            if time.monotonic() >= next_log[0]:
                next_log[0] = time.monotonic() + cfg.progress_interval
                log.info("check: %d/%d files read", done[0], len(todo))

    with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
        for f in [pool.submit(one, t) for t in todo]:
            f.result()

    counts = Counter(e["status"] for e in entries)
    entries.sort(key=lambda e: (STATUS_ORDER.index(e["status"]), e["file"]))
    summary = {
        "dry_run": True,
        **info,
        "files_todo": len(todo),
        "files_checked": len(entries),
        **{f"files_{s}": counts.get(s, 0) for s in STATUS_ORDER},
        "frames": sum(e["frames"] for e in entries),
        "quarantined": sum(e["quarantined"] for e in entries),
        "sequence_gaps": sum(e["sequence_gaps"] for e in entries),
        "frames_dropped": sum(e["frames_dropped"] for e in entries),
        "model": model.id[:12] if model is not None else None,
        "preprocess": "model" if model is not None else "default",
        "files": entries[: max(0, cfg.max_listed)],
        "seconds": round(time.monotonic() - t0, 3),
    }
    if len(entries) > cfg.max_listed:
        summary["files_listed_truncated"] = len(entries) - cfg.max_listed
    if counts.get("failed"):
        raise CheckFailed(f"{counts['failed']} file(s) could not be read", summary)
    return summary
