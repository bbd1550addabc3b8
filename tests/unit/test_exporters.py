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
    assert "valid formats: txt, json, hocr, alto, page, pdf, pdfa" in str(info.value)


def test_export_and_view_into_a_folder_name_a_file_where_quire_run_out_does(tmp_path):
    """`quire export/view --out DIR/` of D/sub1/same.pdf and D/sub2/same.pdf (one document)
    both wrote DIR/same.*; they go where `quire run D --out DIR` put them."""
    from pipeline.exporters import mirrored_name
    from pipeline.inputs import input_names

    files = [tmp_path / "D" / sub / "same.pdf" for sub in ("sub1", "sub2")] + [tmp_path / "alone.pdf"]
    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.touch()
    outputs, stored = input_names(files, [tmp_path / "D"])
    assert [stored[f] for f in files] == ["D/sub1/same.pdf", "D/sub2/same.pdf", "alone.pdf"]
    assert [mirrored_name(stored[f]) for f in files] == [outputs[f] for f in files] == [
        "sub1/same", "sub2/same", "alone"]
    assert mirrored_name("../../etc/x.pdf") == "x" and mirrored_name("/abs/box/x.pdf") == "box/x"
