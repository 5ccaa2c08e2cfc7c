"""Screenshots of the search, train and demo reports as a browser shows them, for people.

search: ingests the real THEMIS files (../shared/data/themis: gill PGM minute files and a gako
CDF) with --model, runs `aurorahash search --image` on a few of their frames with --report, and
screenshots the page. page: screenshots a report that `train --report`, `evaluate --report` or
`make demo` wrote. Both open the page in headless Chromium offline with the tests' checks
(tests/browser.py).

  python benchmarks/query_report_screenshots.py search --model runs/aurora \\
      --out benchmarks/results/report-search.png
  python benchmarks/query_report_screenshots.py page runs/demo/report.html \\
      --out benchmarks/results/report-demo.png
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
from ingest_helpers import THEMIS  # noqa: E402

from jobs.cli import main  # noqa: E402

QUERIES = (
    "20140310_0603_gill_themis19_full.pgm.gz#3",
    "20140310_0605_gill_themis19_full.pgm#12",
    "thg_l1_asf_gako_2011010617_v01.cdf#5",
)


def _job(argv: list[str]) -> dict:
    buf = StringIO()
    with redirect_stdout(buf):
        rc = main(argv)
    summary = json.loads(buf.getvalue().strip().splitlines()[-1])
    if rc != 0:
        raise SystemExit(f"aurorahash {argv[0]} failed: {summary}")
    return summary


def search(model: str, out: str, k: int, width: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        codes = f"{tmp}/codes"
        _job(["ingest", "--source", str(THEMIS), "--out", codes, "--model", model])
        images = [f"{THEMIS}/{q}" for q in QUERIES]
        argv = ["search", "--codes", codes, "--model", model, "--image", *images]
        s = _job([*argv, "--k", str(k), "--no-ray", "--report", f"{tmp}/reports"])
        page = render(s["report"], screenshot=out, width=width)
        assert_renders(page, images=len(QUERIES) * (k + 1))
    return {"screenshot": out, "images": len(page.images), "database": s["n_database"]}


def page(html: str, out: str, width: int) -> dict:
    p = render(html, screenshot=out, width=width)
    assert_renders(p, images=len(p.images))
    return {"screenshot": out, "images": len(p.images)}


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("search", help="ingest THEMIS, search by image, screenshot the report")
    s.add_argument("--model", required=True, help="checkpoint directory")
    s.add_argument("--k", type=int, default=6, help="neighbours per query (6: one line of 7)")
    s.add_argument("--out", default="benchmarks/results/report-search.png")
    g = sub.add_parser("page", help="screenshot a report.html")
    g.add_argument("html")
    g.add_argument("--out", required=True)
    for q in (s, g):
        q.add_argument("--width", type=int, default=1280, help="browser window width (px)")
    a = p.parse_args()
    if a.what == "search":
        print(json.dumps(search(a.model, a.out, a.k, a.width)))
    else:
        print(json.dumps(page(a.html, a.out, a.width)))


if __name__ == "__main__":
    cli()
