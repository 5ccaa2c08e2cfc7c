"""Ingest's commit stage: encoded rows -> one shard (and quarantine record) per archive file.

Split in three, img2dataset-style (the writer is the only part that touches storage):
    FileRows:    groups the streamed rows by archive file, once per (file, seq), and says when a
                 file is complete (its read task sends the row count last); what a complete
                 file's rows come to is `pipeline.ingest.rows.FileOutcome`
    IngestTally: what the summary and the progress lines report (counts, failures, costs)
    Committer:   the glue: completed files go to a thread pool that writes them atomically
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipeline import storage
from pipeline.codes import pending, store
from pipeline.ingest import shard_rows
from pipeline.ingest.read import FileTask
from pipeline.ingest.rows import FileOutcome, RowKind, Verdict, reduce_file
from pipeline.messages import clean_text, one_line

if TYPE_CHECKING:
    from pipeline.ingest.config import IngestConfig
    from pipeline.ingest.plan import Plan
    from pipeline.model.checkpoint import Checkpoint

log = logging.getLogger("aurorahash.ingest")

COLUMNS = ["source", "kind", "seq", "frame", "site", "time_us", "label", "reason", "expected"]
COLUMNS += ["meta", "timings", "code", "pred", "score", "cost"]
OPTIONAL_COLUMNS = ("prep_cost", "encoder")
_MORE_REASONS = 1000  # distinct reasons counted per file for the summary record; then "(other)"


@dataclass
class FileState:
    task: FileTask
    rows: dict = field(default_factory=dict)  # seq -> row dict; None: a problem past the cap
    expected: int | None = None
    problems_kept: int = 0  # error rows kept whole (at most quarantine_per_file)
    more: Counter = field(default_factory=Counter)  # reason -> count, of the rows not kept

    def outcome(self) -> FileOutcome:
        """The file's rows (all arrived) reduced, in `seq` order; the error rows past the cap
        count as problems without being kept."""
        rows = (self.rows[s] for s in sorted(self.rows) if self.rows[s] is not None)
        return reduce_file(rows, dropped=sum(self.more.values()))


class FileRows:
    """Rows by archive file. Rows a retried Ray task delivers twice are counted once."""

    def __init__(self, todo: list[FileTask], quarantine_per_file: int, tally: IngestTally):
        self.pending: dict[str, FileState] = {t.uri: FileState(t) for t in todo}
        self.cap = quarantine_per_file
        self.tally = tally

    def add(self, cols: dict) -> list[FileState]:
        """Take one batch (column lists); return the files it completed."""
        touched = set()
        for i, uri in enumerate(cols["source"]):
            st = self.pending.get(uri)
            if st is None:  # a duplicate of a file already committed, or not ours
                continue
            if cols["kind"][i] == RowKind.END:
                if st.expected is None:
                    self.tally.add_read_costs(cols["timings"][i])
                st.expected = cols["expected"][i]
            else:
                self._add_row(st, cols, i)
            touched.add(uri)
        done = [self.pending[u] for u in touched if self._complete(self.pending[u])]
        for st in done:
            del self.pending[st.task.uri]
        return done

    def _add_row(self, st: FileState, cols: dict, i: int) -> None:
        seq, kind = cols["seq"][i], RowKind(cols["kind"][i])
        if seq in st.rows:
            return
        if kind is RowKind.ERROR and st.problems_kept >= self.cap:
            st.rows[seq] = None  # counted exactly, kept as one summary record
            reason = clean_text(cols["reason"][i] or kind.value, 200)
            if reason not in st.more and len(st.more) >= _MORE_REASONS:
                reason = "(other)"
            st.more[reason] += 1
            return
        st.rows[seq] = {k: cols[k][i] for k in cols}
        st.problems_kept += kind is RowKind.ERROR
        if kind is RowKind.FRAME:
            self.tally.count_frame(cols, i)

    @staticmethod
    def _complete(st: FileState) -> bool:
        return st.expected is not None and len(st.rows) >= st.expected

    def leftovers(self) -> list[FileState]:
        """Files whose rows never all arrived; forgets them."""
        left = list(self.pending.values())
        self.pending.clear()
        return left


class IngestTally:
    """Counts, failures and where the time went; progress lines on a clock."""

    def __init__(self, total: int, progress_interval: float):
        self.total = total
        self.interval = progress_interval
        self.lock = threading.Lock()
        self.counts = dict(done=0, failed=0, ignored=0, corrupt=0, frames=0, quarantined=0)
        self.counts.update(sequence_gaps=0, frames_dropped=0)  # THEMIS mode sequence numbers
        self.failed: dict[str, str] = {}
        self.frames_seen = 0  # frames that reached the driver (progress only)
        # seconds summed over workers: where the time goes (reported in the summary)
        self.costs = dict(read_s=0.0, preprocess_s=0.0, model_s=0.0, write_s=0.0)
        self.encoders: Counter = Counter()  # HashEncoder identity (JSON) -> frames encoded
        self.t0 = time.monotonic()
        self.t_last = None
        self._next_progress = self.t0 + progress_interval
        self._stop = None

    def count_frame(self, cols: dict, i: int) -> None:
        self.frames_seen += 1
        self.costs["model_s"] += cols["cost"][i] or 0.0
        prep = cols.get("prep_cost")
        if prep is not None:
            self.costs["preprocess_s"] += prep[i] or 0.0
        if "encoder" in cols:
            self.encoders[cols["encoder"][i]] += 1

    def add_read_costs(self, timings: dict | None) -> None:
        """An end row's `timings` (pipeline.ingest.read.TIMINGS; null: nothing to add)."""
        self.costs["read_s"] += float((timings or {}).get("read_s") or 0.0)

    def fail(self, uri: str, reason: str) -> None:
        log.warning("failed: %s: %s", uri, reason)
        with self.lock:
            self.counts["failed"] += 1
            self.failed[uri] = clean_text(reason or "failed")

    def ignored(self) -> None:
        with self.lock:
            self.counts["ignored"] += 1

    def committed(self, written: tuple, seconds: float) -> None:
        n_frames, n_q, corrupt, (gaps, dropped) = written
        with self.lock:
            self.counts["done"] += 1
            self.counts["frames"] += n_frames
            self.counts["quarantined"] += n_q
            self.counts["corrupt"] += int(corrupt)
            self.counts["sequence_gaps"] += gaps
            self.counts["frames_dropped"] += dropped
            self.costs["write_s"] += seconds
            self.t_last = time.monotonic()

    def start_ticker(self) -> None:
        """Progress lines also while nothing arrives (actor start-up, a node being replaced)."""
        self._stop = threading.Event()

        def loop():
            while not self._stop.wait(self.interval / 2):
                self.progress()

        threading.Thread(target=loop, name="ingest-progress", daemon=True).start()

    def stop_ticker(self) -> None:
        if self._stop is not None:
            self._stop.set()

    def progress(self, final: bool = False) -> None:
        now = time.monotonic()
        with self.lock:
            if not final and now < self._next_progress:
                return
            self._next_progress = now + self.interval
            c = dict(self.counts)
        el = max(now - self.t0, 1e-9)
        log.info(
            "ingest: files %d/%d done (%d failed, %d not ingested), %d frames encoded, "
            "%.1f frames/s",
            c["done"],
            self.total,
            c["failed"],
            c["ignored"],
            self.frames_seen,
            self.frames_seen / el,
        )


