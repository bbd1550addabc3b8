"""Searchable PDF/A-2b, the archival PDF: the searchable PDF (pdf_export) made conformant and
checked by pikepdf's PDF/A validator as it is written. The validator only approves what it knows
to conform, so a file this writes is PDF/A; one it cannot vouch for is not written as PDF/A."""

from __future__ import annotations

import io
import logging
from datetime import UTC

from pipeline.errors import QuireError
from pipeline.exporters import Exporter, ImageLoader, register
from pipeline.exporters.markup import SOFTWARE, SOFTWARE_VERSION
from pipeline.exporters.pdf_export import searchable_pdf
from pipeline.types import DocumentResult

log = logging.getLogger(__name__)
FLAVOUR = "2b"  # PDF/A-2b, OCRmyPDF's default too: visual fidelity, JPEG 2000 and transparency allowed


class PdfaConversionError(QuireError):
    http_status = 500


def render_pdfa(doc: DocumentResult, load_image: ImageLoader) -> bytes:
    """The source PDF with its text layer, as PDF/A; where the source holds what PDF/A forbids
    or the validator cannot check (JavaScript, fonts not embedded, ...), the PDF made of the page
    images instead, which always conforms, and a warning says why."""
    from pikepdf import pdfa

    made = searchable_pdf(doc, load_image)
    try:
        return _save(made.pdf, doc)
    except pdfa.PdfaError as exc:
        if not made.from_source:  # already the page images: nothing else to try
            raise _cannot(doc, exc) from None
        first = _reasons(exc.report)
    try:
        data = _save(searchable_pdf(doc, load_image, from_images=True).pdf, doc)
    except pdfa.PdfaError as exc:
        raise _cannot(doc, exc) from None
    log.warning("%s: its PDF cannot be PDF/A-%s as it is (%s); the PDF/A is made of its page "
                "images", doc.name, FLAVOUR, first)
    return data


def _save(pdf, doc: DocumentResult) -> bytes:
    """Made conformant, stamped, written and validated. The stamp is Quire's, and dated when the
    document was read, not now: the same reading exports to the same bytes (archives keep
    checksums). PDF/A pins how streams are written (qpdf re-encodes them as the validator
    predicts), so the searchable PDF's own save settings do not apply."""
    from pikepdf import pdfa

    pdfa.prepare(pdf, FLAVOUR)
    with pdf.open_metadata(set_pikepdf_as_editor=False) as meta:
        meta["pdf:Producer"] = f"{SOFTWARE} {SOFTWARE_VERSION} (pikepdf)"
        stamp = doc.updated_at or doc.created_at
        if stamp is not None:
            meta["xmp:MetadataDate"] = (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).isoformat()
    buffer = io.BytesIO()
    pdfa.save(pdf, buffer, FLAVOUR, repair=False, deterministic_id=True)
    return buffer.getvalue()


def _cannot(doc: DocumentResult, exc) -> PdfaConversionError:
    return PdfaConversionError(f"{doc.name} cannot be written as PDF/A-{FLAVOUR}: {_reasons(exc.report)}")


def _reasons(report, most: int = 3) -> str:
    findings = list(report.findings)
    said = "; ".join(f"{f.message} ({f.where})" for f in findings[:most])
    return said + (f"; and {len(findings) - most} more" if len(findings) > most else "")


register(Exporter("pdfa", "pdfa.pdf", "application/pdf", render_pdfa, needs_images=True,
                  description="searchable PDF/A-2b for archiving, checked as it is written"))
