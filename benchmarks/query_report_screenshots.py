"""Screenshots of the search, train and demo reports as a browser shows them, for people.

search: ingests the real THEMIS files (../shared/data/themis: gill PGM minute files and a gako
CDF) with --model, runs `aurorahash search --image` on a few of their frames with --report, and
screenshots the page. page: screenshots a report that `train --report`, `evaluate --report` or
`make demo` wrote. Both open the page in headless Chromium offline with the tests' checks
(tests/browser.py).

Paths on the page: `search` runs inside its temporary folder, where `themis` links to the THEMIS
data, so the page shows `codes` and `themis/<file>#N` rather than the machine's paths. `page`
shows what the report's job was given: run `train --out`, `evaluate --model` with a path
relative to the project (e.g. `runs/shots/model`). Both report any absolute path left on the
page (`absolute_paths` in the JSON line, and a warning on stderr).

  python benchmarks/query_report_screenshots.py search --model runs/aurora \\
      --out benchmarks/results/report-search.png
  python benchmarks/query_report_screenshots.py page runs/demo/report.html \\
      --out benchmarks/results/report-demo.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _record  # noqa: E402
from browser import assert_renders, render  # noqa: E402
from ingest_helpers import THEMIS  # noqa: E402

from jobs.cli import main  # noqa: E402

QUERIES = (
    "20140310_0603_gill_themis19_full.pgm.gz#3",
    "20140310_0605_gill_themis19_full.pgm#12",
    "thg_l1_asf_gako_2011010617_v01.cdf#5",
)


def _job(argv: list[str], check: bool = True) -> dict:
    buf = StringIO()
    with redirect_stdout(buf):
        rc = main(argv)
    summary = json.loads(buf.getvalue().strip().splitlines()[-1])
    if rc != 0 and check:
        raise SystemExit(f"aurorahash {argv[0]} failed: {summary}")
    return {**summary, "rc": rc}


def _shown(page) -> list[str]:
    shown = _record.absolute_paths(page.text)
    if shown:
        print(f"WARNING: the page shows absolute paths: {shown}", file=sys.stderr)
    return shown


def search(model: str, out: str, k: int, width: int) -> dict:
    model, out = str(Path(model).resolve()), str(Path(out).resolve())
    with tempfile.TemporaryDirectory() as tmp, _record.inside(tmp):
        os.symlink(THEMIS, "themis")
        _job(["ingest", "--source", str(THEMIS), "--out", f"{tmp}/codes", "--model", model])
        rest = ["--model", model, "--k", str(k), "--no-ray", "--report", "reports"]
        images = [f"themis/{q}" for q in QUERIES]
        s = _job(["search", "--codes", "codes", *rest, "--image", *images], check=False)
        if s["rc"] != 0:  # a checkout whose catalogue refuses relative local paths
            print(
                f"WARNING: search with relative paths failed ({s.get('error')}); again with "
                "absolute ones, which the page will show",
                file=sys.stderr,
            )
            images = [f"{THEMIS}/{q}" for q in QUERIES]
            s = _job(["search", "--codes", f"{tmp}/codes", *rest, "--image", *images])
        page = render(s["report"], screenshot=out, width=width)
        assert_renders(page, images=len(QUERIES) * (k + 1))
    return {
        "screenshot": _record.portable(out),
        "images": len(page.images),
        "database": s["n_database"],
        "absolute_paths": _shown(page),
    }


def page(html: str, out: str, width: int) -> dict:
    p = render(html, screenshot=out, width=width)
    assert_renders(p, images=len(p.images))
    shot = _record.portable(str(Path(out).resolve()))
    return {"screenshot": shot, "images": len(p.images), "absolute_paths": _shown(p)}


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
