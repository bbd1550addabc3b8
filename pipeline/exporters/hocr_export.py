"""hOCR 1.2: XHTML with ocr_page / ocr_carea / ocr_par / ocr_line / ocrx_word and their boxes."""

from __future__ import annotations

from pipeline.exporters import Exporter, register
from pipeline.exporters.markup import SOFTWARE, SOFTWARE_VERSION, page_context, render_template
from pipeline.types import DocumentResult


def image_name(doc: DocumentResult, number: int) -> str:
    """The page image as a file name the reader can relate to the source: <name>#page=N."""
    return f"{doc.name}#page={number}" if len(doc.pages) > 1 else doc.name


def render_hocr(doc: DocumentResult) -> bytes:
    pages = [{**page_context(p), "image": image_name(doc, p.number)} for p in doc.pages]
    return render_template("hocr.html.j2", doc=doc, pages=pages, software=SOFTWARE,
                           version=SOFTWARE_VERSION)


register(Exporter("hocr", "hocr", "text/vnd.hocr+html; charset=utf-8", render_hocr,
                  description="hOCR (XHTML): line and estimated word boxes, x_wconf"))
