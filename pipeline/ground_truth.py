"""Transcribed lines from PAGE XML and ALTO files: where each line is on its page image, and its text.

These are the ground truth formats of transcription tools (Transkribus, eScriptorium, OCR-D) and
of Quire's own exports (`quire export --format page|alto`), so corrected transcriptions from any
of them can be cut into line pairs to fine-tune on (`quire lines`). Any version of either schema
is read: elements are matched by their local names.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import BadInputError

Point = tuple[float, float]

# ALTO lengths in these units become pixels through the image's resolution (dots per inch).
ALTO_UNITS_PER_INCH = {"mm10": 254.0, "inch1200": 1200.0}


@dataclass(frozen=True)
class TranscribedLine:
    id: str
    polygon: tuple[Point, ...]  # in the file's units: pixels, or ALTO's mm10/inch1200
    text: str


@dataclass(frozen=True)
class TranscribedPage:
    """One page's lines and the image they were drawn on, as the file names it."""

    source: Path
    image: str  # the file's image reference; Quire's exports write `document.pdf#page=N`
    number: int  # the page within the image file (a PDF's or a multi-page TIFF's), from 1
    width: float | None  # the image's size in the file's units, if the file says
    height: float | None
    units_per_inch: float | None  # None: the coordinates are pixels
    lines: tuple[TranscribedLine, ...]
    # ALTO's PHYSICAL_IMG_NR: the page's number among its document's scans (image 42 of a book),
    # which is a page of the image file only where that file holds the document's pages.
    physical: int | None = None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in element if _local(child.tag) == name]


def _descendants(element: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in element.iter() if _local(child.tag) == name]


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def parse_points(points: str) -> tuple[Point, ...]:
    """'x1,y1 x2,y2 ...' (PAGE) or 'x1 y1 x2 y2 ...' / 'x1,y1,x2,y2' (ALTO) as (x, y) pairs."""
    try:
        values = [float(v) for v in re.split(r"[\s,]+", points.strip()) if v]
    except ValueError:
        raise ValueError(f"coordinates that are not numbers: {points[:60]!r}") from None
    if len(values) % 2 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"not a list of x,y points: {points[:60]!r}")
    return tuple(zip(values[0::2], values[1::2]))


def looks_like_transcription(path: Path) -> bool:
    """Whether an .xml file is PAGE XML or ALTO by its root element (read, not the whole file):
    archive folders carry METS, Dublin Core and manifest XML beside their scans. A file that
    cannot be parsed counts, so reading it reports what is wrong with it."""
    if path.suffix.lower() != ".xml":
        return True
    try:
        for _, element in ET.iterparse(path, events=("start",)):
            kind = _local(element.tag)
            return kind == "PcGts" or kind.lower() == "alto"
    except (ET.ParseError, OSError):
        return True
    return True


