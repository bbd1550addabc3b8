"""Text and JSON exports from a DocumentResult; the registry's errors list the valid formats."""

from __future__ import annotations

import json

import pytest

from pipeline.exporters import UnknownFormatError, get_exporter, parse_formats
from pipeline.types import BBox, DocumentResult, LineResult, PageResult


def doc() -> DocumentResult:
    def page(number: int, texts: list[str]) -> PageResult:
        lines = tuple(
            LineResult(i, BBox(10, 20 + 30 * i, 200, 45 + 30 * i), t, 0.9 - i / 10) for i, t in enumerate(texts)
        )
        return PageResult(number, 850, 1100, 100, 0.5, lines)

    return DocumentResult("a.pdf", "ab" * 32, "quire-line-v1", (page(1, ["First line", "Second <line> & \"more\""]), page(2, ["Über café"])))


def test_text_has_lines_in_order_and_a_form_feed_between_pages():
    text = get_exporter("text").render(doc()).decode("utf-8")
    assert text == "First line\nSecond <line> & \"more\"\n\fÜber café\n"


def test_json_carries_boxes_confidence_and_page_geometry():
    data = json.loads(get_exporter("json").render(doc()))
    assert data["model"] == "quire-line-v1" and len(data["pages"]) == 2
    first = data["pages"][0]
    assert (first["width"], first["height"], first["dpi"]) == (850, 1100, 100)
    assert first["lines"][1] == {"order": 1, "bbox": [10, 50, 200, 75], "text": "Second <line> & \"more\"", "confidence": 0.8}
    assert data["pages"][1]["lines"][0]["text"] == "Über café"


def test_format_names_and_aliases():
    assert [e.extension for e in parse_formats("txt, JSON,text")] == ["txt", "json"]
    with pytest.raises(UnknownFormatError) as info:
        parse_formats("txt,docx")
    assert "valid formats: alto, hocr, json, page, pdf, text" in str(info.value)
