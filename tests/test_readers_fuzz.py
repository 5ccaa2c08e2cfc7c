"""Seeded byte-level mutations of every format: readers yield Frames / FrameErrors or raise
CorruptFile / SkipFile, and nothing else (no stray exception types that would crash a worker)."""

from __future__ import annotations

import bz2
import gzip
import io
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import reader_fixtures as rf

from pipeline.readers import CorruptFile, Frame, FrameError, SkipFile, read_frames
from pipeline.synth import generate, pgm_minute_bytes, png_bytes

T0 = datetime(2020, 1, 1, tzinfo=timezone.utc)
TRIALS = 40


def _seeds(tmp_path) -> dict[str, bytes]:
    frames, labels = generate(3, size=16, seed=1)
    raw = pgm_minute_bytes(frames, T0, labels=labels)
    rf.write_asf_cdf(tmp_path / "c.cdf", frames, [T0] * 3)
    buf = io.BytesIO()
    pq.write_table(pa.table({"image": [png_bytes(f) for f in frames], "label": labels}), buf)
    rf.make_tar(tmp_path / "t.tar", [(f"{k}.png", png_bytes(frames[k])) for k in range(3)])
    return {
        "x.pgm": raw,
        "x.pgm.gz": gzip.compress(raw),
        "x.pgm.bz2": bz2.compress(raw),
        "thg_l1_asf_x_2020010100_v01.cdf": (tmp_path / "c.cdf").read_bytes(),
        "x.parquet": buf.getvalue(),
        "x.tar": (tmp_path / "t.tar").read_bytes(),
        "x.png": png_bytes(frames[0], label=labels[0], site="synt", time=T0),
    }


def _mutate(rng, data: bytes) -> bytes:
    b = bytearray(data)
    op = rng.integers(0, 3)
    if op == 0:  # flip bytes
        for _ in range(rng.integers(1, 8)):
            b[rng.integers(0, len(b))] = rng.integers(0, 256)
    elif op == 1:  # truncate
        b = b[: rng.integers(0, len(b))]
    else:  # insert junk
        i = rng.integers(0, len(b))
        b = b[:i] + rng.integers(0, 256, rng.integers(1, 50)).astype(np.uint8).tobytes() + b[i:]
    return bytes(b)


@pytest.mark.parametrize(
    "name",
    [
        "x.pgm",
        "x.pgm.gz",
        "x.pgm.bz2",
        "thg_l1_asf_x_2020010100_v01.cdf",
        "x.parquet",
        "x.tar",
        "x.png",
    ],
)
def test_mutated_files_fail_only_in_the_documented_ways(tmp_path, name):
    data = _seeds(tmp_path)[name]
    rng = np.random.default_rng(sum(name.encode()))
    path = tmp_path / name
    outcomes = set()
    for _ in range(TRIALS):
        path.write_bytes(_mutate(rng, data))
        try:
            for item in read_frames(str(path)):
                assert isinstance(item, (Frame, FrameError)), type(item)
                outcomes.add(type(item).__name__)
        except (CorruptFile, SkipFile) as exc:
            assert exc.reason
            outcomes.add(type(exc).__name__)
    assert outcomes  # something was read or refused every time


# ---------------------------------------------------------------------------------------------
# Structure-aware fuzzing of real inputs (issue 12): real THEMIS minute files, PNGs of real
# frames, tar shards and Parquet tables, mutated by bit flips, truncation, junk, type changes
# and name bytes. For every trial:
#   - the reader yields Frames / FrameErrors or raises CorruptFile / SkipFile, nothing else;
#   - the read task (read_file_rows, the body Ray runs) turns it into rows without raising and
#     never calls it "fail" (kept for infrastructure);
#   - the good frames beside the damage (earlier PGM frames, other tar members, other Parquet
#     row groups or rows) all come through, pixel for pixel;
#   - memory stays bounded: Python/NumPy allocations (tracemalloc) and Arrow's pool peak.

import os  # noqa: E402
import struct  # noqa: E402
import tarfile  # noqa: E402
import tracemalloc  # noqa: E402
import zlib  # noqa: E402

