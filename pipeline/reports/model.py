"""The blocks a report is made of: plain data, so that jobs build reports without any HTML."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Figure:
    """A PNG figure: shown inline in the page and also written beside it as `<name>.png`."""

    name: str  # file stem: letters, digits, '-' and '_'
    png: bytes
    caption: str = ""
    alt: str = ""
    wide: bool = False  # span the page instead of half of it


@dataclass
class Table:
    """Rows of cells. Numbers are right-aligned and formatted (`formats` by column name, else
    `float_format`); None shows a dash.

    `best` names columns whose highest number is shown in bold (e.g. MAP across models); `mono`
    names columns shown in a monospaced font (ids, hashes). A table spans the page unless
    `wide` is False (then it may sit beside a figure).
    """

    columns: list[str]
    rows: list[list]
    caption: str = ""
    float_format: str = "{:.4f}"
    formats: dict[str, str] = field(default_factory=dict)
    best: tuple[str, ...] = ()
    mono: tuple[str, ...] = ()
    wide: bool = True


@dataclass
class Tile:
    """One image of a gallery (a query or a neighbour), with its labels under it."""

    png: bytes
    title: str = ""
    note: str = ""
    mark: str | None = None  # "hit" (green frame), "miss" (red frame), "query" or None


@dataclass
class Gallery:
    """Rows of tiles, each row with a heading: e.g. a query and its nearest neighbours."""

    rows: list[tuple[str, list[Tile]]]
    caption: str = ""


@dataclass
class Text:
    """A paragraph of plain text (escaped; no markup)."""

    text: str


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)  # Figure | Table | Gallery | Text
    intro: str = ""


@dataclass
class Report:
    """A whole report: header facts (provenance), sections, and the data written as JSON."""

    kind: str  # names the folder: <time>-<kind>
    title: str
    subtitle: str = ""
    facts: list[tuple[str, str]] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    data: dict = field(default_factory=dict)

    def figures(self) -> list[Figure]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Figure)]
