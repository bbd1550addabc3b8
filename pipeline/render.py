"""Documents to page images: PDFs through poppler (pdf_render), images with Pillow (image_render)."""

from __future__ import annotations

from collections.abc import Callable, Container, Iterator
from pathlib import Path

from pipeline.config import RenderOptions
from pipeline.document_checks import sniff_kind
from pipeline.errors import NoPagesError
from pipeline.image_render import count_image_pages, render_image
from pipeline.pdf_render import count_pdf_pages, render_pdf, render_pdf_page
from pipeline.types import PageImage


def count_pages(path: Path) -> int:
    """Number of pages, checking the document opens; raises BadInputError naming the file.
    Only headers are read, so no pixel limit applies: rendering holds each page to its own."""
    if sniff_kind(path) == "pdf":
        return count_pdf_pages(path)
    return count_image_pages(path)


def render_pages(path: Path, options: RenderOptions | None = None,
                 skip: Container[int] = frozenset(),
                 counted: Callable[[int], None] | None = None) -> Iterator[PageImage]:
    """Yield the document's pages one by one, but those numbered in `skip` (read before: an
    interrupted run going on), which are not rendered; memory holds one chunk of pages at most.
    `counted` is told the document's page count once it is known, before the first page."""
    options = options or RenderOptions()
    if sniff_kind(path) == "pdf":
        yield from render_pdf(path, options, skip, counted)
    else:
        yield from render_image(path, options, skip, counted)


def render_page(path: Path, number: int, options: RenderOptions | None = None) -> PageImage:
    """Page `number` (1-based) of a document, as `render_pages` renders it, without the others."""
    options = options or RenderOptions()
    if sniff_kind(path) == "pdf":
        return render_pdf_page(path, number, options)
    for page in render_image(path, options):
        if page.number == number:
            return page
    raise NoPagesError(f"has no page {number}", source=str(path))
