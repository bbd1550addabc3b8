"""hOCR, ALTO v4 and PAGE 2019 from a DocumentResult: well-formed, escaped, schema-valid, complete."""

from __future__ import annotations

import io
import re
import zipfile
from datetime import UTC, datetime

import pytest
from lxml import etree

from pipeline.exporters import get_exporter, parse_formats
from pipeline.exporters.alto_export import ALTO_NS
from pipeline.exporters.markup import blocks, words
from pipeline.exporters.page_export import PAGE_NS
from pipeline.types import BBox, DocumentResult, LineResult, PageResult
from tests.xml_checks import check_alto, check_hocr, page_schema

TRICKY = 'Say <b>"hi"</b> & it\'s ]]> done\x07'
WHEN = datetime(2026, 11, 21, 10, 30, tzinfo=UTC)


def make_doc(pages: int = 1) -> DocumentResult:
    def page(number: int) -> PageResult:
        texts = ["Quire County Archives", TRICKY, "Über café, 1931", "Second column line"]
        boxes = [BBox(100, 100, 700, 140), BBox(100, 160, 900, 200), BBox(100, 220, 600, 260),
                 BBox(1000, 100, 1500, 140)]  # the last one starts a column to the right
        lines = tuple(LineResult(i, b, t, 0.95 - 0.3 * (i % 3)) for i, (b, t)
                      in enumerate(zip(boxes, texts)))
        return PageResult(number, 1700, 2200, 200, 0.4, lines, image_key=f"k/{number}.png")

    return DocumentResult("letter & co.pdf", "ab" * 32, "quire-line-v1",
                          tuple(page(n + 1) for n in range(pages)), id="d1",
                          created_at=WHEN, updated_at=WHEN)


def test_words_are_estimated_in_proportion_to_characters():
    line = LineResult(0, BBox(0, 0, 100, 10), "ab  cd", 0.9)
    assert [(w.text, w.bbox.as_list()) for w in words(line)] == [
        ("ab", [0, 0, 33, 10]), ("cd", [67, 0, 100, 10])]
    assert words(LineResult(0, BBox(0, 0, 10, 10), "   ", 0.5)) == []


def test_blocks_split_where_a_new_column_starts():
    [page] = make_doc().pages
    assert [[ln.order for ln in b.lines] for b in blocks(page)] == [[0, 1, 2], [3]]


def test_hocr_is_wellformed_escaped_and_carries_boxes_and_confidence():
    data = get_exporter("hocr").export(make_doc())
    root = check_hocr(data)
    ns = {"h": "http://www.w3.org/1999/xhtml"}
    lines = root.findall(".//h:span[@class='ocr_line']", ns)
    assert len(lines) == 4
    assert "".join(lines[1].itertext()) == "Say <b>\"hi\"</b> & it's ]]> done"  # \x07 dropped
    assert lines[0].get("title") == "bbox 100 100 700 140; x_wconf 95"
    page = root.find(".//h:div[@class='ocr_page']", ns)
    assert "bbox 0 0 1700 2200; ppageno 0; scan_res 200 200" in page.get("title")
    assert b"<b>" not in data  # escaped, never markup


def test_alto_structure_model_and_confidence():
    data = get_exporter("alto").export(make_doc(pages=2))
    root = check_alto(data)
    ns = {"a": ALTO_NS}
    assert root.findtext(".//a:MeasurementUnit", namespaces=ns) == "pixel"
    assert "quire-line-v1" in root.findtext(".//a:processingStepSettings", namespaces=ns)
    assert root.findtext(".//a:processingDateTime", namespaces=ns) == "2026-11-21T10:30:00+00:00"
    pages = root.findall(".//a:Page", ns)
    assert [p.get("PHYSICAL_IMG_NR") for p in pages] == ["1", "2"]
    line = pages[0].findall(".//a:TextLine", ns)[1]
    strings = line.findall("a:String", ns)
    assert " ".join(s.get("CONTENT") for s in strings) == "Say <b>\"hi\"</b> & it's ]]> done"
    assert {s.get("WC") for s in strings} == {"0.6500"}
    assert len(line.findall("a:SP", ns)) == len(strings) - 1


def test_page_validates_against_the_official_schema():
    schema = page_schema()
    data = get_exporter("page").export(make_doc())
    root = etree.fromstring(data)
    schema.assertValid(root)
    ns = {"p": PAGE_NS}
    assert root.findtext(".//p:Created", namespaces=ns) == "2026-11-21T10:30:00+00:00"
    page = root.find("p:Page", ns)
    assert (page.get("imageWidth"), page.get("imageHeight")) == ("1700", "2200")
    refs = [r.get("regionRef") for r in page.findall(".//p:RegionRefIndexed", ns)]
    assert refs == [r.get("id") for r in page.findall("p:TextRegion", ns)]
    lines = page.findall(".//p:TextLine", ns)
    assert [ln.findtext("p:TextEquiv/p:Unicode", namespaces=ns) for ln in lines][1] == \
        "Say <b>\"hi\"</b> & it's ]]> done"
    assert lines[0].find("p:TextEquiv", ns).get("conf") == "0.9500"
    assert lines[0].find("p:Coords", ns).get("points") == "100,100 700,100 700,140 100,140"