from ingest_helpers import THEMIS  # noqa: E402

from pipeline.readers import limits  # noqa: E402

REAL_PGM = THEMIS / "20140310_0605_gill_themis19_full.pgm"
REAL_GZ = THEMIS / "20140310_0600_gill_themis19_full.pgm.gz"
PEAK_PY = 256 << 20  # per trial: what Python/NumPy may allocate at the peak
PEAK_ARROW = 512 << 20  # per trial: Arrow's pool
EDGE_TIMES = [
    "0001-01-01 00:00:00+05:00",
    "9999-12-31 23:59:59-05:00",
    "0000-00-00 99:99:99",
    "2014-03-10T06:05:00.058114+23:59",
    "\udcff\udcfe",
]


def _bounded(fn, *args):
    """fn(*args) under tracemalloc; asserts the Python and Arrow peaks stay under the caps."""
    pool = pa.default_memory_pool()
    base, top = pool.bytes_allocated(), pool.max_memory()
    tracemalloc.start()
    try:
        out = fn(*args)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < PEAK_PY, f"Python peak {peak >> 20} MiB"
    assert pool.max_memory() <= max(top, base + PEAK_ARROW), "Arrow peak above the cap"
    return out


def _read(path):
    """(items, exception): everything the reader yields, and the CorruptFile/SkipFile if any."""
    items = []
    try:
        for item in read_frames(str(path)):
            assert isinstance(item, (Frame, FrameError)), type(item)
            assert isinstance(getattr(item, "reason", ""), str)
            items.append(item)
    except (CorruptFile, SkipFile) as exc:
        assert exc.reason and isinstance(exc.reason, str)
        return items, exc
    return items, None


def _task_rows(path, rel="x"):
    """The read task's rows, preprocessed as the encoder actor does (its errors as rows)."""
    from pipeline.ingest.frame_rows import model_inputs, with_errors
    from pipeline.ingest.read import FileTask, read_file_rows
    from pipeline.model.preprocess import PreprocessConfig

    cfg = PreprocessConfig(size=16)
    blocks = list(read_file_rows(FileTask(str(path), rel)))
    blocks = [with_errors(b, model_inputs(b, cfg).errors) for b in blocks]
    rows = pa.concat_tables(blocks).to_pylist()
    kinds = [r["kind"] for r in rows]
    assert "fail" not in kinds, [r["reason"] for r in rows if r["kind"] == "fail"]
    assert kinds[-1] == "end" and rows[-1]["expected"] == len(rows) - 1
    for r in rows:
        for k in ("source", "rel", "reason", "site"):
            if r[k] is not None:
                r[k].encode("utf-8")  # always valid text
    return rows


def _frames_of(items):
    return {i.index: i for i in items if isinstance(i, Frame)}


def _pgm_offsets(raw: bytes) -> list[int]:
    """Start of each frame of a stream0 file (parsed here, independently of the reader)."""
    out, pos = [], 0
    while pos < len(raw):
        out.append(pos)
        p, nums = pos + 3, []
        while len(nums) < 3:
            e = raw.index(b"\n", p)
            line, p = raw[p:e], e + 1
            if not line.startswith(b"#"):
                nums += [int(v) for v in line.split()]
        pos = p + nums[0] * nums[1] * (2 if nums[2] > 255 else 1)
    return out


@pytest.fixture(scope="module")
def real_pgm():
    raw = REAL_PGM.read_bytes()
    frames = [f.pixels for f in read_frames(str(REAL_PGM))]
    offsets = _pgm_offsets(raw)
    assert len(frames) == len(offsets) == 20
    return raw, frames, offsets


