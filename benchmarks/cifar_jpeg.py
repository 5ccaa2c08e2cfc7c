"""How the CIFAR-10 images we train on are stored: JPEG quality and chroma subsampling.

Why: airbench's 94% is measured on the original (lossless) CIFAR-10 pixels; ours are JPEGs
(../shared/data/cifar10), and the supervised ceiling of issue 18 has to know how lossy they are.
The quality is found by matching each image's quantisation tables against the IJG standard
tables scaled to every quality 1..100 (libjpeg's `jpeg_quality_scaling`), the subsampling from
the components' sampling factors.

    python benchmarks/cifar_jpeg.py --data ../shared/data/cifar10 --json
"""

from __future__ import annotations

import argparse
import collections
import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _record  # noqa: E402

# IJG (libjpeg) standard tables in natural (row-major) order, JPEG Annex K.
LUMA = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
]  # fmt: skip


def scaled(table, quality: int) -> list[int]:
    """libjpeg's table for `quality` (baseline: entries clamped to 1..255)."""
    s = 5000 // quality if quality < 50 else 200 - 2 * quality
    return [min(255, max(1, (v * s + 50) // 100)) for v in table]


def quality_of(luma_table) -> int | None:
    """The IJG quality whose scaled luminance table this is, or None (not a libjpeg table)."""
    got = list(luma_table)
    for q in range(1, 101):
        if scaled(LUMA, q) == got:
            return q
    return None


def subsampling(im) -> str:
    """4:4:4, 4:2:2 or 4:2:0 from the components' sampling factors (PIL's `layer`)."""
    layers = getattr(im, "layer", None) or []
    if len(layers) < 3:
        return "grey"
    h, v = layers[0][1], layers[0][2]
    return {(1, 1): "4:4:4", (2, 1): "4:2:2", (2, 2): "4:2:0"}.get((h, v), f"{h}x{v}")


def survey(data: Path, limit: int) -> dict:
    import pyarrow.parquet as pq
    from PIL import Image

    qualities, modes, sizes, n = collections.Counter(), collections.Counter(), [], 0
    for shard in sorted(data.glob("*.parquet")):
        col = pq.read_table(shard, columns=["image"]).column("image")
        for blob in col.to_pylist()[: max(0, limit - n)]:
            im = Image.open(io.BytesIO(blob))
            # PIL's quantization tables are in zigzag order as stored; convert to natural order
            qualities[quality_of(_natural(im.quantization[0]))] += 1
            modes[subsampling(im)] += 1
            sizes.append(len(blob))
            n += 1
        if n >= limit:
            break
    return {
        "images": n,
        "quality": {str(k): v for k, v in qualities.items()},
        "subsampling": dict(modes),
        "mean_bytes": round(sum(sizes) / max(1, n), 1),
        "raw_bytes": 32 * 32 * 3,
    }


ZIGZAG = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27,
    20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58,
    59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
]  # fmt: skip


def _natural(table) -> list[int]:
    """A table as PIL gives it -> natural order, trying both orders PIL versions have used."""
    t = list(table)
    if quality_of(t) is not None:
        return t
    out = [0] * 64
    for i, pos in enumerate(ZIGZAG):
        out[pos] = t[i]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="../shared/data/cifar10", help="the CIFAR-10 Parquet shards")
    p.add_argument("--limit", type=int, default=60000, help="images to survey (all: 60000)")
    _record.add_json_argument(p, "cifar-jpeg")
    args = p.parse_args(argv)
    figures = survey(Path(args.data), args.limit)
    print(figures)
    _record.write(args.json, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
