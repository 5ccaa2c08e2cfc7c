"""The search report: each query frame beside its nearest frames, read back from the archive.

Why thumbnails from the archive: a list of ids and Hamming distances says little to a
scientist; the frames themselves show whether the neighbours are the same kind of aurora. Each
tile carries what the codes know about the frame (shard columns): the distance to the query, the
predicted class with its probability, the site and the exposure time. Ground-truth labels, where
both frames have one, frame a tile green (same class) or red.

    rows = frame_rows(cat, res.ids.ravel())          # shard columns of the neighbours
    queries = [query_from_row(i, r) for i, r in frame_rows(qcat, qids).items()]
    rep = search_report(queries, res, rows, cat, run, storage_options)
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from pipeline.reports.frames import Shown, placeholder_png, read_thumbnails
from pipeline.reports.model import Gallery, Report, Section, Table, Tile

SHOW_COLUMNS = ("source", "frame", "site", "time", "pred", "score", "label")
THUMB_PX = 200  # thumbnails are shown at 132 CSS px: sharp on high-density screens and slides


@dataclass
class QueryFrame:
    """A query as the report shows it: its id and where its pixels are."""

    id: str
    source: str | None
    frame: int | None
    pred: int | None = None
    score: float | None = None
    label: int | None = None
    site: str | None = None
    time: _dt.datetime | None = None


def frame_rows(cat, ids) -> dict[str, dict]:
    """{id: shard row (source, frame, site, time, pred, score, label)} of frames in `cat`."""
    from pipeline.codes.catalogue import lookup_ids

    wanted = [str(i) for i in dict.fromkeys(ids)]
    t = lookup_ids(cat, wanted, columns=SHOW_COLUMNS)
    rows = {r["id"]: r for r in t.to_pylist()} if t.num_rows else {}
    gone = dict.fromkeys(SHOW_COLUMNS)  # compacted or rewritten since the search: no row
    return {i: rows.get(i) or {**gone, "id": i} for i in wanted}


def query_from_row(qid: str, row: dict) -> QueryFrame:
    keys = ("source", "frame", "pred", "score", "label", "site", "time")
    return QueryFrame(qid, **{k: row.get(k) for k in keys})


def class_text(classes, pred, score) -> str:
    """'drapery corona 87%' (or '' without a prediction)."""
    if pred is None or pred < 0:
        return ""
    name = classes[pred] if pred < len(classes) else str(pred)
    pct = "" if score is None or score != score else f" {100 * score:.0f}%"
    return f"{name.replace('_', ' ')}{pct}"


def when_text(site, time) -> str:
    """'gill 2014-03-10\\n06:03:12 UTC' (two lines under a tile)."""
    head = " ".join(v for v in (site, f"{time:%Y-%m-%d}" if time else None) if v)
    return "\n".join(v for v in (head, f"{time:%H:%M:%S} UTC" if time else "") if v)


def _tile(shown, title: str, info: dict, classes, mark) -> Tile:
    """A frame's tile; `info` holds its shard columns (pred, score, site, time)."""
    lines = [
        class_text(classes, info.get("pred"), info.get("score")),
        when_text(info.get("site") or shown.site, info.get("time") or shown.time),
    ]
    if not shown.ok:
        lines.append(f"not readable: {shown.reason}")
        mark = None
    return Tile(shown.png, title, "\n".join(v for v in lines if v), mark)


def _mark(qlabel, label) -> str | None:
    if qlabel is None or label is None or qlabel < 0 or label < 0:
        return None
    return "hit" if qlabel == label else "miss"


def read_frames_shown(queries, rows, storage_options=None) -> dict:
    """Thumbnails of the queries and of the neighbour rows; a query's site, time and label
    are taken from its frame where the codes did not give them (queries by image)."""
    refs = [(q.source, q.frame) for q in queries] + [
        (r["source"], r["frame"]) for r in rows.values()
    ]
    shown = read_thumbnails([r for r in refs if r[0] is not None], storage_options, THUMB_PX)
    missing = Shown(placeholder_png(THUMB_PX), False, "no longer in the codes")
    shown.update({r: missing for r in refs if r not in shown})
    for q in queries:
        s = shown[(q.source, q.frame)]
        q.site, q.time = q.site or s.site, q.time or s.time
        q.label = q.label if q.label is not None else s.label
    return shown


def neighbour_gallery(queries, res, rows, classes, shown, caption="") -> Gallery:
    """One gallery row per query: the query tile, then its k neighbours in rank order."""
    gallery_rows = []
    for i, q in enumerate(queries):
        tiles = [_tile(shown[(q.source, q.frame)], "query", vars(q), classes, "query")]
        for nid, d in zip(res.ids[i], res.distances[i], strict=True):
            r = rows[nid]
            s = shown[(r["source"], r["frame"])]
            tiles.append(_tile(s, f"d = {d}", r, classes, _mark(q.label, r["label"])))
        labelled = _name(classes, q.label)
        head = f"{i + 1}. {q.id}" + (
            f"  \u00b7  labelled {labelled.replace('_', ' ')}" if labelled else ""
        )
        gallery_rows.append((head, tiles))
    return Gallery(gallery_rows, caption)


