"""Ingest's plan as columns agrees with the plan as dicts it replaced.

What could break: the vectorised match of the listing against the done-set (`FileRecords`)
skipping a file that changed, redoing one that did not, losing the ignored or new ones, or
sorting / matching non-ASCII and non-UTF-8 names differently from Python's str. The reference
below is the planner before columns (ee15f05), written plainly with dicts.
"""

from __future__ import annotations

import os
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import storage
from pipeline.codes import compact, pending, store
from pipeline.codes.filerecords import FileRecords, last_of_runs
from pipeline.codes.segments import SegmentTable
from pipeline.ingest.config import SourceOptions
from pipeline.ingest.plan import plan_files
from pipeline.readers import format_of
from pipeline.synth.codes import write_code_shards

MODEL = "d" * 64
DAY = "stream0/2014/03/10"  # shards' paths name a site folder (pipeline.synth.codes)
COMPACTED = [  # in the segments (shards left for the grace period)
    f"{DAY}/atha_t/ut05/20140310_0500_atha.pgm",
    f"{DAY}/atha_t/ut05/20140310_0501_atha.pgm",  # changed: source newer
    f"{DAY}/ümlaut_t/ut05/Ωmega_20140310.pgm",
    f"{DAY}/bytes_t/ut05/%FE_done.pgm",  # the shard of a non-UTF-8 name (safe text)
    f"{DAY}/atha_t/ut06/rewritten.pgm",  # shard rewritten since compaction
]
PENDING = [f"{DAY}/日本_t/ut07/新_20140310.pgm", f"{DAY}/日本_t/ut07/変更.pgm"]  # 変更: changed
IGNORED = ["ignored/thumb_ü.pgm"]
NEW = ["new/ñew.pgm", "new/z.pgm", "Zz/a.pgm"]
RAW = [f"{DAY}/bytes_t/ut05/".encode() + n for n in (b"\xfe_done.pgm", b"\xff\xfe_0310.pgm")]


def reference_plan(source: str, out: str, model: str) -> dict:
    """The plan as the dict planner made it: a dict of the listing, a dict of the done-set (the
    segments' records, then the pending shards over them), a lookup per file."""
    entries = storage.list_entries(source, {}, keep=lambda f: format_of(f) is not None)
    root = storage.location(store.model_prefix(out, model))
    done = {}
    for uri in SegmentTable(root).open().file_uris():
        t = pq.read_table(uri, columns=["file", "shard_mtime"])
        done.update(zip(t["file"].to_pylist(), t["shard_mtime"].to_pylist(), strict=True))
    for s, (m, _) in pending.candidate_entries(root).items():
        done[pending.shard_relpath(s, root.uri)] = m
    prefix = store.ignored_uri(out, "x", model)[: -len("x.json")]
    ignored = {
        os.path.relpath(os.path.join(d, f), prefix)[: -len(".json")]
        for d, _, fs in os.walk(prefix)
        for f in fs
    }
    todo, skipped, n_ignored, changed = [], 0, 0, set()
    for f, (mtime, _) in entries.items():
        rel = storage.relative_path(f, source)
        if rel in done:
            shard = done[rel]
            if not (mtime is not None and shard is not None and mtime > shard):
                skipped += 1
                continue
            changed.add(rel)
        elif rel in ignored:
            n_ignored += 1
            continue
        todo.append((storage.safe_text(f), rel))
    sizes = {f: entries[f][1] for f in entries if storage.safe_text(f) in dict(todo)}
    return {"todo": todo, "skipped": skipped, "ignored": n_ignored, "changed": changed,
            "seen": len(entries), "sizes": sizes}  # fmt: skip


def _touch(path, when: float) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"x" * (len(path) % 7 + 1))  # sizes differ: read order uses them
    os.utime(path, (when, when))


def test_columns_plan_equals_the_dict_plan(tmp_path):
    src, out = tmp_path / "archive", str(tmp_path / "out")
    old = time.time() - 3600
    for rel in [*COMPACTED[:3], COMPACTED[4], *PENDING, *IGNORED, *NEW]:
        _touch(str(src / rel), old)
    for raw in RAW:
        _touch(os.fsencode(src) + b"/" + raw, old)
    write_code_shards(out, COMPACTED, 2, model=MODEL, threads=1)
    root = storage.location(store.model_prefix(out, MODEL))
    assert compact.compact(root, target_rows=400)["files"] == len(COMPACTED)
    os.utime(src / COMPACTED[4], None)  # newer than its compacted shard ...
    time.sleep(0.05)
    write_code_shards(out, [COMPACTED[4], *PENDING], 2, model=MODEL, threads=1)  # ... not this
    for rel in (COMPACTED[1], PENDING[1]):
        os.utime(src / rel, None)  # modified after its shard was written
    for rel in IGNORED:
        storage.location(store.ignored_uri(out, rel, MODEL)).write_atomic(b"{}")

    plan = plan_files(SourceOptions(source=str(src), out=out), MODEL, {}, {})
    ref = reference_plan(str(src), out, MODEL)

    assert [(t.uri, t.rel) for t in plan.todo] == ref["todo"]
    assert (plan.seen, plan.skipped, plan.ignored) == (ref["seen"], ref["skipped"], ref["ignored"])
    assert plan.changed == ref["changed"]
    assert plan.sizes == ref["sizes"]
    # and the reference itself says what this listing holds: not two plans wrong alike
    assert plan.changed == {COMPACTED[1], PENDING[1]}
    assert plan.seen == 12 and plan.ignored == 1 and plan.skipped == 5
    raw_new = f"{DAY}/bytes_t/ut05/%FF%FE_0310.pgm"  # the listed name, as safe text
    assert {t.rel for t in plan.todo} == {*plan.changed, *NEW, raw_new}


def test_file_records_are_a_dict_filled_in_row_order():
    files = ["b", "ü", "a", "日", "b", "Z", "a\u00e9", "ä"]
    mtimes = [1.0, 2.0, None, 4.0, 5.0, 6.0, 7.0, 8.0]
    ref = {}
    for i, (f, m) in enumerate(zip(files, mtimes, strict=True)):
        ref[f] = (m, f"s{i % 3}")
    rec = FileRecords.build(files, mtimes, [i % 3 for i in range(len(files))], ["s0", "s1", "s2"])
    assert dict(rec.items()) == ref and list(rec) == sorted(ref)  # Python's code point order
    probe = [*ref, "missing", "", "bz"]
    assert rec.lookup(probe) == [ref.get(p) for p in probe]
    assert [rec.get(p) for p in probe] == [ref.get(p) for p in probe]
    more = rec.updated(["a", "new"], [9.0, None])
    assert more["a"] == (9.0, None) and more["new"] == (None, None) and more["b"] == ref["b"]
    assert len(FileRecords.empty()) == 0 and FileRecords.empty().lookup(["a"]) == [None]
    with pytest.raises(KeyError):
        rec["missing"]
    # the segments' files read in order of their ranges: kept as they are when sorted, unique
    assert FileRecords.if_sorted(["a", "b", "ü"], [1, 2, 3], [0, 0, 0]) is not None
    assert FileRecords.if_sorted(["a", "a"], [1, 2], [0, 0]) is None
    assert FileRecords.if_sorted(["b", "a"], [1, 2], [0, 0]) is None
    assert last_of_runs(pa.array(["a", "a", "b", "c", "c"])).tolist() == [0, 1, 1, 0, 1]
