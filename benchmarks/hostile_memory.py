"""Peak memory of one read task on each hostile input of issue 12, at the issue's sizes.

    python benchmarks/hostile_memory.py                 # all cases, one JSON document on stdout
    python benchmarks/hostile_memory.py --only tar_gnu_longname_1000mib
    python benchmarks/hostile_memory.py --json   # + benchmarks/results/hostile-memory-<date>/

Each case's file is built in a temporary folder (by this process), then read in a fresh child
process by `pipeline.ingest.read.read_file_rows` (the body of a Ray read task: the reader,
exactly what an ingest read task runs; preprocessing runs in the encoder actors). The child
reports its resident set after all imports (baseline) and its peak (VmHWM from
/proc/self/status, the kernel's high-water mark), plus the kinds and reasons of the rows it
made. Target (issue 12): no process above 2 GB on any single hostile file.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _record  # noqa: E402

THEMIS = REPO.parent / "shared" / "data" / "themis"
if not THEMIS.exists():
    THEMIS = Path("/work/shared/data/themis")
GOOD_PGM = THEMIS / "20140310_0605_gill_themis19_full.pgm"
LIMIT_MB = 2000


def _png(pixels) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _long_header_tar_gz(path: Path, claimed: int, kind: str) -> None:
    """A GNU long name / pax header declaring `claimed` bytes, a victim member, a good PNG."""
    import numpy as np

    head = tarfile.TarInfo("././@LongLink")
    head.type = {"longname": tarfile.GNUTYPE_LONGNAME, "pax": tarfile.XHDTYPE}[kind]
    head.size = claimed
    good = _png(np.full((64, 64), 9, np.uint8))
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) as gz:
        gz.write(head.tobuf(tarfile.GNU_FORMAT))
        piece, left = b"\0" * (1 << 20), claimed
        while left > 0:
            gz.write(piece[: min(left, len(piece))])
            left -= len(piece)
        gz.write(b"\0" * (-claimed % 512))
        for name, data in (("victim.png", b"x"), ("good.png", good)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            gz.write(info.tobuf(tarfile.GNU_FORMAT) + data + b"\0" * (-len(data) % 512))
        gz.write(b"\0" * 1024)


def _pgm(times) -> bytes:
    import numpy as np

    f = (np.arange(256 * 256, dtype=np.uint32) % 60000).astype(">u2").reshape(256, 256)
    return b"".join(
        f'P5\n#"Image request start" {t}\n256 256\n65535\n'.encode() + f.tobytes() for t in times
    )


def build(case: str, d: Path) -> tuple[str, str]:
    """Write the case's file under d; returns (path to read, its relative name)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    if case == "tar_gnu_longname_1000mib":
        p = d / "long.tar.gz"
        _long_header_tar_gz(p, 1000 << 20, "longname")
    elif case == "tar_pax_header_1000mib":
        p = d / "pax.tar.gz"
        _long_header_tar_gz(p, 1000 << 20, "pax")
    elif case == "parquet_700mb_blob":
        p = d / "blob.parquet"
        blob = b"\0" * (700 << 20)
        pq.write_table(pa.table({"image": [blob]}), p, compression="zstd")
        del blob
    elif case == "pgm_50mb_comment_line":
        p = d / "20140310_0600_gill_themis19_full.pgm"
        p.write_bytes(b"P5\n#" + b"A" * (50 << 20) + b"\n256 256\n65535\n" + bytes(131072))
    elif case == "pgm_time_0001_plus_0500":
        p = d / "20140310_0601_gill_themis19_full.pgm"
        p.write_bytes(_pgm(["2014-03-10 06:01:00 UTC", "0001-01-01 00:00:00+05:00"]))
    elif case == "pgm_time_9999_minus_0500":
        p = d / "20140310_0602_gill_themis19_full.pgm"
        p.write_bytes(_pgm(["9999-12-31 23:59:59-05:00", "2014-03-10 06:02:00 UTC"]))
    elif case == "parquet_image_struct_int64":
        p = d / "struct.parquet"
        image = pa.array([{"bytes": 5}], pa.struct([("bytes", pa.int64())]))
        pq.write_table(pa.table({"image": image}), p)
    elif case == "parquet_time_1e13_s":
        p = d / "time.parquet"
        img = _png(np.full((32, 32), 5, np.uint8))
        t = pa.array([10**13, 0], pa.timestamp("s"))
        pq.write_table(pa.table({"image": [img, img], "time": t}), p)
    elif case == "symlink_loop":
        p = d / "20140310_0603_gill_themis19_full.pgm"
        os.symlink(d / "other.pgm", p)
        os.symlink(p, d / "other.pgm")
    elif case == "fifo":
        p = d / "20140310_0604_gill_themis19_full.pgm"
        os.mkfifo(p)
    elif case == "non_utf8_name":
        p = Path(os.fsdecode(os.fsencode(str(d)) + b"/\xff\xfe_20140310.pgm"))
        shutil.copyfile(GOOD_PGM, p)
    elif case == "tar_frames_of_40_sizes_to_4096":  # the mask cache: one mask per size
        p = d / "sizes.tar"
        with tarfile.open(p, "w") as tf:
            for k in range(40):
                side = 4096 - 64 * k
                data = _png(np.zeros((side, side), np.uint8))
                info = tarfile.TarInfo(f"{k:03d}.png")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    elif case == "good_themis_pgm":
        p = d / GOOD_PGM.name
        shutil.copyfile(GOOD_PGM, p)
    else:
        raise SystemExit(f"unknown case {case}")
    return str(p), os.path.basename(str(p))


