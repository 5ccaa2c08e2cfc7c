"""Screenshots of the benchmark report as a browser shows it, for people to look at.

Writes synthetic codes of models of 16, 32 and 64 bits (--bits; tests/report_fixtures.py), runs
`aurorahash benchmark --report` over them, opens the page in headless Chromium offline with the
same checks as the tests (tests/browser.py), and saves a full-page screenshot.

  python benchmarks/report_screenshots.py --out benchmarks/results/report-benchmark.png
  python benchmarks/report_screenshots.py --bits 48 \
      --out benchmarks/results/report-benchmark-one-model.png
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from browser import assert_renders, render  # noqa: E402
from report_fixtures import write_models  # noqa: E402

from jobs.cli import main  # noqa: E402


def run(out: str, bits: tuple[int, ...], db_files: int, query_files: int, width: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_models(root / "db", root / "q", bits, db_files=db_files, query_files=query_files)
        argv = ["benchmark", "--database", str(root / "db"), "--queries", str(root / "q")]
        buf = StringIO()
        with redirect_stdout(buf):
            rc = main([*argv, "--no-ray", "--topk", "100", "--report", str(root / "reports")])
        summary = json.loads(buf.getvalue().strip().splitlines()[-1])
        if rc != 0:
            raise SystemExit(f"benchmark failed: {summary}")
        page = render(summary["report"], screenshot=out, width=width)
        assert_renders(page, images=4 if len(set(bits)) > 1 else 3)
    return {"screenshot": out, "images": len(page.images), "models": len(summary["models"])}


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="benchmarks/results/report-benchmark.png")
    p.add_argument("--bits", default="16,32,64", help="code length of each model")
    p.add_argument("--db-files", type=int, default=100, help="minute files of 20 codes")
    p.add_argument("--query-files", type=int, default=10)
    p.add_argument("--width", type=int, default=1280, help="browser window width (px)")
    a = p.parse_args()
    print(
        json.dumps(
            run(a.out, tuple(int(b) for b in a.bits.split(",")), a.db_files, a.query_files, a.width)
        )
    )


if __name__ == "__main__":
    cli()
