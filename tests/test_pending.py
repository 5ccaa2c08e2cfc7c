"""Pending marks: the catalogue lists only folders that may hold pending shards.

What could break: a compacted-but-not-vacuumed shard still listed on open (the cost this
removes), a shard that a mark should cover and does not (frames lost), a retire that deletes
the mark of a shard written while it ran, an old root (no marks) read wrong after adoption.
Every state is checked against the kernels on the canonical concatenation, exactly once.
"""

from __future__ import annotations

import time

import pytest
from code_archive import (
    CLASSES,
    MODEL,
    NBITS,
    Archive,
    assert_equals_kernels,
    assert_exactly_once,
)

from pipeline import storage
from pipeline.codes import catalogue, compact, pending, store, vacuum
from pipeline.synth.codes import archive_relpaths, make_codes, write_code_shards

RELS = archive_relpaths(120)  # 4 sites, 30 minutes: 4 hour folders


@pytest.fixture
def arch(tmp_path):
    a = Archive(tmp_path / "codes", marked=True)
    a.write(RELS)
    return a


@pytest.fixture
def listed(monkeypatch):
    """The shard URIs that listings return while the test runs (what open_catalogue pays for)."""
    seen: list[str] = []
    folder, whole = storage.Location.list_folder, storage.Location.list_entries

    def list_folder(self, *a, **k):
        out = folder(self, *a, **k)
        seen.extend(u for u in out if u.endswith(store.SHARD_SUFFIX))
        return out

    def list_entries(self, *a, **k):
        out = whole(self, *a, **k)
        seen.extend(u for u in out if u.endswith(store.SHARD_SUFFIX))
        return out

    monkeypatch.setattr(storage.Location, "list_folder", list_folder)
    monkeypatch.setattr(storage.Location, "list_entries", list_entries)
    return seen


def compact_and_retire(arch, target_rows=400):
    s = compact.compact(arch.model_loc(), target_rows=target_rows)
    return s, pending.retire(arch.model_loc())


def test_compacted_shards_are_not_listed_on_open(arch, listed):
    root = arch.model_loc()
    assert pending.is_marked_root(root)
    assert set(pending.list_marks(root)) == {pending.folder_of(r) for r in RELS}
    assert len(arch.catalogue().shards) == 120
    _, retired = compact_and_retire(arch)
    assert retired["folders"] == 4 and not pending.list_marks(root)
    assert len(store.list_shards(root.uri)) == 120  # left on storage for the grace period
    listed.clear()
    cat = arch.catalogue()
    assert not cat.shards and listed == []  # none of the 120 compacted shards was listed
    assert_exactly_once(arch)
    assert_equals_kernels(arch)
    # the next hour: only its own folders are listed, not the compacted ones beside them (a
    # folder is the unit: a new shard in a compacted folder would list that folder's shards)
    new = archive_relpaths(244)[240:]
    arch.write(new, seed=4)
    listed.clear()
    assert sorted(p.name for p in arch.catalogue().shards) == sorted(new)
    assert sorted(listed) == sorted(store.shard_uri(arch.root, r, MODEL) for r in new)
    assert set(catalogue.committed_files(root)) == set(RELS) | set(new)
    assert_exactly_once(arch)


def test_reingested_file_after_retire_replaces_its_rows(arch):
    compact_and_retire(arch)
    rel = sorted(RELS)[41]
    codes, labels = make_codes(7, NBITS, CLASSES, seed=9)
    time.sleep(0.02)  # a later modification time than the compacted shard's
    write_code_shards(
        arch.root, [rel], 7, NBITS, CLASSES, model=MODEL, codes_labels=(codes, labels), mark=False
    )
    # killed before its mark: not visible, and ingest redoes it (its source is newer)
    assert not arch.catalogue().shards
    assert_exactly_once(arch)
    pending.mark(arch.model_loc(), [rel])
    arch.rows[rel] = (codes, labels)
    cat = arch.catalogue()
    assert [p.name for p in cat.shards] == [rel]
    assert sum(1 for p in cat.segments if rel in p.drop) == 1
    assert_exactly_once(arch)
    assert_equals_kernels(arch)
    assert pending.retire(arch.model_loc())["marks_removed"] == 0  # still pending: kept
    s, retired = compact_and_retire(arch)
    assert s["files"] == 1 and retired["marks_removed"] == 1
    assert not arch.catalogue().shards
    assert_exactly_once(arch)
    assert_equals_kernels(arch)


def test_unmarked_shard_on_a_marked_root_is_not_done(arch):
    compact_and_retire(arch)
    extra = archive_relpaths(124)[120:]
    write_code_shards(arch.root, extra, 20, NBITS, CLASSES, model=MODEL, mark=False)  # killed
    done = catalogue.committed_files(arch.model_loc())
    assert set(done) == set(RELS)  # ingest plans the four files again
    assert not arch.catalogue().shards
    assert compact.compact(arch.model_loc(), target_rows=400)["files"] == 0


def test_retire_keeps_the_mark_of_a_shard_written_while_it_runs(arch, monkeypatch):
    compact.compact(arch.model_loc(), target_rows=400)
    late = archive_relpaths(121)[120]  # a folder that already holds compacted shards
    assert pending.folder_of(late) in pending.list_marks(arch.model_loc())
    listing = pending.folder_entries

    def then_ingest_writes(root, folders):
        out = listing(root, folders)  # retire has listed the folders: now a shard + its mark
        if not arch.rows.get(late):
            arch.write([late], seed=6)
        return out

    monkeypatch.setattr(pending, "folder_entries", then_ingest_writes)
    retired = pending.retire(arch.model_loc())
    monkeypatch.undo()
    assert retired["folders"] == 4  # the marks it listed; not the one written after
    assert list(pending.list_marks(arch.model_loc())) == [pending.folder_of(late)]
    assert [p.name for p in arch.catalogue().shards] == [late]
    assert_exactly_once(arch)
    assert_equals_kernels(arch)