CASES = [
    "good_themis_pgm",
    "tar_gnu_longname_1000mib",
    "tar_pax_header_1000mib",
    "parquet_700mb_blob",
    "pgm_50mb_comment_line",
    "pgm_time_0001_plus_0500",
    "pgm_time_9999_minus_0500",
    "parquet_image_struct_int64",
    "parquet_time_1e13_s",
    "symlink_loop",
    "fifo",
    "non_utf8_name",
    "tar_frames_of_40_sizes_to_4096",
]


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(path: str, rel: str) -> None:
    sys.path.insert(0, str(REPO))
    import pyarrow as pa

    from pipeline.ingest.read import FileTask, read_file_rows
    from pipeline.ingest.rows import RowKind

    baseline = _status_mb("VmHWM")
    kinds, reasons = {}, []
    for block in read_file_rows(FileTask(path, rel)):
        for r in block.select(["kind", "reason"]).to_pylist():
            kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
            if r["kind"] not in (RowKind.FRAME, RowKind.END) and len(reasons) < 3:
                reasons.append(r["reason"][:200])
    out = {
        "baseline_mb": round(baseline, 1),
        "peak_mb": round(_status_mb("VmHWM"), 1),
        "arrow_peak_mb": round(pa.default_memory_pool().max_memory() / 2**20, 1),
        "rows": kinds,
        "reasons": reasons,
    }
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--child", nargs=2, metavar=("PATH", "REL"))
    _record.add_json_argument(ap, "hostile-memory")
    args = ap.parse_args()
    if args.child:
        child(os.fsdecode(os.fsencode(args.child[0])), args.child[1])
        return
    results = {}
    for case in args.only or CASES:
        d = Path(tempfile.mkdtemp(prefix="hostile-"))
        try:
            path, rel = build(case, d)
            size = os.lstat(path).st_size
            proc = subprocess.run(
                [sys.executable, __file__, "--child", path, rel],
                capture_output=True,
                text=True,
                timeout=600,
                errors="surrogateescape",
            )
            if proc.returncode != 0:
                results[case] = {"error": proc.stderr[-2000:]}
            else:
                results[case] = {"file_bytes": size, **json.loads(proc.stdout.splitlines()[-1])}
            results[case]["under_limit"] = results[case].get("peak_mb", 1e9) < LIMIT_MB
            print(case, json.dumps(results[case]), file=sys.stderr, flush=True)
        finally:
            shutil.rmtree(d, ignore_errors=True)
    print(json.dumps(results, indent=1))
    _record.write(args.json, {"limit_mb": LIMIT_MB, "cases": results})


if __name__ == "__main__":
    main()
