"""Shared by the markup exporters: the jinja2 environment, text blocks and estimated word boxes."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import jinja2

from pipeline.types import BBox, DocumentResult, LineResult, PageResult

SOFTWARE = "Quire"
try:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _version

    SOFTWARE_VERSION = _version("quire")
except PackageNotFoundError:  # not installed as a distribution (a bare checkout on sys.path)
    SOFTWARE_VERSION = "0"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """Templates in pipeline/exporters/templates; autoescape always on (text is untrusted)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pipeline", "exporters/templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a typo in a template fails the tests, not silently
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["points"] = points
    return env


def points(box: BBox) -> str:
    """A box as a PAGE polygon: corners clockwise from the top left, "x,y x,y ..."."""
    return f"{box.x0},{box.y0} {box.x1},{box.y0} {box.x1},{box.y1} {box.x0},{box.y1}"


def render_template(name: str, **context: object) -> bytes:
    return environment().get_template(name).render(**context).encode("utf-8")


def timestamp(doc: DocumentResult) -> str:
    """ISO 8601 with seconds and zone: deterministic when the rows carry a time."""
    when = doc.updated_at or doc.created_at or datetime.now(UTC)
    return when.astimezone(UTC).replace(microsecond=0).isoformat()


def _xml_char(c: str) -> bool:
    code = ord(c)
    if code < 0x20:
        return c in "\t\n\r"
    return not (0xD800 <= code <= 0xDFFF or code in (0xFFFE, 0xFFFF))


def clean(text: str) -> str:
    """Drop characters XML 1.0 cannot carry at all (control characters); escaping is jinja's."""
    return "".join(c for c in text if _xml_char(c))


@dataclass(frozen=True)
class Word:
    text: str
    bbox: BBox


def words(line: LineResult) -> list[Word]:
    """Words of a line with boxes estimated by splitting the line box in proportion to the
    characters (the recognizer reads whole lines; it does not locate words)."""
    text = clean(line.text)
    tokens = text.split()
    if not tokens:
        return []
    box = line.bbox
    per_char = box.width / max(len(text), 1)
    out: list[Word] = []
    start = 0
    for token in tokens:
        start = text.index(token, start)
        x0 = box.x0 + round(start * per_char)
        x1 = box.x0 + round((start + len(token)) * per_char)
        out.append(Word(token, BBox(x0, box.y0, max(x1, x0 + 1), box.y1)))
        start += len(token)
    return out


@dataclass(frozen=True)
class Block:
    """Consecutive lines in reading order that sit together: a column or paragraph region."""

    index: int
    lines: tuple[LineResult, ...]

    @property
    def bbox(self) -> BBox:
        return union(line.bbox for line in self.lines)


def union(boxes) -> BBox:
    boxes = list(boxes)
    return BBox(min(b.x0 for b in boxes), min(b.y0 for b in boxes),
                max(b.x1 for b in boxes), max(b.y1 for b in boxes))


def blocks(page: PageResult) -> list[Block]:
    """Split the page's lines (already in reading order) where the next line does not continue
    the previous one below it: it overlaps no longer horizontally, goes back up (a new column)
    or leaves a gap of more than two line heights. Stored rows keep no region, so this rebuilds one."""
    if not page.lines:
        return []
    height = statistics.median(line.bbox.height for line in page.lines) or 1
    groups: list[list[LineResult]] = [[page.lines[0]]]
    for prev, line in zip(page.lines, page.lines[1:]):
        a, b = prev.bbox, line.bbox
        overlaps = min(a.x1, b.x1) > max(a.x0, b.x0)
        if not overlaps or b.y0 < a.y0 or b.y0 - a.y1 > 2 * height:
            groups.append([])
        groups[-1].append(line)
    return [Block(i, tuple(g)) for i, g in enumerate(groups)]


def page_context(page: PageResult) -> dict[str, object]:
    """What every markup template needs for a page: its blocks, lines and estimated words."""
    return {
        "page": page,
        "blocks": [
            {"index": blk.index, "bbox": blk.bbox,
             "lines": [{"line": ln, "text": clean(ln.text), "words": words(ln)} for ln in blk.lines]}
            for blk in blocks(page)
        ],
    }
