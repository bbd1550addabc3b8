"""Damaged image data in a PDF page: its JPEGs checked (pikepdf objects), poppler's complaints heeded.
Poppler draws a JPEG cut short as white paper without a word and corrupt data as grey with one
line on stderr, so the page's text was lost while its document was marked done; these checks
let the page be named instead."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from pipeline.errors import CorruptDocumentError
from pipeline.pdf_pages import inherited

log = logging.getLogger(__name__)

_SOI, _EOI = b"\xff\xd8", b"\xff\xd9"
# What writers may put after the EOI marker (a newline, zeros) and poppler skips before SOI.
_PADDING = b"\x00\t\n\x0c\r "
_SOI_WITHIN = 1024
_MAX_DEPTH = 8  # forms inside forms; deeper nesting is not looked into


def is_jpeg(image) -> bool:
    """Whether an image XObject's data is one JPEG as stored (DCTDecode its only filter)."""
    import pikepdf

    filters = image.get("/Filter")
    names = [str(f) for f in filters] if isinstance(filters, pikepdf.Array) else [str(filters)]
    return names == ["/DCTDecode"]


def page_jpegs(page) -> list:
    """The JPEG image XObjects a page draws, those inside its form XObjects included, each once."""
    found: dict[tuple[int, int], object] = {}
    _collect(inherited(page.obj, "/Resources"), found, set(), _MAX_DEPTH)
    return list(found.values())


def _collect(resources, found: dict, seen: set, depth: int) -> None:
    xobjects = resources.get("/XObject") if resources is not None else None
    if xobjects is None or depth == 0:
        return
    for obj in xobjects.values():
        if obj.objgen in seen:  # a form drawn twice, or drawing itself, is walked once
            continue
        seen.add(obj.objgen)
        if obj.get("/Subtype") == "/Form":
            _collect(obj.get("/Resources"), found, seen, depth - 1)
        elif obj.get("/Subtype") == "/Image" and is_jpeg(obj):
            found[obj.objgen] = obj


def cut_short(image) -> str | None:
    """Why a JPEG stream cannot be whole, or None. A JPEG starts with the SOI marker and ends
    with EOI; a file copied or downloaded only in part loses the end. Poppler fills the rest
    with white without a word; Pillow and qpdf refuse it."""
    data = image.read_raw_bytes()
    if not data.strip(_PADDING):
        return "its JPEG data is empty"
    if data.find(_SOI, 0, _SOI_WITHIN) < 0:
        return "it is not JPEG data"
    if not data.rstrip(_PADDING).endswith(_EOI):
        return "its JPEG data is cut short"
    return None


class DamagedJpeg(Exception):
    """A JPEG stream libjpeg stops decoding; the message is its words."""


def jpeg_samples(image) -> bytes:
    """A JPEG stream's pixels as stored (rows of gray or RGB bytes), decoded by qpdf's libjpeg,
    which stops at corrupt data that Pillow passes over and poppler draws as grey."""
    import pikepdf

    try:
        return image.read_bytes(decode_level=pikepdf.StreamDecodeLevel.all)
    except pikepdf.DataDecodingError as exc:
        # Without qpdf's "file.pdf (object 5,0, offset 123): " and "Pl_DCT::decompress: " before it.
        words = str(exc).rsplit("): ", 1)[-1].strip()
        raise DamagedJpeg(re.sub(r"^\w+::\w+: ", "", words)) from exc


def undecodable(image) -> str | None:
    """libjpeg's complaint decoding a JPEG stream, or None."""
    try:
        jpeg_samples(image)
    except DamagedJpeg as exc:
        return str(exc)
    return None


def damaged_page(path: Path, number: int, reason: str) -> CorruptDocumentError:
    """The error failing a document one of whose pages has image data no decoder reads whole."""
    return CorruptDocumentError(f"page {number}'s image data is damaged ({reason})", source=str(path))


# What poppler and libjpeg say on stderr about data they could decode only in part (drawn as
# grey or white); other complaints (a linearized file's hint table...) are common and harmless.
_IMAGE_COMPLAINT = re.compile(r"jpe?g|dct|jpx|jbig2|ccitt|huffman|flate|lzw|image", re.IGNORECASE)


def heed_poppler(path: Path, first: int, last: int, said: str, scans) -> None:
    """Pages first..last rendered, and what poppler `said` on stderr: where it complains about
    their data, a page whose JPEG does not decode fails the document, named (`scans`, a
    ScanPages, decodes them); else (poppler drew it as well as it could) a warning."""
    complaints = [line.strip() for line in said.splitlines() if _IMAGE_COMPLAINT.search(line)]
    if not complaints:
        return
    for number in range(first, last + 1):
        reason = scans.damaged_jpeg(number, decode=True)
        if reason:
            raise damaged_page(path, number, reason)
    where = f"page {first}" if first == last else f"pages {first}-{last}"
    log.warning("%s: %s: poppler reports damaged data and drew what it could; check the text (%s)",
                path, where, "; ".join(complaints[:3]))
