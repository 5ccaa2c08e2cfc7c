"""Export one model's codes for downstream search, one part per search segment.

Formats: faiss (IndexBinaryFlat files that faiss.read_index_binary loads), npy (uint8 codes,
(n, bytes)), parquet (merged shard rows). Each part has its <part>.ids.parquet (frame id, source,
frame, site, time, label, pred, score); manifest.json (nbits, model, classes, layout, count, the
segments covered, the parts in order with their row offsets and sha256) is written last: its
presence means the export is complete. Re-running adds parts for new segments and keeps the
parts of segments already exported (segments never change in place); parts of segments that
compaction replaced are deleted. Shards not yet compacted go into one extra part.

Example:
  aurorahash export --codes out/codes --out out/export --format faiss
"""

import logging

from jobs.common import add_codes_options, add_s3_options, location

HELP = __doc__
log = logging.getLogger("aurorahash.export")


def add_arguments(p):
    add_codes_options(p, "shard dataset (dir, prefix or file)")
    p.add_argument("--out", required=True, help="output folder or s3:// prefix (written inside)")
    p.add_argument(
        "--format",
        default="faiss",
        choices=["faiss", "npy", "parquet"],
        help="faiss: IndexBinaryFlat files (faiss.read_index_binary); npy: uint8 codes "
        "(n, bytes); parquet: the merged shard rows (default: faiss)",
    )
    add_s3_options(p)


def run(args):
    from pipeline.codes import catalogue, export

    cat = catalogue.open_catalogue(location(args, args.codes), args.model)
    log.info(
        "exporting ~%d codes in %d segments + %d shards (%d-bit codes, model %s)",
        cat.n_rows,
        len(cat.segments),
        len(cat.shards),
        cat.meta.nbits,
        cat.meta.model12,
    )
    if cat.shards:
        log.info(
            "%d shards are not compacted yet: they go into one part of their own "
            "(run `aurorahash compact` first to export them as segments)",
            len(cat.shards),
        )
    manifest = export.export(cat, location(args, args.out), args.format)
    return {
        "out": args.out,
        "format": args.format,
        "count": manifest["count"],
        "segments": len(manifest["segments"]),
        "shards": manifest["shards"],
        "parts": len(manifest["parts"]),
        "parts_written": manifest["parts_written"],
        "parts_kept": manifest["parts_kept"],
        "parts_removed": manifest["parts_removed"],
        "nbits": manifest["nbits"],
        "model": manifest["model"],
    }