def _mutate_pgm_tail(rng, raw: bytes, start: int, op: int, edge: str = EDGE_TIMES[0]) -> bytes:
    """Damage only bytes at or after `start` (a frame boundary), by operation `op` (0..6)."""
    head, tail = raw[:start], bytearray(raw[start:])
    if op == 0:  # bit flips
        for _ in range(rng.integers(1, 16)):
            i = rng.integers(0, len(tail))
            tail[i] ^= 1 << rng.integers(0, 8)
    elif op == 1:  # truncation
        tail = tail[: rng.integers(0, len(tail))]
    elif op == 2:  # junk inserted
        i = rng.integers(0, len(tail))
        tail[i:i] = rng.bytes(int(rng.integers(1, 300)))
    elif op == 3:  # absurd dimensions / maxval
        text = bytes(tail[:4000])
        e = text.index(b"65535\n")
        s = text.rindex(b"\n", 0, e - 1) + 1
        tail[s:e] = rng.choice([b"99999999 99999999\n", b"0 0\n", b"256 256\n70000\n"])
    elif op == 4:  # a time at the calendar's limits (or garbage) in this frame's header
        text = bytes(tail[:4000])
        i = text.index(b'"Image request start" ') + len(b'"Image request start" ')
        j = text.index(b"\n", i)
        tail[i:j] = edge.encode("utf-8", "surrogateescape")
    elif op == 5:  # an over-long comment line
        tail[3:3] = b"#" + b"A" * int(rng.integers(4000, 200_000)) + b"\n"
    else:  # a header line with bytes that are not text
        tail[3:3] = b'#"Site unique ID" \xff\xfe\x00\x80\n'
    return head + bytes(tail)