def _record(r: dict, classes) -> dict:
    keys = ("id", "source", "frame", "site", "pred", "label")
    out = {k: r.get(k) for k in keys}
    out.update(time=_iso(r.get("time")), score=_num(r.get("score")))
    out["class"] = _name(classes, r.get("pred"))
    return out


def neighbour_records(queries, res, rows, classes) -> list[dict]:
    """The report's JSON: per query its neighbours (rank, distance and shard columns)."""
    out = []
    for i, q in enumerate(queries):
        pairs = zip(res.ids[i], res.distances[i], strict=True)
        nbrs = [
            {"rank": rank, "distance": int(d), **_record(rows[nid], classes)}
            for rank, (nid, d) in enumerate(pairs, 1)
        ]
        out.append({**_record(vars(q), classes), "neighbours": nbrs})
    return out


def _iso(t):
    return None if t is None else t.isoformat()


def _num(v):
    return None if v is None or v != v else round(float(v), 6)


def _hms(rec: dict) -> str | None:
    return rec["time"][:19].replace("T", " ") if rec["time"] else None


def _name(classes, pred):
    return classes[pred] if pred is not None and 0 <= pred < len(classes) else None


def _neighbour_table(records) -> Table:
    """One row per neighbour; the query's number (as in the gallery) on its first row only."""
    cols = ["query", "rank", "frame id", "d", "class", "probability", "site", "time (UTC)"]
    rows = []
    for number, q in enumerate(records, 1):
        for n in q["neighbours"]:
            cls = (n["class"] or "").replace("_", " ") or None
            first = number if n["rank"] == 1 else ""
            rows.append([first, n["rank"], n["id"], n["distance"], cls, n["score"], n["site"],
                         _hms(n)])  # fmt: skip
    caption = (
        "Every neighbour shown above: rank, frame id (archive path#frame index), Hamming "
        "distance d, predicted class and its probability, site and exposure start."
    )
    mono = ("frame id", "time (UTC)")
    return Table(cols, rows, caption, formats={"probability": "{:.2f}"}, mono=mono)


GALLERY_CAPTION = (
    "Each row: the query frame (dark frame), then its nearest frames in the archive by Hamming "
    "distance d between codes, nearest first (ties in archive order). Under each frame: the "
    "predicted class with its probability, the site and the exposure start. Frames are read "
    "back from the archive as the readers give them, display-stretched (levels from inside the "
    "field of view, asinh)."
)


def gallery_caption(queries) -> str:
    if any(q.label is not None and q.label >= 0 for q in queries):
        return GALLERY_CAPTION + " Green: same ground-truth class as the query; red: another."
    return GALLERY_CAPTION


def search_gallery(cat, query_cat, qids, res, storage_options=None) -> Gallery:
    """The gallery of a search whose queries are frames of `query_cat` (ids `qids`)."""
    rows = frame_rows(cat, res.ids.ravel())
    qrows = frame_rows(query_cat, qids)
    queries = [query_from_row(i, qrows[i]) for i in qids]
    shown = read_frames_shown(queries, rows, storage_options)
    caption = gallery_caption(queries)
    return neighbour_gallery(queries, res, rows, list(cat.meta.classes), shown, caption)


def search_report(queries, res, rows, cat, run: dict, storage_options=None) -> Report:
    """The report of one search. `run`: codes, query (what was asked), total queries, seconds."""
    classes = list(cat.meta.classes)
    shown = read_frames_shown(queries, rows, storage_options)
    gallery = neighbour_gallery(queries, res, rows, classes, shown, gallery_caption(queries))
    records = neighbour_records(queries, res, rows, classes)
    k = res.indices.shape[1]
    n, total = len(queries), run["n_queries"]
    asked = f"{n:,} of {total:,} queries" if total > n else f"{n} quer{'y' if n == 1 else 'ies'}"
    return Report(
        kind="search",
        title="Nearest frames by hash code",
        subtitle=f"{asked}, the {k} nearest frames of each among {res.n_database:,} codes, by "
        "exact Hamming distance.",
        facts=[
            ("codes", run["codes"]),
            ("queries", run["query"]),
            ("model id", cat.meta.model[:16]),
            ("code length", f"{cat.meta.nbits} bits"),
            ("database codes", f"{res.n_database:,}"),
            ("segments / shards", f"{len(cat.segments)} / {len(cat.shards)}"),
            ("search time", f"{res.seconds:.2f} s"),
        ],
        sections=[
            Section("Neighbours", [gallery]),
            Section("Neighbour list", [_neighbour_table(records)]),
        ],
        data={"run": run, "model": cat.meta.model, "nbits": cat.meta.nbits, "queries": records},
    )
