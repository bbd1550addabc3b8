"""ALTO v4 XML: pixel units, the model in OCRProcessing, blocks, lines and words with WC."""

from __future__ import annotations

from pipeline.exporters import Exporter, register
from pipeline.exporters.markup import (
    SOFTWARE,
    SOFTWARE_VERSION,
    page_context,
    render_template,
    timestamp,
)
from pipeline.types import DocumentResult

ALTO_NS = "http://www.loc.gov/standards/alto/ns-v4#"


def render_alto(doc: DocumentResult) -> bytes:
    """One ALTO file for the document, a Page element per page (Layout allows several).

    WC is the line's confidence on each of its words: the recognizer scores whole lines.
    """
    pages = [page_context(p) for p in doc.pages]
    return render_template("alto.xml.j2", doc=doc, pages=pages, when=timestamp(doc),
                           software=SOFTWARE, version=SOFTWARE_VERSION)


register(Exporter("alto", "alto.xml", "application/xml; charset=utf-8", render_alto,
                  description="ALTO v4 XML: blocks, lines, words (WC), pixel units"))