def test_catalogue_opened_across_a_compaction_sees_every_frame_once(arch, monkeypatch):
    """The listing comes before the segments: a compaction and retire landing between the two
    must not hide the shards it consumed (they are in the segments read after)."""
    listing = catalogue.candidate_entries

    def then_compaction_lands(root):
        out = listing(root)
        monkeypatch.setattr(catalogue, "candidate_entries", listing)  # once
        compact_and_retire(arch)
        return out

    monkeypatch.setattr(catalogue, "candidate_entries", then_compaction_lands)
    cat = arch.catalogue()
    monkeypatch.undo()
    assert cat.segments and not cat.shards
    assert_exactly_once(arch)


def test_old_root_is_adopted_with_its_pending_shards(tmp_path, listed):
    a = Archive(tmp_path / "codes", marked=False)  # written before marks: listed whole
    a.write(RELS[:60])
    compact.compact(a.model_loc(), target_rows=400)
    a.write(RELS[60:], seed=2)  # pending, no marks
    root = a.model_loc()
    assert not pending.is_marked_root(root)
    before = [(p.name, p.kind) for p in a.catalogue().parts]
    a.marked = True
    a.write(archive_relpaths(124)[120:], seed=3)  # the first marking writer adopts the root
    assert pending.is_marked_root(root)
    pend = {pending.folder_of(r) for r in RELS[60:] + archive_relpaths(124)[120:]}
    assert set(pending.list_marks(root)) == pend
    after = [(p.name, p.kind) for p in a.catalogue().parts if p.kind == "segment"]
    assert after == [x for x in before if x[1] == "segment"]
    assert {p.name for p in a.catalogue().shards} == set(RELS[60:]) | set(
        archive_relpaths(124)[120:]
    )
    assert_exactly_once(a)
    assert_equals_kernels(a)


def test_vacuum_retires_marks_and_keeps_pending_ones(arch):
    compact.compact(arch.model_loc(), target_rows=400)
    new = archive_relpaths(124)[120:]
    arch.write(new, seed=7)
    out = vacuum.vacuum(arch.model_loc(), grace_hours=0)
    assert out["shards_removed"] == 120
    assert set(pending.list_marks(arch.model_loc())) == {pending.folder_of(r) for r in new}
    assert sorted(p.name for p in arch.catalogue().shards) == sorted(new)
    assert_exactly_once(arch)
    assert_equals_kernels(arch)


def test_mark_buffer_marks_in_batches_and_on_flush(tmp_path):
    root = storage.location(str(tmp_path / "m"))
    buf = pending.MarkBuffer(root, every=3, seconds=3600)
    buf.add("a/x")
    buf.add("a/y")
    assert not pending.list_marks(root)  # not yet due: two files
    buf.add("b/z")
    assert {f: len(u) for f, u in pending.list_marks(root).items()} == {"a": 1, "b": 1}
    buf.add("c/w")
    buf.flush()
    assert set(pending.list_marks(root)) == {"a", "b", "c"}
    assert pending.is_marked_root(root)


def test_mark_buffer_keeps_files_when_a_mark_cannot_be_written(tmp_path, monkeypatch):
    root = storage.location(str(tmp_path / "m"))
    buf = pending.MarkBuffer(root, every=100, seconds=3600)
    buf.add("a/x")

    def broken(*_):
        raise OSError("disk full")

    monkeypatch.setattr(pending, "_write_mark", broken)
    with pytest.raises(OSError, match="disk full"):
        buf.flush()
    assert buf.rels == {"a/x"}  # kept for the next try
    monkeypatch.undo()
    buf.flush()
    assert set(pending.list_marks(root)) == {"a"} and not buf.rels


@pytest.mark.integration
def test_marks_through_s3(s3):
    bucket = s3.bucket("marks")
    a = Archive(f"s3://{bucket}/out", s3.storage_options, marked=True)
    a.write(RELS[:40])
    assert len(a.catalogue().shards) == 40
    compact_and_retire(a)
    assert not pending.list_marks(a.model_loc()) and not a.catalogue().shards
    a.write(RELS[40:60], seed=1)
    assert sorted(p.name for p in a.catalogue().shards) == sorted(RELS[40:60])
    assert_exactly_once(a)
    assert_equals_kernels(a)


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_compaction_lists_only_marked_folders_at_any_group_depth(arch, depth, monkeypatch):
    """On a marked root the plan lists the marked folders, whatever the grouping; an unmarked
    shard (its run killed before the mark) waits for its file's re-ingest."""
    from pipeline.codes import compact_plan

    compact_and_retire(arch)
    late = archive_relpaths(124)[120:]
    write_code_shards(arch.root, late[:2], 20, NBITS, CLASSES, model=MODEL)  # marked
    write_code_shards(arch.root, late[2:], 20, NBITS, CLASSES, model=MODEL, mark=False)
    listed = []
    real = pending.folder_entries
    monkeypatch.setattr(
        compact_plan.pending, "folder_entries", lambda r, f: listed.extend(f) or real(r, f)
    )
    s = compact.compact(arch.model_loc(), target_rows=400, group_depth=depth)
    assert s["files"] == 2
    assert set(listed) <= {pending.folder_of(r) for r in late}
    done = catalogue.committed_files(arch.model_loc())
    assert set(late[:2]) <= set(done) and not set(late[2:]) & set(done)
