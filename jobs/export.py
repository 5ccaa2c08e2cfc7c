"""Export one model's code shards as a single index for downstream search.

Formats: faiss (an IndexBinaryFlat file that faiss.read_index_binary loads), npy (uint8 codes,
(n, bytes)), parquet (one merged shard). Always with ids.parquet (row -> frame id, source, time,
site, label, pred, score) and manifest.json (nbits, model, classes, layout, count, sha256 of every
file), which is written last: its presence means the export is complete.

Example:
  aurorahash export --codes out/codes --out out/export --format faiss
"""

import logging

from jobs.common import add_s3_options, storage_options

HELP = __doc__
log = logging.getLogger("aurorahash.export")


def add_arguments(p):
    p.add_argument("--codes", required=True, help="shard dataset (dir, prefix or file)")
    p.add_argument("--out", required=True, help="output folder or s3:// prefix")
    p.add_argument("--format", default="faiss", choices=["faiss", "npy", "parquet"])
    p.add_argument("--model", default=None, help="model sha256 (prefix) when --codes holds several")
    add_s3_options(p)


def run(args):
    from pipeline import export, search

    so = storage_options(args)
    shards, meta = search.resolve_shards(args.codes, so, args.model)
    log.info("exporting %d shards (%d-bit codes, model %s)", len(shards), meta.nbits, meta.model12)
    manifest = export.export(shards, args.out, args.format, so)
    return {
        "out": args.out,
        "format": args.format,
        "count": manifest["count"],
        "shards": manifest["shards"],
        "nbits": manifest["nbits"],
        "model": manifest["model"],
        "files": sorted(manifest["files"]),
    }