class Committer:
    """Collects encoded rows per archive file; commits a file once all its rows are in."""

    def __init__(self, cfg: IngestConfig, plan: Plan, model: Checkpoint, out_opts: dict):
        self.cfg = cfg
        self.plan = plan
        self.meta = store.ShardMeta.of(model)
        self.out_opts = out_opts
        self.tally = IngestTally(len(plan.todo), cfg.progress_interval)
        self.rows = FileRows(plan.todo, cfg.quarantine_per_file, self.tally)
        self.pool = ThreadPoolExecutor(max_workers=max(1, cfg.commit_threads))
        self.futures: list[Future] = []
        # shards become visible with their folder's pending mark (pipeline.codes.pending)
        self.marks = pending.MarkBuffer(storage.location(plan.prefix, options=out_opts))

    def consume(self, batch) -> None:
        """One Arrow batch of encoded rows (any files, any order)."""
        names = COLUMNS + [c for c in OPTIONAL_COLUMNS if c in batch.column_names]
        for st in self.rows.add(batch.select(names).to_pydict()):
            self._dispatch(st)
        self.tally.progress()

    def finish(self, stopped: bool = False) -> None:
        """Wait for outstanding commits; files never completed count as failed, unless the job
        was `stopped` (Ctrl-C, SIGTERM): then they are only left for the next run."""
        self.tally.stop_ticker()
        for f in self.futures:
            f.result()
        self.pool.shutdown(wait=True)
        try:
            self.marks.flush()
        except Exception as exc:  # their shards stay invisible; the next run redoes them
            n = len(self.marks.rels)
            self.tally.fail(self.plan.prefix, f"pending marks of {n} file(s) not written: {exc}")
        left = self.rows.leftovers()
        if stopped:
            if left:
                log.warning("ingest stopped: %d file(s) not finished, for the next run", len(left))
            return
        for st in left:
            exp = "?" if st.expected is None else st.expected
            self.tally.fail(st.task.uri, f"incomplete: {len(st.rows)} of {exp} rows arrived")

    def _dispatch(self, st: FileState) -> None:
        outcome = st.outcome()
        if outcome.verdict is Verdict.IGNORED:
            log.info("not ingested: %s (%s)", st.task.uri, outcome.reason)
            self.futures.append(self.pool.submit(self._mark_ignored, st, outcome.reason))
        elif outcome.verdict is Verdict.FAILED:
            self.tally.fail(st.task.uri, outcome.reason)
        else:
            self.futures.append(self.pool.submit(self._commit, st, outcome))

    def _mark_ignored(self, st: FileState, reason: str) -> None:
        rec = {"file": st.task.uri, "rel": st.task.rel, "reason": reason}
        rec["time"] = shard_rows.utcnow()
        try:
            storage.atomic_write_bytes(
                store.ignored_uri(self.cfg.out, st.task.rel, self.meta.model),
                (json.dumps(rec, sort_keys=True) + "\n").encode(),
                self.out_opts,
            )
        except Exception as exc:  # only costs a re-read next time
            log.warning("could not record %s as not ingested: %s", st.task.uri, exc)
        self.tally.ignored()

    def _commit(self, st: FileState, outcome: FileOutcome) -> None:
        t0 = time.perf_counter()
        try:
            written = self._write(st, outcome)
        except Exception as exc:
            log.debug("commit of %s failed", st.task.uri, exc_info=True)
            self.tally.fail(st.task.uri, f"commit failed: {one_line(exc)}")
            return
        n_frames, n_q, _, (gaps, dropped) = written
        if gaps:
            log.info(
                "%s: %d gap(s) in the mode sequence number, %d exposure(s) missing",
                st.task.rel,
                gaps,
                dropped,
            )
        self.tally.committed(written, time.perf_counter() - t0)
        log.debug("committed %s: %d frames, %d quarantined", st.task.rel, n_frames, n_q)
        try:
            self.marks.add(st.task.rel)
        except Exception as exc:  # kept buffered: `finish` tries again
            log.warning("could not write pending marks yet: %s", one_line(exc))

    def _write(self, st: FileState, outcome: FileOutcome) -> tuple[int, int, bool, tuple[int, int]]:
        """Quarantine record first, then the shard, atomically (done once its folder's pending
        mark follows: `Committer.marks`)."""
        rel, uri, model = st.task.rel, st.task.uri, self.meta.model
        frames, problems, n_problems = outcome.frames, outcome.problems, outcome.n_problems
        q_uri = store.quarantine_uri(self.cfg.out, rel, model)
        if n_problems:
            lines = shard_rows.quarantine_lines(
                st.task, problems, st.more, self.cfg.quarantine_per_file, self.meta.model12
            )
            storage.atomic_write_bytes(q_uri, lines, self.out_opts)
        columns = shard_rows.shard_columns(frames, rel, uri, self.meta.words)
        shard = storage.location(store.shard_uri(self.cfg.out, rel, model), options=self.out_opts)
        store.write_shard(shard, columns, self.meta)
        if not n_problems and rel in self.plan.changed:  # an earlier read's problems are gone
            storage.remove_if_exists(q_uri, self.out_opts)
        return len(frames), n_problems, outcome.corrupt, shard_rows.sequence_gaps(frames)
