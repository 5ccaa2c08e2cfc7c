"""How a model's stored codes spread the real THEMIS sample, and whether they follow time.

Why: no labelled real aurora is reachable, so the only evidence on real frames is structure we
know without labels. The sample (../shared/data/themis: six PGM minute files of Gillam,
2014-03-10 06:00-06:05, one frame every 3 s) changes slowly, so a code that describes the sky
should put a frame's nearest neighbours in its own minute and the adjacent ones before frames
further away, and its distances should grow with the time between frames.

What runs is the product path: the six files are laid out as an archive holds them
(stream0/YYYY/MM/DD/SITE_themisNN/utHH/, symlinks in a temporary folder), `aurorahash ingest`
encodes them, `compact` folds the shards into a segment, and the codes are read back from the
catalogue (`pipeline.codes.catalogue`), never from a side path. Figures, over the 120 frames:

- distinct codes; mean, median and max pairwise Hamming distance (bits);
- rho: Spearman's rank correlation between Hamming distance and time difference over all
  7,140 frame pairs;
- near_minute_at_k: for each frame, the share of its k nearest neighbours (itself excluded;
  ties at the k-th distance counted fractionally, as a random tie break would on average) in
  its own or an adjacent minute, averaged; `chance` is that share over all other frames;
- mean distance within a minute vs. across minutes.

`--report DIR` also runs `aurorahash search --image` for a few real frames with --report, and
`--screenshot PNG` opens that page in headless Chromium (tests/browser.py) and saves a picture.

  python benchmarks/themis_codes.py --model runs/demo/model --json \\
      --report benchmarks/results/themis-codes-2026-12-07/demo-report \\
      --screenshot benchmarks/results/themis-codes-2026-12-07/demo-search.png
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _record  # noqa: E402
from ingest_helpers import THEMIS  # noqa: E402

PGM = re.compile(
    r"^(\d{4})(\d{2})(\d{2})_(\d{2})(\d{2})_([a-z]{4})_(themis\d{2})_full\.pgm(\.gz)?$"
)
QUERIES = (0, 59, 119)  # frames of the sample searched in the report: first, middle, last


def lay_out(src: Path, dst: Path) -> list[str]:
    """Symlink the sample's PGM files into dst as an archive: stream0/Y/M/D/site_cam/utHH/."""
    rels = []
    for f in sorted(src.iterdir()):
        m = PGM.match(f.name)
        if not m:
            continue
        y, mo, d, hh, _, site, cam, _ = m.groups()
        rel = Path("stream0", y, mo, d, f"{site}_{cam}", f"ut{hh}", f.name)
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(f.resolve(), dst / rel)
        rels.append(str(rel))
    if not rels:
        raise SystemExit(
            f"{src}: no THEMIS PGM minute files (YYYYMMDD_HHMM_site_themisNN_full.pgm)"
        )
    return rels