def test_fuzz_real_themis_pgm_keeps_the_frames_before_the_damage(tmp_path, real_pgm):
    raw, frames, offsets = real_pgm
    rng = np.random.default_rng(12)
    path = tmp_path / "20140310_0605_gill_themis19_full.pgm"
    edges_seen = 0
    for trial in range(35):
        k, op = int(rng.integers(1, 20)), trial % 7
        edge = EDGE_TIMES[(trial // 7) % len(EDGE_TIMES)]
        path.write_bytes(_mutate_pgm_tail(rng, raw, offsets[k], op, edge))
        items, exc = _bounded(_read, path)
        assert exc is None  # frame 0 is intact: never a whole-file verdict
        got = _frames_of(items)
        for i in range(k):  # every frame before the damage, pixel for pixel
            np.testing.assert_array_equal(got[i].pixels, frames[i])
        assert [i.index for i in items] == sorted(i.index for i in items)
        reasons = " | ".join(i.reason for i in items if isinstance(i, FrameError))
        if op == 4 and "representable" in reasons:  # the damaged frame only, then the rest
            edges_seen += 1
            assert len(items) == 20 and len(got) == 19 and k not in got
        if op == 5:
            assert "comment line longer than 4096 bytes" in reasons
        if trial % 6 == 0:
            rows = _task_rows(path)
            assert sum(r["kind"] == "frame" for r in rows) >= k
    assert edges_seen >= 2


def test_fuzz_real_themis_pgm_gz(tmp_path):
    data = REAL_GZ.read_bytes()
    rng = np.random.default_rng(13)
    path = tmp_path / REAL_GZ.name
    for _ in range(20):
        path.write_bytes(_mutate(rng, data))
        items, _ = _bounded(_read, path)
        assert [i.index for i in items] == list(range(len(items)))  # in order, no gaps


def _png_chunks(data: bytes):
    pos, out = 8, []
    while pos + 8 <= len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        out.append((data[pos + 4 : pos + 8], pos + 8, n))
        pos += 12 + n
    return out


def _mutate_png_chunk(rng, data: bytes) -> bytes:
    """Damage one chunk's data and fix its CRC, so Pillow parses what it holds."""
    b = bytearray(data)
    chunks = _png_chunks(data)
    typ, start, n = chunks[rng.integers(0, len(chunks))]
    if n == 0:
        return data
    op = rng.integers(0, 3)
    if op == 0 or typ != b"tEXt":
        for _ in range(rng.integers(1, 6)):
            b[start + rng.integers(0, n)] = rng.integers(0, 256)
    elif op == 1:  # a text value: calendar edges, bytes that are not text
        key = bytes(b[start : start + n]).split(b"\0", 1)[0]
        edge = EDGE_TIMES[rng.integers(0, len(EDGE_TIMES))].encode("utf-8", "surrogateescape")
        value = key + b"\0" + edge
        b[start - 8 : start + n + 4] = struct.pack(">I", len(value)) + typ + value + bytes(4)
        n, start = len(value), start
    else:
        b[start : start + n] = rng.bytes(n)
    crc = zlib.crc32(bytes(b[start - 4 : start + n])) & 0xFFFFFFFF
    b[start + n : start + n + 4] = struct.pack(">I", crc)
    return bytes(b)


def test_fuzz_png_of_a_real_frame(tmp_path, real_pgm):
    _, frames, _ = real_pgm
    seed = png_bytes(frames[3][::4, ::4].copy(), label=1, site="gill", time=T0)
    rng = np.random.default_rng(14)
    path = tmp_path / "x.png"
    for trial in range(40):
        data = _mutate_png_chunk(rng, seed) if trial % 2 else _mutate(rng, seed)
        path.write_bytes(data)
        items, exc = _bounded(_read, path)
        if trial % 5 == 0:
            _task_rows(path)


def _tar_bytes(members, gz: bool, fmt=tarfile.GNU_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for info, data in members:
            tf.addfile(info, None if data is None else io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw, compresslevel=1) if gz else raw


def _member(name, data=b"", kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, (data if kind == tarfile.REGTYPE else None)


def _hostile_member(rng, png: bytes):
    op = int(rng.integers(0, 8))
    stem = os.fsdecode(rng.bytes(int(rng.integers(1, 12))).replace(b"/", b"_").replace(b"\0", b"_"))
    stem = stem.replace(".", "_") or "_"
    if op == 0:  # a name of random bytes (not UTF-8), holding a good image
        return [_member(f"m/{stem}.png", png)], True
    if op == 1:  # flipped bytes in the image
        b = bytearray(png)
        for _ in range(rng.integers(1, 10)):
            b[rng.integers(0, len(b))] ^= 1 << rng.integers(0, 8)
        return [_member("m/flip.png", bytes(b))], False
    if op == 2:  # truncated image, garbage label
        return [
            _member("m/cut.png", png[: rng.integers(0, len(png))]),
            _member("m/cut.cls", rng.bytes(9)),
        ], False
    if op == 3:  # escaping names and links
        name = ["../../etc/x.png", "/abs/x.png", "C:/x.png", "m/../../x.png"][rng.integers(0, 4)]
        return [_member(name, png)], False
    if op == 4:  # links and devices
        kind = [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE][
            rng.integers(0, 4)
        ]
        return [_member("m/dev.png", kind=kind, link="/etc/passwd")], False
    if op == 5:  # a long name within the cap (GNU long-name header), non-UTF-8 bytes in it
        return [_member("m/" + "n" * int(rng.integers(100, 3000)) + stem + ".png", png)], True
    if op == 6:  # a sample with many members and no image
        return [_member(f"m/many.{k}.txt", b"x") for k in range(int(rng.integers(1, 40)))], False
    return [_member("m/notpng.png", rng.bytes(int(rng.integers(1, 2000))))], False


def test_fuzz_tar_keeps_the_samples_beside_a_hostile_one(tmp_path, real_pgm):
    _, frames, _ = real_pgm
    a_img, b_img = frames[0][::8, ::8].copy(), frames[1][::8, ::8].copy()
    a, b = png_bytes(a_img), png_bytes(b_img)
    rng = np.random.default_rng(15)
    for trial in range(40):
        hostile, decodes = _hostile_member(rng, a)
        members = [_member("a/000.png", a), *hostile, _member("z/999.png", b)]
        gz = bool(trial % 2)
        fmt = tarfile.PAX_FORMAT if trial % 3 == 0 else tarfile.GNU_FORMAT
        path = tmp_path / ("s.tar.gz" if gz else "s.tar")
        try:
            path.write_bytes(_tar_bytes(members, gz, fmt))
        except (ValueError, UnicodeError):  # a name this format cannot store
            continue
        items, exc = _bounded(_read, path)
        assert exc is None
        got = {f.meta["key"]: f for f in items if isinstance(f, Frame)}
        np.testing.assert_array_equal(got["a/000"].pixels, a_img)
        np.testing.assert_array_equal(got["z/999"].pixels, b_img)
        if decodes:
            assert len(got) == 3, [getattr(i, "reason", None) for i in items]
        else:
            assert any(isinstance(i, FrameError) for i in items) or len(got) == 3
        if trial % 4 == 0:
            rows = _task_rows(path)
            assert sum(r["kind"] == "frame" for r in rows) >= 2


def test_fuzz_tar_extended_headers_that_claim_too_much(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "MAX_TAR_HEADER_BYTES", 64 << 10)
    good = png_bytes(np.full((8, 8), 5, np.uint8))
    rng = np.random.default_rng(16)
    path = tmp_path / "h.tar.gz"
    for trial in range(12):
        kind = ["gnu-longname", "gnu-longlink", "pax"][trial % 3]
        claimed = int(rng.integers(64 << 10, 4 << 20))
        fill = [b"\0", b"A", b"\xff"][trial % 3]
        rf.hostile_tar_gz(path, claimed, [("after.png", good)], kind=kind, fill=fill)
        items, exc = _bounded(_read, path)
        assert exc is None
        got = [f.meta["key"] for f in items if isinstance(f, Frame)]
        bad = [i.reason for i in items if isinstance(i, FrameError)]
        if claimed > 64 << 10:
            assert got == ["after"] and len(bad) == 1 and f"{claimed} bytes" in bad[0]


PARQUET_TYPES = {
    "image": [
        ("binary", lambda imgs: pa.array(imgs, pa.binary())),
        ("large_binary", lambda imgs: pa.array(imgs, pa.large_binary())),
        (
            "hf struct",
            lambda imgs: pa.array(
                [{"bytes": x, "path": "p"} for x in imgs],
                pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
            ),
        ),
        (
            "struct of int64",
            lambda imgs: pa.array([{"bytes": 5}] * len(imgs), pa.struct([("bytes", pa.int64())])),
        ),
        ("int64", lambda imgs: pa.array(range(len(imgs)), pa.int64())),
        ("string", lambda imgs: pa.array(["x"] * len(imgs))),
        ("list of binary", lambda imgs: pa.array([[x] for x in imgs])),
    ],
    "time": [
        (
            "s, huge",
            lambda n: pa.array([0, 10**13, -(10**13)][:n] + [1] * (n - 3), pa.timestamp("s")),
        ),
        (
            "ns extremes",
            lambda n: pa.array([2**63 - 1, -(2**63) + 1] + [0] * (n - 2), pa.timestamp("ns")),
        ),
        (
            "us with tz",
            lambda n: pa.array([10**18, 5] + [0] * (n - 2), pa.timestamp("us", tz="+05:00")),
        ),
        ("int64", lambda n: pa.array([10**13] * n, pa.int64())),
        ("string", lambda n: pa.array(EDGE_TIMES[:2] + ["x"] * (n - 2))),
        ("date32", lambda n: pa.array([0, 2**31 - 1] + [1] * (n - 2), pa.date32())),
    ],
    "label": [
        ("int64 huge", lambda n: pa.array([2**62, -5] + [1] * (n - 2), pa.int64())),
        ("string", lambda n: pa.array(["arc", "\x00garbage"] + ["hot_spot"] * (n - 2))),
        ("float", lambda n: pa.array([float("nan"), float("inf")] + [2.0] * (n - 2))),
        ("bool", lambda n: pa.array([True] * n)),
        ("list", lambda n: pa.array([[1, 2]] * n)),
        ("decimal", lambda n: pa.array([1] * n, pa.decimal128(38, 0))),
    ],
    "site": [
        ("binary not text", lambda n: pa.array([b"\xff\xfe"] * n, pa.binary())),
        ("int", lambda n: pa.array(range(n))),
        ("struct", lambda n: pa.array([{"a": 1}] * n)),
    ],
}


def test_fuzz_parquet_type_changes(tmp_path, real_pgm):
    _, frames, _ = real_pgm
    imgs = [png_bytes(frames[k][::8, ::8].copy()) for k in range(4)]
    n = len(imgs)
    path = tmp_path / "t.parquet"
    rng = np.random.default_rng(17)
    for col, variants in PARQUET_TYPES.items():
        for what, make in variants:
            cols = {"image": pa.array(imgs, pa.binary()), "label": pa.array([0, 1, 2, 3])}
            cols[col] = make(imgs if col == "image" else n)
            pq.write_table(pa.table(cols), path, row_group_size=int(rng.integers(1, 5)))
            items, exc = _bounded(_read, path)
            usable = col != "image" or what in ("binary", "large_binary", "hf struct")
            if not usable:
                assert isinstance(exc, CorruptFile) and "no binary image column" in exc.reason
                continue
            assert exc is None, (col, what, exc)
            assert [i.index for i in items] == list(range(n)), (col, what)
            got = _frames_of(items)
            for i, e in enumerate(items):  # a row is refused only for a reason in its cells
                if isinstance(e, FrameError):
                    assert col == "time" and ("range" in e.reason or "time" in e.reason), e
                else:
                    np.testing.assert_array_equal(got[i].pixels, frames[i][::8, ::8])
            _task_rows(path)


def test_fuzz_parquet_damage_stays_in_its_row_group(tmp_path, real_pgm):
    _, frames, _ = real_pgm
    imgs = [png_bytes(frames[k][::8, ::8].copy()) for k in range(6)]
    path = tmp_path / "rg.parquet"
    pq.write_table(
        pa.table({"image": imgs, "label": list(range(6))}),
        path,
        row_group_size=2,
        compression=None,
    )
    raw = path.read_bytes()
    md = pq.ParquetFile(path).metadata
    rg1 = [md.row_group(1).column(i) for i in range(md.num_columns)]
    starts = [min(c.data_page_offset, c.dictionary_page_offset or c.data_page_offset) for c in rg1]
    lo = min(starts)
    hi = max(s + c.total_compressed_size for s, c in zip(starts, rg1, strict=True))
    assert hi <= min(md.row_group(2).column(i).data_page_offset for i in range(md.num_columns))
    rng = np.random.default_rng(18)
    for trial in range(40):
        b = bytearray(raw)
        if trial % 4 == 0:  # a page header that claims a huge page: the varint bytes
            i = lo + int(rng.integers(0, 12))
            b[i] = rng.integers(0x80, 0x100)
        else:
            for _ in range(rng.integers(1, 12)):
                b[lo + rng.integers(0, hi - lo)] ^= 1 << rng.integers(0, 8)
        path.write_bytes(bytes(b))
        items, exc = _bounded(_read, path)
        assert exc is None
        got = _frames_of(items)
        for i in (0, 1, 4, 5):  # row groups 0 and 2
            np.testing.assert_array_equal(got[i].pixels, frames[i][::8, ::8])
            assert got[i].label == i
        if trial % 8 == 0:
            _task_rows(path)


@pytest.mark.parametrize("name", ["x.pgm.gz", "x.png", "x.tar", "x.parquet"])
def test_fuzz_name_bytes(tmp_path, name):
    data = _seeds(tmp_path)[name] if name != "x.pgm.gz" else REAL_GZ.read_bytes()
    rng = np.random.default_rng(sum(name.encode()))
    for _ in range(5):
        raw = rng.bytes(int(rng.integers(1, 10))).replace(b"/", b"_").replace(b"\0", b"_")
        fname = os.fsdecode(raw + b"_" + name.encode())
        p = os.path.join(str(tmp_path), fname)
        with open(p, "wb") as f:
            f.write(data)
        items, exc = _read(p)
        assert exc is None and items and all(isinstance(i, Frame) for i in items)
        rows = _task_rows(p, rel=fname)
        assert sum(r["kind"] == "frame" for r in rows) == len(items)
        from pipeline.storage import safe_text

        assert {r["rel"] for r in rows} == {safe_text(fname)}
        os.unlink(p)
