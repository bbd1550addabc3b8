"""Plain text: lines in reading order, a form feed between pages (the pdftotext convention)."""

from __future__ import annotations

from pipeline.exporters import Exporter, register
from pipeline.types import DocumentResult


def render_text(doc: DocumentResult) -> bytes:
    pages = ["\n".join(line.text for line in page.lines) for page in doc.pages]
    return ("\f".join(pages) + "\n").encode("utf-8")


register(Exporter("text", "txt", "text/plain; charset=utf-8", render_text))
