"""Screenshots of the benchmark report as a browser shows it, for people to look at.

Writes synthetic codes of models of 16, 32 and 64 bits (--bits; tests/report_fixtures.py), runs
`aurorahash benchmark --report` over them, opens the page in headless Chromium offline with the
same checks as the tests (tests/browser.py), and saves a full-page screenshot. The job runs inside
its temporary folder with relative paths, so the page shows `codes` and `queries`, not the
machine's temporary path; any absolute path left on the page is reported (`absolute_paths`).

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
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _record  # noqa: E402
from browser import assert_renders, render  # noqa: E402
from report_fixtures import write_models  # noqa: E402

from jobs.cli import main  # noqa: E402


def _benchmark(database: str, queries: str) -> tuple[int, dict]:
    argv = ["benchmark", "--database", database, "--queries", queries, "--no-ray"]
    buf = StringIO()
    with redirect_stdout(buf):
        rc = main([*argv, "--topk", "100", "--report", "reports"])
    return rc, json.loads(buf.getvalue().strip().splitlines()[-1])


def run(out: str, bits: tuple[int, ...], db_files: int, query_files: int, width: int) -> dict:
    out = str(Path(out).resolve())
    with tempfile.TemporaryDirectory() as tmp, _record.inside(tmp):
        write_models(
            Path("codes"), Path("queries"), bits, db_files=db_files, query_files=query_files
        )
        rc, summary = _benchmark("codes", "queries")
        if rc != 0:  # a checkout whose catalogue refuses relative local paths
            print(
                f"WARNING: benchmark with relative paths failed ({summary.get('error')}); "
                "again with absolute ones, which the page will show",
                file=sys.stderr,
            )
            rc, summary = _benchmark(f"{tmp}/codes", f"{tmp}/queries")
        if rc != 0:
            raise SystemExit(f"benchmark failed: {summary}")
        page = render(summary["report"], screenshot=out, width=width)
        assert_renders(page, images=4 if len(set(bits)) > 1 else 3)
    shown = _record.absolute_paths(page.text)
    if shown:
        print(f"WARNING: the page shows absolute paths: {shown}", file=sys.stderr)
    return {
        "screenshot": _record.portable(out),
        "images": len(page.images),
        "models": len(summary["models"]),
        "absolute_paths": shown,
    }


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
