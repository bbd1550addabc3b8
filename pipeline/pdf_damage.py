"""Damaged image data in a PDF page: its JPEG, fax, JBIG2 and Flate images checked (pikepdf
objects), poppler's complaints heeded. Poppler draws a JPEG, fax or Flate image cut short as white
paper without a word (or one line on stderr), and corrupt data as grey or white, so the page's text
was lost while its document was marked done; these checks let the page be named instead."""

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


_CHECKED = ("/DCTDecode", "/CCITTFaxDecode", "/JBIG2Decode")
_FLATE = "/FlateDecode"


def filters(image) -> list[str]:
    """An image XObject's filters, in the order they are undone."""
    import pikepdf

    found = image.get("/Filter")
    if found is None:
        return []
    return [str(f) for f in found] if isinstance(found, pikepdf.Array) else [str(found)]


def only_filter(image) -> str | None:
    """An image XObject's filter where it has exactly one (its data as stored is then a JPEG, fax
    or JBIG2 stream of its own), else None."""
    names = filters(image)
    return names[0] if len(names) == 1 else None


def is_jpeg(image) -> bool:
    """Whether an image XObject's data is one JPEG as stored (DCTDecode its only filter)."""
    return only_filter(image) == "/DCTDecode"


def page_images(page) -> list:
    """The JPEG, fax, JBIG2 and Flate image XObjects a page draws, and the stencil masks (/Mask)
    drawn with them, those inside its form XObjects included, each once. Soft masks (/SMask)
    are not among them: poppler draws the rows one lacks opaque, so the image shows whole."""
    found: dict[tuple[int, int], object] = {}
    _collect(inherited(page.obj, "/Resources"), found, set(), _MAX_DEPTH)
    return list(found.values())


def _collect(resources, found: dict, seen: set, depth: int) -> None:
    import pikepdf

    xobjects = resources.get("/XObject") if resources is not None else None
    if xobjects is None or depth == 0:
        return
    for obj in xobjects.values():
        if obj.objgen in seen:  # a form drawn twice, or drawing itself, is walked once
            continue
        seen.add(obj.objgen)
        if obj.get("/Subtype") == "/Form":
            _collect(obj.get("/Resources"), found, seen, depth - 1)
        elif obj.get("/Subtype") == "/Image":
            mask = obj.get("/Mask")  # a stencil stream (an array of colours masks nothing out)
            for image in (obj, mask) if isinstance(mask, pikepdf.Stream) else (obj,):
                if _checked(image):
                    found[image.objgen] = image


def _checked(image) -> bool:
    names = filters(image)
    return bool(names) and (names[-1] == _FLATE or only_filter(image) in _CHECKED)


def cut_short(image) -> str | None:
    """Why an image's data (JPEG, fax, JBIG2 or Flate) cannot be whole, or None."""
    if filters(image)[-1] == _FLATE:
        return _flate_cut_short(image)
    kind = only_filter(image)
    if kind == "/CCITTFaxDecode":
        return _fax_cut_short(image)
    if kind == "/JBIG2Decode":
        return _jbig2_cut_short(image)
    return _jpeg_cut_short(image)


def _jpeg_cut_short(image) -> str | None:
    """A JPEG starts with the SOI marker and ends with EOI; a file copied or downloaded only in
    part loses the end. Poppler fills the rest with white without a word; Pillow and qpdf
    refuse it."""
    data = image.read_raw_bytes()
    if not data.strip(_PADDING):
        return "its JPEG data is empty"
    if data.find(_SOI, 0, _SOI_WITHIN) < 0:
        return "it is not JPEG data"
    if not data.rstrip(_PADDING).endswith(_EOI):
        return "its JPEG data is cut short"
    return None


def _fax_cut_short(image) -> str | None:
    """A fax stream holds fewer rows than the image's height: poppler draws the rest white
    without a word, libtiff (pikepdf, Pillow) only warns on stderr. Counted by decoding its runs
    (pipeline.ccitt, 0.2-1.2 ms a 300 dpi page)."""
    from pipeline.ccitt import Ending, fax_rows

    parms = _parms(image)
    height = int(image.get("/Height", 0))
    columns = int(parms.get("/Columns", 1728))
    if height <= 0 or columns <= 0:
        return None
    rows, ending = fax_rows(image.read_raw_bytes(), columns, height, k=int(parms.get("/K", 0)),
                            byte_align=bool(parms.get("/EncodedByteAlign", False)),
                            end_of_line=bool(parms.get("/EndOfLine", False)))
    if ending == Ending.DATA_ENDS:
        return f"its fax data is cut short: {rows} of its {height} rows are there"
    if ending == Ending.BAD_CODE:
        return f"its fax data is corrupt after row {rows} of {height}"
    return None  # whole, or ended by the writer's own end mark, or a mode not followed here


