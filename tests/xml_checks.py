"""Checks of exported markup: PAGE against its official XSD (shipped by the ocrd package), ALTO
and hOCR structurally (no PyPI package ships the ALTO v4 XSD, so its rules are checked here)."""

from __future__ import annotations

import importlib.util
import itertools
import re
from functools import lru_cache
from pathlib import Path

import pytest
from lxml import etree

ALTO = "{http://www.loc.gov/standards/alto/ns-v4#}"
XHTML = "{http://www.w3.org/1999/xhtml}"
NCNAME = re.compile(r"[A-Za-z_][\w.-]*")
HOCR_CLASSES = {"ocr_page", "ocr_carea", "ocr_par", "ocr_line", "ocrx_word"}


@lru_cache(maxsize=1)
def page_schema() -> etree.XMLSchema:
    """PAGE 2019-07-15 from ocrd_validators (a test dependency); read as a file, not imported."""
    spec = importlib.util.find_spec("ocrd_validators")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the ocrd package (PAGE XSD) is not installed: pip install -e '.[test]'")
    xsd = Path(next(iter(spec.submodule_search_locations))) / "page.xsd"
    return etree.XMLSchema(etree.parse(str(xsd)))


def _box(el: etree._Element) -> tuple[int, int, int, int]:
    values = [el.get(k) for k in ("HPOS", "VPOS", "WIDTH", "HEIGHT")]
    assert all(v is not None and re.fullmatch(r"\d+", v) for v in values), (el.tag, values)
    x, y, w, h = map(int, values)  # type: ignore[arg-type]
    return x, y, x + w, y + h


def _inside(inner: tuple[int, ...], outer: tuple[int, ...]) -> bool:
    return outer[0] <= inner[0] <= inner[2] <= outer[2] and outer[1] <= inner[1] <= inner[3] <= outer[3]


def check_alto(data: bytes) -> etree._Element:
    """ALTO v4 rules the exporter relies on: element order, required attributes and their
    types, unique IDs, boxes nested in their parents, SP only between Strings, WC in [0, 1]."""
    root = etree.fromstring(data)
    assert root.tag == ALTO + "alto" and root.get("SCHEMAVERSION", "").startswith("4.")
    assert [c.tag for c in root] == [ALTO + "Description", ALTO + "Layout"]
    desc = root[0]
    assert [c.tag for c in desc][:3] == [ALTO + "MeasurementUnit", ALTO + "sourceImageInformation",
                                         ALTO + "OCRProcessing"]
    assert desc[0].text == "pixel" and desc.findtext(f"{ALTO}sourceImageInformation/{ALTO}fileName")
    step = desc.find(f"{ALTO}OCRProcessing/{ALTO}ocrProcessingStep")
    assert step is not None and step.findtext(f"{ALTO}processingSoftware/{ALTO}softwareName")
    ids = [el.get("ID") for el in root.iter() if el.get("ID") is not None]
    assert len(ids) == len(set(ids)) and all(NCNAME.fullmatch(i) for i in ids)
    processing = {el.get("ID") for el in desc.iter(ALTO + "OCRProcessing")}
    for page in root[1]:
        assert page.tag == ALTO + "Page" and page.get("ID")
        assert float(page.get("PHYSICAL_IMG_NR")) >= 1
        assert page.get("PROCESSING") in processing
        size = (0, 0, int(page.get("WIDTH")), int(page.get("HEIGHT")))
        [space] = list(page)
        assert space.tag == ALTO + "PrintSpace" and _inside(_box(space), size)
        for block in space:
            assert block.tag == ALTO + "TextBlock" and _inside(_box(block), _box(space))
            for line in block:
                assert line.tag == ALTO + "TextLine" and _inside(_box(line), _box(block))
                kinds = [c.tag for c in line]
                assert set(kinds) <= {ALTO + "String", ALTO + "SP"}
                assert not kinds or (kinds[0] == kinds[-1] == ALTO + "String")
                assert all(a != b or a != ALTO + "SP" for a, b in itertools.pairwise(kinds))
                for word in line.iter(ALTO + "String"):
                    assert word.get("CONTENT") and not re.search(r"\s", word.get("CONTENT"))
                    assert 0.0 <= float(word.get("WC")) <= 1.0
                    assert _inside(_box(word), _box(line))
    return root


def check_hocr(data: bytes) -> etree._Element:
    """hOCR: well-formed XHTML, the standard classes declared in ocr-capabilities and used with
    bbox (and x_wconf 0-100 on lines and words), ocr_page with ppageno and scan_res."""
    root = etree.fromstring(data)  # XML parse: well-formed or it raises
    assert root.tag == XHTML + "html"
    metas = {m.get("name"): m.get("content") for m in root.iter(XHTML + "meta") if m.get("name")}
    assert metas.get("ocr-system")
    capabilities = set(metas["ocr-capabilities"].split())
    used = {el.get("class") for el in root.iter() if (el.get("class") or "").startswith("ocr")}
    assert used <= capabilities and {"ocr_page", "ocr_line"} <= used <= HOCR_CLASSES
    for el in root.iter():
        cls = el.get("class") or ""
        if not cls.startswith("ocr"):
            continue
        props = dict(p.strip().split(" ", 1) for p in el.get("title").split(";"))
        assert re.fullmatch(r"\d+ \d+ \d+ \d+", props["bbox"]), props
        if cls == "ocr_page":
            assert re.fullmatch(r"\d+", props["ppageno"]) and re.fullmatch(r"\d+ \d+", props["scan_res"])
        if cls in ("ocr_line", "ocrx_word"):
            assert 0 <= int(props["x_wconf"]) <= 100
    return root