def read_transcription(path: Path) -> list[TranscribedPage]:
    """The pages a PAGE XML (one), an ALTO file (one or more) or a zip of PAGE files (Quire's
    `.page.zip` of a longer document) describes; a file that is none of these raises BadInputError."""
    name = str(path)
    if path.suffix.lower() == ".zip":
        return _zipped_pages(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise BadInputError(f"not well-formed XML ({exc})", source=name) from None
    except OSError as exc:
        raise BadInputError(f"cannot read file ({exc.strerror})", source=name) from None
    kind = _local(root.tag)
    try:
        if kind == "PcGts":
            return [_page_xml(path, root)]
        if kind.lower() == "alto":
            return _alto(path, root)
    except ValueError as exc:
        raise BadInputError(str(exc), source=name) from None
    raise BadInputError(f"neither PAGE XML nor ALTO (its root element is <{kind}>)", source=name)


def _zipped_pages(path: Path) -> list[TranscribedPage]:
    """Each PAGE file in the zip, in name order; images are looked for as if it were unpacked
    beside the zip."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BadInputError(f"not a readable zip ({exc})", source=str(path)) from None
    pages = []
    with archive:
        for member in sorted(n for n in archive.namelist() if n.lower().endswith(".xml")):
            where = f"{path}:{member}"
            try:
                root = ET.fromstring(archive.read(member))
            except ET.ParseError as exc:
                raise BadInputError(f"not well-formed XML ({exc})", source=where) from None
            if _local(root.tag) != "PcGts":
                raise BadInputError(f"not PAGE XML (its root element is <{_local(root.tag)}>)",
                                    source=where)
            try:
                pages.append(_page_xml(path.parent / Path(member).name, root))
            except ValueError as exc:
                raise BadInputError(str(exc), source=where) from None
    if not pages:
        raise BadInputError("the zip holds no PAGE XML files", source=str(path))
    return pages


def _page_xml(path: Path, root: ET.Element) -> TranscribedPage:
    pages = _descendants(root, "Page")
    if not pages:
        raise ValueError("PAGE XML without a <Page> element")
    page = pages[0]
    image, _, fragment = page.get("imageFilename", "").partition("#")
    match = re.fullmatch(r"page=(\d+)", fragment)
    lines = []
    for number, line in enumerate(_descendants(page, "TextLine"), 1):
        line_id = line.get("id") or f"line{number}"
        coords = _children(line, "Coords")
        if not coords:
            continue
        points = coords[0].get("points")
        # PAGE 2009/2010 wrote <Point x= y=/> children instead of a points attribute.
        polygon = parse_points(points) if points else tuple(
            (float(p.get("x", 0)), float(p.get("y", 0))) for p in _children(coords[0], "Point"))
        lines.append(TranscribedLine(line_id, polygon, _page_line_text(line)))
    return TranscribedPage(path, image, int(match.group(1)) if match else 1, _number(page.get("imageWidth")),
                           _number(page.get("imageHeight")), None, tuple(lines))


def _unicode_of(element: ET.Element) -> str | None:
    """The text of an element's own TextEquiv: the one indexed lowest (0 is the preferred reading
    in PAGE), else the first; None when it has none."""
    equivs = _children(element, "TextEquiv")
    if not equivs:
        return None
    best = min(equivs, key=_index)
    unicode = _children(best, "Unicode")
    return (unicode[0].text or "") if unicode else ""


def _index(equiv: ET.Element) -> float:
    """A TextEquiv's index; one that is missing or no number ranks last."""
    index = _number(equiv.get("index"))
    return float("inf") if index is None else index


def _page_line_text(line: ET.Element) -> str:
    text = _unicode_of(line)
    if text is None:  # transcribed word by word only
        text = " ".join(t for t in (_unicode_of(word) for word in _children(line, "Word")) if t)
    return " ".join(text.split())


def _alto(path: Path, root: ET.Element) -> list[TranscribedPage]:
    unit = next((e.text or "" for e in _descendants(root, "MeasurementUnit")), "pixel").strip() or "pixel"
    if unit != "pixel" and unit not in ALTO_UNITS_PER_INCH:
        raise ValueError(f"ALTO measurement unit {unit!r} is not pixel, mm10 or inch1200")
    image = next((e.text or "" for e in _descendants(root, "fileName")), "").strip()
    pages = _descendants(root, "Page")
    if not pages:
        raise ValueError("ALTO without a <Page> element")
    return [TranscribedPage(path, image, position, _number(page.get("WIDTH")), _number(page.get("HEIGHT")),
                            ALTO_UNITS_PER_INCH.get(unit), _alto_lines(page), _physical(page))
            for position, page in enumerate(pages, 1)]


def _physical(page: ET.Element) -> int | None:
    number = _number(page.get("PHYSICAL_IMG_NR"))
    return int(number) if number is not None and number >= 1 and number.is_integer() else None


def _alto_lines(page: ET.Element) -> tuple[TranscribedLine, ...]:
    lines = []
    for number, line in enumerate(_descendants(page, "TextLine"), 1):
        polygon: tuple[Point, ...] = ()
        shape = _descendants(line, "Polygon")
        if shape and shape[0].get("POINTS"):
            polygon = parse_points(shape[0].get("POINTS", ""))
        else:
            box = [_number(line.get(k)) for k in ("HPOS", "VPOS", "WIDTH", "HEIGHT")]
            if None in box:
                continue
            x, y, w, h = (float(v) for v in box)  # type: ignore[arg-type]
            polygon = ((x, y), (x + w, y), (x + w, y + h), (x, y + h))
        lines.append(TranscribedLine(line.get("ID") or f"line{number}", polygon, _alto_line_text(line)))
    return tuple(lines)


def _alto_line_text(line: ET.Element) -> str:
    spaced = any(_local(child.tag) == "SP" for child in line)  # some writers leave <SP/> out
    parts: list[str] = []
    for child in line:
        kind = _local(child.tag)
        if kind == "String":
            if parts and not spaced:
                parts.append(" ")
            parts.append(child.get("CONTENT", ""))
        elif kind == "SP":
            parts.append(" ")
        elif kind == "HYP":
            parts.append(child.get("CONTENT", "-"))
    return " ".join("".join(parts).split())
