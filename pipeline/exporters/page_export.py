"""PAGE XML 2019-07-15: regions and lines with Coords, TextEquiv with conf, reading order."""

from __future__ import annotations

import io
import zipfile
from pathlib import PurePosixPath

from pipeline.exporters import Exporter, register
from pipeline.exporters.markup import (
    SOFTWARE,
    SOFTWARE_VERSION,
    page_context,
    render_template,
    timestamp,
)
from pipeline.types import DocumentResult, PageResult

PAGE_NS = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"


def render_page_xml(doc: DocumentResult, page: PageResult) -> bytes:
    """PAGE XML for one page (the format holds exactly one page per file)."""
    created = timestamp(doc) if doc.created_at is None else doc.created_at.replace(
        microsecond=0).isoformat()
    image = f"{doc.name}#page={page.number}" if len(doc.pages) > 1 else doc.name
    return render_template(
        "page.xml.j2", doc=doc, image=image, created=created, changed=timestamp(doc),
        gts_id=f"doc_{doc.sha256[:16]}_p{page.number}", software=SOFTWARE,
        version=SOFTWARE_VERSION, **page_context(page),
    )


def member_name(doc: DocumentResult, page: PageResult) -> str:
    return f"{PurePosixPath(doc.name).stem or 'page'}_{page.number:04d}.page.xml"


def render_page(doc: DocumentResult) -> bytes:
    """One page: its PAGE XML. Several: a ZIP with one PAGE XML per page, in page order."""
    if len(doc.pages) == 1:
        return render_page_xml(doc, doc.pages[0])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for page in doc.pages:
            info = zipfile.ZipInfo(member_name(doc, page), date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, render_page_xml(doc, page))
    return buffer.getvalue()


register(Exporter(
    "page", "page.xml", "application/xml; charset=utf-8", render_page,
    description="PAGE XML 2019 (one page; a ZIP of one file per page for longer documents)",
    multi_page_extension="page.zip", multi_page_media_type="application/zip",
))