def _jbig2_cut_short(image) -> str | None:
    """A JBIG2 stream (and its shared /JBIG2Globals) is a run of segments, each header saying
    how long its data is; one cut short draws as a blank page from pikepdf's jbig2dec, and as
    white below the cut from poppler. Walking the headers is cheap; of the data only generic
    regions coded as MMR are decoded, as runs (pipeline.jbig2)."""
    import pikepdf

    from pipeline.jbig2 import jbig2_damage

    reason = jbig2_damage(image.read_raw_bytes())
    shared = _parms(image).get("/JBIG2Globals")
    if reason is None and isinstance(shared, pikepdf.Stream):
        reason = jbig2_damage(shared.read_raw_bytes())
    return f"its JBIG2 data {reason}" if reason else None


def _parms(image, index: int = 0):
    """The /DecodeParms dictionary of the image's filter `index` (written alone, or in an array
    beside the filters), or an empty one: every parameter has a default."""
    import pikepdf

    parms = image.get("/DecodeParms")
    if isinstance(parms, pikepdf.Array):
        parms = parms[index] if -len(parms) <= index < len(parms) else None
    return parms if isinstance(parms, pikepdf.Dictionary) else pikepdf.Dictionary()


def _flate_cut_short(image) -> str | None:
    """A Flate image whose data does not inflate to all of its rows (pipeline.flate). Inflating
    is the cost: 35 ms for a 300 dpi gray page (8.4 MB of samples), 2 ms for a 1-bit one."""
    from pipeline.flate import flate_damage

    names = filters(image)
    layout = _flate_rows(image, _parms(image, len(names) - 1))
    data = None if layout is None else _flate_input(image, names[:-1])
    if layout is None or data is None:
        return None
    reason = flate_damage(data, *layout)
    return f"its Flate data {reason}" if reason else None


# Colour components per sample, by colour space family (an Indexed or Separation sample is one).
_COMPONENTS = {"/DeviceGray": 1, "/CalGray": 1, "/Indexed": 1, "/Separation": 1,
               "/DeviceRGB": 3, "/CalRGB": 3, "/Lab": 3, "/DeviceCMYK": 4}


def _components(image) -> int | None:
    """Colour components per sample; None for a space not followed here."""
    import pikepdf

    if image.get("/ImageMask"):
        return 1
    space = image.get("/ColorSpace")
    if isinstance(space, pikepdf.Array) and len(space) >= 2:
        family = str(space[0])
        if family == "/ICCBased":
            return int(space[1].get("/N", 0)) or None
        return len(space[1]) if family == "/DeviceN" else _COMPONENTS.get(family)
    return _COMPONENTS.get(str(space)) if isinstance(space, pikepdf.Name) else None


def _flate_rows(image, parms) -> tuple[int, int] | None:
    """(bytes each row inflates to, rows) as poppler reads the image: its samples packed per row,
    and with a PNG predictor one tag byte more per row; None where that cannot be told."""
    bits = 1 if image.get("/ImageMask") else int(image.get("/BitsPerComponent", 0))
    width, height, components = int(image.get("/Width", 0)), int(image.get("/Height", 0)), _components(image)
    if width <= 0 or height <= 0 or bits not in (1, 2, 4, 8, 16) or not components:
        return None
    row = (width * components * bits + 7) // 8
    if int(parms.get("/Predictor", 1)) < 10:
        return row, height  # none, or TIFF's, which keeps the bytes' count
    columns, colours = int(parms.get("/Columns", 1)), int(parms.get("/Colors", 1))
    predicted = (columns * colours * int(parms.get("/BitsPerComponent", 8)) + 7) // 8
    return (row + 1, height) if predicted == row else None  # rows not the image's: not followed


def _flate_input(image, before: list[str]) -> bytes | None:
    """The image's Flate data: its bytes as stored, or with the filters before FlateDecode undone
    by qpdf (ASCII85 and ASCIIHex, as PostScript converters write); None for others."""
    import pikepdf

    if not before:
        return image.read_raw_bytes()
    if any(name not in ("/ASCII85Decode", "/ASCIIHexDecode") for name in before):
        return None
    with pikepdf.new() as scratch:
        stream = pikepdf.Stream(scratch, image.read_raw_bytes())
        stream.Filter = pikepdf.Array([pikepdf.Name(name) for name in before])
        return stream.read_bytes()


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
    ScanPages, decodes them; its fax and JBIG2 images were checked before rendering); else
    (poppler drew it as well as it could) a warning."""
    complaints = [line.strip() for line in said.splitlines() if _IMAGE_COMPLAINT.search(line)]
    if not complaints:
        return
    for number in range(first, last + 1):
        reason = scans.damaged_image(number, decode=True)
        if reason:
            raise damaged_page(path, number, reason)
    where = f"page {first}" if first == last else f"pages {first}-{last}"
    log.warning("%s: %s: poppler reports damaged data and drew what it could; check the text (%s)",
                path, where, "; ".join(complaints[:3]))
