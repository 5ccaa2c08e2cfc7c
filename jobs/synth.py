"""aurorahash synth: write a seeded synthetic aurora archive (labelled all-sky frames).

Renders --frames frames in the four dayside classes (arc, drapery_corona, radial_corona,
hot_spot; balanced, every block of four holds each class once) with a THEMIS-like camera model
(fisheye disk, dark level, sky, stars, noise), and writes them under --out (local path, file://
or s3://) in the real archive layout:

  pgm, pgm.gz  stream0/YYYY/MM/DD/SITE_IMAGER/utHH/YYYYMMDD_HHMM_SITE_IMAGER_full.pgm[.gz]
               20 frames per minute file, 3 s apart, each with its own header and an
               `#"Aurora class" NAME` line carrying the label
  png          png/YYYY/MM/DD/SITE_IMAGER/utHH/YYYYMMDD_HHMMSS_SITE_IMAGER.png (16-bit grey,
               with `Aurora class`, `Site unique ID` and `Image request start` text chunks)

The same --seed gives the same archive byte for byte. Progress goes to stderr; one JSON summary
line to stdout: out, format, frames, files, size, seed, site, class_counts, seconds,
frames_per_s.
"""

from __future__ import annotations

from jobs.common import UsageError, add_s3_options, storage_options

HELP = __doc__


def add_arguments(parser) -> None:
    from pipeline.synth.archive import DEFAULT_START, FORMATS

    parser.add_argument("--out", required=True, help="archive root: local path, file:// or s3://")
    parser.add_argument("--frames", type=int, default=2000, help="frames to write (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--format", choices=FORMATS, default="pgm.gz", help="file format (default pgm.gz)"
    )
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels (default 256)")
    parser.add_argument("--site", default="synt", help="site id in headers and names (synt)")
    parser.add_argument(
        "--imager", default="themis99", help="imager id, themisNN (default themis99)"
    )
    parser.add_argument(
        "--start",
        default=DEFAULT_START.strftime("%Y-%m-%dT%H:%M"),
        help="UTC time of the first frame, YYYY-MM-DDTHH:MM (default %(default)s)",
    )
    parser.add_argument(
        "--classes",
        default=None,
        help="comma-separated subset of classes (default: all four)",
    )
    parser.add_argument("--no-labels", action="store_true", help="leave the class out of the files")
    add_s3_options(parser)


def run(args) -> dict:
    from pipeline.synth import resolve_classes, write_archive
    from pipeline.synth.writers import as_utc

    if args.frames < 0:
        raise UsageError("--frames must be >= 0")
    if not 16 <= args.size <= 4096:
        raise UsageError("--size must be between 16 and 4096")
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    try:
        resolve_classes(classes)
        start = as_utc(args.start)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    summary = write_archive(
        args.out,
        args.frames,
        seed=args.seed,
        fmt=args.format,
        size=args.size,
        site=args.site,
        imager=args.imager,
        start_time=start,
        classes=classes,
        labels=not args.no_labels,
        storage_options=storage_options(args),
    )
    summary.pop("paths", None)
    summary["frames_per_s"] = round(summary["frames"] / max(summary["seconds"], 1e-9), 1)
    return summary
