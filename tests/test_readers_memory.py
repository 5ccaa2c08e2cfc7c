"""Peak memory of one read task on the hostile files of issue 12 at their full sizes (a 1000 MiB
GNU long name and pax header in small .tar.gz files, a 700 MB Parquet cell in a few KB, a 50 MB
PGM comment line, 40 frames of distinct sizes up to 4096 x 4096 for the mask cache): each in a
fresh process (benchmarks/hostile_memory.py), each under the 2 GB target, each with its reason.
Slow (decompresses about 2 GB and builds a 700 MB cell), so run with --runslow or CI=true.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "hostile_memory.py"
EXPECT = {
    "tar_gnu_longname_1000mib": ("error", "GNU long name of 1048576000 bytes"),
    "tar_pax_header_1000mib": ("error", "pax extended header of 1048576000 bytes"),
    "parquet_700mb_blob": ("error", "MAX_PARQUET_PAGE_BYTES"),
    "pgm_50mb_comment_line": ("error", "comment line longer than 4096 bytes"),
    "tar_frames_of_40_sizes_to_4096": (None, None),
}


def test_hostile_files_stay_under_2_gb_each():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--only", *EXPECT],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout)
    for case, (kind, words) in EXPECT.items():
        r = results[case]
        assert "error" not in r, (case, r)
        assert r["peak_mb"] < 2000, (case, r)
        assert "fail" not in r["rows"], (case, r)
        if kind is not None:
            assert r["rows"].get(kind) and any(words in x for x in r["reasons"]), (case, r)
    assert results["tar_gnu_longname_1000mib"]["rows"].get("frame") == 1  # the image after it
    assert results["tar_frames_of_40_sizes_to_4096"]["rows"].get("frame") == 40
