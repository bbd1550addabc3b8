"""Shared by the markup exporters: the jinja2 environment, text blocks and estimated word boxes.

hOCR, ALTO and PAGE name the source file as their image, so their boxes are given on the page as
it was rendered from the source: a page Quire turned upright has its boxes turned back (and its
text's turn stated: hOCR textangle, ALTO ROTATION, PAGE orientation). The rows, the JSON and the
viewer keep the upright page's frame, which is the stored page image's."""

from __future__ import annotations

import itertools
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


def to_source(box: BBox, page: PageResult) -> BBox:
    """A box on the upright page as it lies on the page rendered from the source, which was
    turned `page.rotation` degrees clockwise to be upright (see orientation.turn)."""
    w, h = page.width, page.height  # the upright page's
    if page.rotation == 90:
        return BBox(box.y0, w - box.x1, box.y1, w - box.x0)
    if page.rotation == 180:
        return BBox(w - box.x1, h - box.y1, w - box.x0, h - box.y0)
    if page.rotation == 270:
        return BBox(h - box.y1, box.x0, h - box.y0, box.x1)
    return box


def source_size(page: PageResult) -> tuple[int, int]:
    """(width, height) of the page as rendered from the source."""
    return (page.height, page.width) if page.rotation in (90, 270) else (page.width, page.height)


def _spaces(found: list[Word], line: LineResult) -> list[BBox]:
    """The gaps between a line's words, on the upright page (ALTO's SP)."""
    return [BBox(a.bbox.x1, line.bbox.y0, max(b.bbox.x0, a.bbox.x1 + 1), line.bbox.y1)
            for a, b in itertools.pairwise(found)]


def page_context(page: PageResult) -> dict[str, object]:
    """What every markup template needs for a page: its size, its text's turn, its blocks, lines
    and estimated words, every box on the page as rendered from the source (`to_source`)."""
    width, height = source_size(page)

    def line_context(ln: LineResult) -> dict[str, object]:
        found = words(ln)
        return {"line": ln, "text": clean(ln.text), "bbox": to_source(ln.bbox, page),
                "words": [Word(w.text, to_source(w.bbox, page)) for w in found],
                "spaces": [to_source(gap, page) for gap in _spaces(found, ln)]}

    return {
        "page": page,
        "width": width,
        "height": height,
        # Counter-clockwise degrees the text runs at on that page (hOCR textangle, ALTO ROTATION),
        # and PAGE's orientation: the clockwise turn that sets it upright, within (-180, 180].
        "textangle": page.rotation,
        "orientation": page.rotation - 360 if page.rotation > 180 else page.rotation,
        "blocks": [
            {"index": blk.index, "bbox": to_source(blk.bbox, page),
             "lines": [line_context(ln) for ln in blk.lines]}
            for blk in blocks(page)
        ],
    }
