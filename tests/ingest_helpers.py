"""Helpers for the ingest tests: a tiny checkpoint, independent oracles for THEMIS metadata, and
snapshots of an output location."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import os
import re
from pathlib import Path

import numpy as np

THEMIS = Path(__file__).resolve().parents[2] / "shared" / "data" / "themis"
if not THEMIS.exists():  # the checkout may live elsewhere; the data sits beside the project
    THEMIS = Path("/work/shared/data/themis")
UTC = dt.timezone.utc
CLASSES = ["arc", "drapery_corona", "radial_corona", "hot_spot"]


def themis_copies(root, copies: int) -> set[str]:
    """`copies` folders (night00, night01, ...) of symlinks to the real THEMIS minute files (6
    files of 20 frames each); returns the frame ids an ingest of `root` must store."""
    ids = set()
    pgms = sorted(p for p in THEMIS.iterdir() if p.name.endswith((".pgm", ".pgm.gz")))
    for k in range(copies):
        d = Path(root) / f"night{k:02d}"
        d.mkdir(parents=True)
        for p in pgms:
            os.symlink(p, d / p.name)
            ids.update(f"night{k:02d}/{p.name}#{i}" for i in range(20))
    return ids


def make_model(
    path,
    size: int = 32,
    bits: int = 32,
    seed: int = 0,
    arch: str = "compact",
    encode=None,
    model_options=None,
):
    """A random-init checkpoint through the public interfaces (build_model + save_checkpoint);
    `model_options` go to build_model and config.json (e.g. a head without a classifier)."""
    import torch

    from pipeline.model.archs import build_model
    from pipeline.model.checkpoint import save_checkpoint
    from pipeline.model.preprocess import PreprocessConfig

    torch.manual_seed(seed)
    model = build_model(arch, bits, len(CLASSES), 1, size, **(model_options or {}))
    config = {
        "arch": arch,
        "bits": bits,
        "classes": CLASSES,
        "in_channels": 1,
        "input_size": size,
        "preprocess": PreprocessConfig(size=size, channels=1).to_dict(),
        "data": {"dataset": "none (random init for tests)", "seed": seed},
    }
    if encode is not None:
        config["encode"] = dict(encode)
    if model_options:
        config["model_options"] = dict(model_options)
    save_checkpoint(str(path), model, config)
    return str(path)


def pgm_headers(path) -> list[dict]:
    """Per-frame `#"Key" value` headers of a THEMIS stream0 PGM(.gz) file, parsed here."""
    data = Path(path).read_bytes()
    if str(path).endswith(".gz"):
        data = gzip.decompress(data)
    frames, pos = [], 0
    while pos < len(data):
        assert data[pos : pos + 2] == b"P5"
        hdr, p, nums = {}, pos + 3, []
        while len(nums) < 3:
            e = data.index(b"\n", p)
            line, p = data[p:e], e + 1
            m = re.match(rb'#"([^"]+)"\s*(.*)', line)
            if m:
                hdr.setdefault(m.group(1).decode(), m.group(2).decode().strip())
            elif not line.startswith(b"#"):
                nums += [int(v) for v in line.split()]
        w, h, _ = nums
        frames.append(hdr)
        pos = p + w * h * 2
    return frames


def pgm_expected(path) -> list[tuple[str, dt.datetime]]:
    out, site = [], None
    for h in pgm_headers(path):  # the full header (with the site) may come with frame 0 only
        site = h.get("Site unique ID", site)
        t = dt.datetime.strptime(h["Image request start"], "%Y-%m-%d %H:%M:%S.%f UTC")
        out.append((site, t.replace(tzinfo=UTC)))
    assert site == "gill"
    return out


def cdf_expected(path) -> list[tuple[str, dt.datetime]]:
    import cdflib

    site = Path(path).name.split("_")[3]
    c = cdflib.CDF(str(path))
    epochs = np.atleast_1d(c.varget(f"thg_asf_{site}_epoch"))
    times = cdflib.cdfepoch.to_datetime(epochs)
    return [(site, np.datetime64(t, "us").astype(dt.datetime).replace(tzinfo=UTC)) for t in times]


def themis_expected() -> dict[str, list[tuple[str, dt.datetime]]]:
    """rel path -> [(site, time)] for every file ingestion must encode (not the thumbnail)."""
    out = {}
    for p in sorted(THEMIS.iterdir()):
        if p.name.endswith((".pgm", ".pgm.gz")):
            out[p.name] = pgm_expected(p)
        elif p.name.startswith("thg_l1_asf_"):
            out[p.name] = cdf_expected(p)
    return out


def snapshot(root) -> dict[str, str]:
    """relative path -> sha256 of every file under a local directory."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return dict(sorted(out.items()))


def rows_by_id(table) -> dict[str, dict]:
    return {r["id"]: r for r in table.to_pylist()}