def stored_codes(codes: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(codes (n, bits) bool, times (n,) seconds, ids) of every stored frame, via the catalogue."""
    import pyarrow as pa

    from pipeline.codes import store
    from pipeline.codes.catalogue import open_catalogue, plan_tasks, read_task

    cat = open_catalogue(codes)
    cols = ("file", "frame", "id", "time", "code")
    t = pa.concat_tables([read_task(k, cat.meta, cat.loc, cols) for k in plan_tasks(cat.parts)])
    words = store.codes_to_numpy(t.column("code"), cat.meta.nbits)
    bits = np.unpackbits(words.view(np.uint8), axis=1, bitorder="little")[:, : cat.meta.nbits]
    secs = t.column("time").cast("int64").to_numpy() / 1e6
    return bits.astype(bool), secs, t.column("id").to_pylist()


def near_share(dist: np.ndarray, near: np.ndarray, k: int) -> float:
    """Mean share of each row's k nearest (diagonal excluded, ties at the k-th distance counted
    fractionally) for which `near` is true."""
    shares = []
    for i in range(len(dist)):
        d = np.delete(dist[i], i)
        m = np.delete(near[i], i)
        r = np.sort(d)[k - 1]
        below, at = d < r, d == r
        w = below.astype(float) + at * (k - below.sum()) / at.sum()
        shares.append(float((w * m).sum() / k))
    return float(np.mean(shares))


def figures(bits: np.ndarray, secs: np.ndarray, ks=(1, 5, 10)) -> dict:
    """The figures of the module docstring for codes `bits` of frames taken at `secs`."""
    from scipy.stats import spearmanr

    dist = (bits[:, None, :] != bits[None, :, :]).sum(-1)
    dt = np.abs(secs[:, None] - secs[None, :])
    minute = np.floor(secs / 60)
    dmin = np.abs(minute[:, None] - minute[None, :])
    iu = np.triu_indices(len(bits), 1)
    rho = spearmanr(dist[iu], dt[iu]).statistic
    near = dmin <= 1
    off = ~np.eye(len(bits), dtype=bool)
    return {
        "frames": len(bits),
        "bits": int(bits.shape[1]),
        "distinct_codes": int(len(np.unique(bits, axis=0))),
        "mean_distance": round(float(dist[iu].mean()), 3),
        "median_distance": float(np.median(dist[iu])),
        "max_distance": int(dist[iu].max()),
        "rho_distance_time": round(float(rho), 4),
        "mean_distance_same_minute": round(float(dist[iu][dmin[iu] == 0].mean()), 3),
        "mean_distance_other_minutes": round(float(dist[iu][dmin[iu] > 0].mean()), 3),
        "near_minute_at_k": {str(k): round(near_share(dist, near, k), 4) for k in ks},
        "near_minute_chance": round(float(near[off].mean()), 4),
        "bit_balance": [round(float(v), 2) for v in bits.mean(0)],
    }


def _job(argv: list[str]) -> dict:
    from query_report_screenshots import _job as job

    return job(argv)


def search_report(model: str, rels: list[str], report: str, k: int = 6) -> tuple[str, list]:
    """`search --image` for QUERIES of the sample, with --report; returns (page, image refs)."""
    images = [f"archive/{rels[i // 20]}#{i % 20}" for i in QUERIES]
    s = _job(
        ["search", "--codes", "codes", "--model", model, "--k", str(k), "--no-ray",
         "--report", report, "--image", *images]
    )  # fmt: skip
    return s["report"], images


def run(model: str, report: str | None, shot: str | None, width: int, ray: str | None) -> dict:
    model = str(Path(model).resolve())
    report = str(Path(report).resolve()) if report else None
    shot = str(Path(shot).resolve()) if shot else None  # the run happens in a temporary folder
    with tempfile.TemporaryDirectory(prefix="themis-codes-") as tmp, _record.inside(tmp):
        rels = lay_out(THEMIS, Path(tmp, "archive"))
        extra = ["--ray-address", ray] if ray else []
        ing = _job(["ingest", "--source", "archive", "--out", "codes", "--model", model, *extra])
        _job(["compact", "--codes", "codes", "--grace-hours", "0"])
        bits, secs, ids = stored_codes("codes")
        out = {"model": _record.portable(model), "files": len(rels), "ingested": ing.get("frames")}
        out.update(figures(bits, secs))
        if report:
            page, images = search_report(model, rels, report)
            out["report"] = _record.portable(page)
            out["queries"] = images
            if shot:
                from browser import assert_renders, render

                p = render(page, screenshot=shot, width=width)
                assert_renders(p, images=len(images) * 7)
                out["screenshot"] = _record.portable(str(Path(shot).resolve()))
    return out


def cli(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint directory")
    p.add_argument("--name", default=None, help="what to call the model in the result")
    p.add_argument("--report", default=None, help="also write a search report here (a folder)")
    p.add_argument("--screenshot", default=None, help="with --report: a PNG of the page")
    p.add_argument("--width", type=int, default=1280, help="browser window width (px)")
    p.add_argument("--ray-address", default=None, help="ingest on this Ray cluster")
    _record.add_json_argument(p, "themis-codes")
    a = p.parse_args(argv)
    if a.screenshot and not a.report:
        p.error("--screenshot needs --report")
    out = run(a.model, a.report, a.screenshot, a.width, a.ray_address)
    out["name"] = a.name or Path(a.model).name
    print(json.dumps(out))
    _record.write(a.json, out, machine_extra={"cores_shared": True})
    return 0


if __name__ == "__main__":
    sys.exit(cli())