def test_page_of_a_longer_document_is_a_zip_of_valid_pages():
    schema = page_schema()
    doc = make_doc(pages=3)
    exporter = get_exporter("page")
    assert (exporter.extension_for(doc), exporter.media_type_for(doc)) == ("page.zip", "application/zip")
    with zipfile.ZipFile(io.BytesIO(exporter.export(doc))) as archive:
        names = archive.namelist()
        assert names == [f"letter & co_{n:04d}.page.xml" for n in (1, 2, 3)]
        for name in names:
            schema.assertValid(etree.fromstring(archive.read(name)))


def test_every_registered_format_renders_an_empty_page():
    doc = DocumentResult("blank.png", "cd" * 32, "m", (PageResult(1, 10, 10, 72, 0.0, ()),))
    for exporter in parse_formats("txt,json,hocr,alto,page"):
        assert exporter.export(doc)
    page_schema().assertValid(etree.fromstring(get_exporter("page").export(doc)))
    check_alto(get_exporter("alto").export(doc))


def test_pdf_without_images_says_so():
    from pipeline.exporters import ImagesRequiredError

    with pytest.raises(ImagesRequiredError, match="needs the page images"):
        get_exporter("pdf").export(make_doc())
    assert re.fullmatch(r"[a-z.]+", get_exporter("pdf").extension)


def turned(rotation: int) -> DocumentResult:
    """make_doc's letter read from a source page that was turned `rotation` degrees clockwise
    to be upright: the rows hold the upright page (1700 x 2200)."""
    doc = make_doc()
    page = doc.pages[0]
    return DocumentResult(doc.name, doc.sha256, doc.model,
                          (PageResult(page.number, page.width, page.height, page.dpi, page.angle,
                                      page.lines, page.image_key, rotation),),
                          id=doc.id, created_at=WHEN, updated_at=WHEN)


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_boxes_of_a_turned_page_lie_where_its_text_is_on_the_source_page(rotation):
    """Every markup export names the source file, so its boxes must land on the source's ink:
    an upright page with a line's box painted in, turned back the way the source lay, shows
    that ink exactly where hOCR, ALTO and PAGE put the line."""
    import numpy as np

    from pipeline.orientation import turn

    doc = turned(rotation)
    upright = np.zeros((2200, 1700), np.uint8)
    b = doc.pages[0].lines[1].bbox
    upright[b.y0:b.y1, b.x0:b.x1] = 1
    source = turn(upright, (360 - rotation) % 360)
    rows, cols = np.nonzero(source)
    ink = [int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1]
    size = [source.shape[1], source.shape[0]]

    hocr = check_hocr(get_exporter("hocr").export(doc))
    ns = {"h": "http://www.w3.org/1999/xhtml"}
    page_title = hocr.find(".//h:div[@class='ocr_page']", ns).get("title")
    assert f"bbox 0 0 {size[0]} {size[1]};" in page_title
    line_title = hocr.findall(".//h:span[@class='ocr_line']", ns)[1].get("title")
    assert line_title.startswith("bbox " + " ".join(map(str, ink)) + ";")
    assert ("textangle" in line_title) == bool(rotation)

    alto = check_alto(get_exporter("alto").export(doc))
    page = alto.find(f".//{{{ALTO_NS}}}Page")
    assert [int(page.get("WIDTH")), int(page.get("HEIGHT"))] == size
    line = alto.findall(f".//{{{ALTO_NS}}}TextLine")[1]
    x, y = int(line.get("HPOS")), int(line.get("VPOS"))
    assert [x, y, x + int(line.get("WIDTH")), y + int(line.get("HEIGHT"))] == ink
    block = alto.find(f".//{{{ALTO_NS}}}TextBlock")
    assert block.get("ROTATION") == (str(rotation) if rotation else None)
    for string in line.iter(f"{{{ALTO_NS}}}String", f"{{{ALTO_NS}}}SP"):  # words and gaps inside the line
        sx, sy = int(string.get("HPOS")), int(string.get("VPOS"))
        assert ink[0] <= sx <= ink[2] and ink[1] <= sy <= ink[3], etree.tostring(string)

    page_xml = etree.fromstring(get_exporter("page").export(doc))
    page_schema().assertValid(page_xml)
    page_el = page_xml.find(f"{{{PAGE_NS}}}Page")
    assert [int(page_el.get("imageWidth")), int(page_el.get("imageHeight"))] == size
    assert page_el.get("orientation") == ({90: "90", 180: "180", 270: "-90"}.get(rotation))
    coords = page_xml.findall(f".//{{{PAGE_NS}}}TextLine/{{{PAGE_NS}}}Coords")[1].get("points")
    xs, ys = zip(*(map(int, p.split(",")) for p in coords.split()))
    assert [min(xs), min(ys), max(xs), max(ys)] == ink
