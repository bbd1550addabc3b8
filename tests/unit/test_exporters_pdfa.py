"""PDF/A-2b: the searchable PDF made conformant, as pikepdf's validator (which approves only what
it knows conforms) judges the written file; a source PDF that cannot conform gives way to one
made of the page images."""

from __future__ import annotations

import io
import logging
import shutil
from dataclasses import replace
from datetime import datetime

import pikepdf
import pytest
from pikepdf import pdfa

from pipeline.exporters import get_exporter
from pipeline.storage import source_key
from tests.unit.test_exporters_pdf import (
    make_doc,
    page_image,
    pdftotext,
    shown_doc,
    source_pdf,
    words_of,
)

pytestmark = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils missing")


def conforms(data: bytes) -> bool:
    report = pdfa.validate_written(io.BytesIO(data), "2b")
    assert report.passed, report.findings
    with pikepdf.open(io.BytesIO(data)) as pdf, pdf.open_metadata() as meta:
        assert (meta["pdfaid:part"], meta["pdfaid:conformance"]) == ("2", "B")
        assert meta["pdf:Producer"].startswith("Quire ")
    return True


def test_a_scanned_image_exports_as_pdf_a_with_its_text_and_the_same_bytes_each_time(tmp_path):
    doc = make_doc(["first line of the letter", "second line"])
    doc = replace(doc, updated_at=datetime(2026, 3, 1, 12, 0))
    export = get_exporter("pdfa")
    data = export.export(doc, lambda key: page_image())
    assert conforms(data)
    assert words_of(pdftotext(data, tmp_path)) == ["first", "line", "of", "the", "letter", "second", "line"]
    assert export.export(doc, lambda key: page_image()) == data  # archives keep checksums
    assert export.extension == "pdfa.pdf" and export.media_type == "application/pdf"


def test_a_scanned_pdf_keeps_its_own_page_as_pdf_a(tmp_path):
    doc, source = shown_doc(90), source_pdf(90)
    data = get_exporter("pdfa").export(doc, {source_key(doc.sha256): source, "p1": page_image()}.__getitem__)
    assert conforms(data)
    with pikepdf.open(io.BytesIO(data)) as pdf:
        [page] = pdf.pages
        assert int(page.Rotate) == 90 and not page.get_images()  # its own drawing, no image added
    assert words_of(pdftotext(data, tmp_path)) == ["alpha", "beta", "gamma"]


def test_a_pdf_that_cannot_conform_is_made_of_its_page_images_and_says_why(tmp_path, caplog):
    """Its typed text is in Helvetica, not embedded: PDF/A forbids that, so the PDF/A is the page
    image with the recognized text over it, and a warning names the document and the reason."""
    doc = shown_doc(0)
    load = {source_key(doc.sha256): source_pdf(with_font=True), "p1": page_image()}.__getitem__
    with caplog.at_level(logging.WARNING, logger="pipeline.exporters.pdfa_export"):
        data = get_exporter("pdfa").export(doc, load)
    assert conforms(data)
    with pikepdf.open(io.BytesIO(data)) as pdf:
        assert len(pdf.pages[0].get_images()) == 1
    assert words_of(pdftotext(data, tmp_path)) == ["alpha", "beta", "gamma"]
    [warning] = caplog.records
    assert warning.getMessage().startswith("letter.pdf: its PDF cannot be PDF/A-2b as it is (")
    assert "made of its page images" in warning.getMessage()


def test_a_pdf_made_of_page_images_that_fails_is_not_made_again(monkeypatch):
    """Only a source PDF has the page images to fall back on: when the PDF made of the images is
    the one refused, the export fails at once, naming the document and the validator's reason."""
    from pipeline.exporters import pdfa_export

    refusal = pdfa.validate_written(io.BytesIO(source_pdf(with_font=True)), "2b")
    assert not refusal.passed

    def refuse(*args, **kwargs):
        raise pdfa.PdfaError(refusal)

    built = []

    def counted(*args, **kwargs):
        built.append(kwargs.get("from_images", False))
        return real(*args, **kwargs)

    real = pdfa_export.searchable_pdf
    monkeypatch.setattr(pdfa, "save", refuse)
    monkeypatch.setattr(pdfa_export, "searchable_pdf", counted)
    with pytest.raises(pdfa_export.PdfaConversionError, match=r"^scan\.png cannot be written as PDF/A-2b: no OutputIntents"):
        get_exporter("pdfa").export(make_doc(["one line"]), lambda key: page_image())
    assert built == [False]
