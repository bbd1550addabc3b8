"""Plain text: lines in reading order, each page ending its last line, a form feed between pages
(as pdftotext writes them, so tools that split on lines never see a form feed glued to a word)."""

from __future__ import annotations

from pipeline.exporters import Exporter, register
from pipeline.types import DocumentResult


def render_text(doc: DocumentResult) -> bytes:
    pages = ["\n".join(line.text for line in page.lines) for page in doc.pages]
    return ("\n\f".join(pages) + "\n").encode("utf-8")


register(Exporter("text", "txt", "text/plain; charset=utf-8", render_text))
