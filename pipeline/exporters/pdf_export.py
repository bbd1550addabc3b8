"""Searchable PDF: the recognized lines as an invisible text layer (render mode 3) fitted to their
boxes, in reading order (pikepdf). A document that came as a PDF keeps its own pages (images,
vector text, metadata, rotation) with the layer added, as OCRmyPDF does; images come as each
stored page image drawn full page."""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from functools import cache
from typing import NamedTuple

import pikepdf
from PIL import Image

from pipeline.errors import QuireError
from pipeline.exporters import Exporter, ImageLoader, register
from pipeline.exporters.markup import SOFTWARE, SOFTWARE_VERSION, clean
from pipeline.pdf_pages import inherited, page_box
from pipeline.storage import source_key
from pipeline.types import DocumentResult, PageResult

GLYPH_WIDTH = 500  # every glyph is half an em wide in 1/1000 text space; Tz fits the line
DESCENT = 0.2  # share of the box below the baseline
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LAYER_FONT = "QuireF0"  # the layer's font's name on a source PDF's pages: clear of the page's own
GLYPHLESS = "QuireGlyphless"


class PageImageError(QuireError):
    http_status = 500


@dataclass
class _Fonts:
    """The text layer's font: one glyph, empty and half an em wide, that every character code
    selects (nothing is ever painted), embedded as a TrueType program so the file can be PDF/A;
    two-byte codes (Identity-H), allocated as characters appear, and a ToUnicode map from them
    to the text, so copy, search and extraction give the real characters."""

    pdf: pikepdf.Pdf
    codes: dict[str, int] = field(default_factory=dict)

    def encode(self, text: str) -> bytes:
        return b"".join(self.codes.setdefault(char, len(self.codes) + 1).to_bytes(2, "big")
                        for char in text)

    def font(self) -> pikepdf.Dictionary:
        """The font object, made after every line is encoded: its maps list the codes used."""
        descriptor = pikepdf.Dictionary(
            Type=pikepdf.Name.FontDescriptor, FontName=pikepdf.Name("/" + GLYPHLESS), Flags=4,
            FontBBox=[0, -DESCENT * 1000, GLYPH_WIDTH, (1 - DESCENT) * 1000], ItalicAngle=0,
            Ascent=(1 - DESCENT) * 1000, Descent=-DESCENT * 1000, CapHeight=(1 - DESCENT) * 1000,
            StemV=80, FontFile2=self.pdf.make_stream(glyphless_font_program()))
        # CID 0 is .notdef, which PDF/A forbids text to select: every code used is 1 or more.
        cid_to_gid = b"\x00\x00" + b"\x00\x01" * len(self.codes)
        cid_font = pikepdf.Dictionary(
            Type=pikepdf.Name.Font, Subtype=pikepdf.Name.CIDFontType2,
            BaseFont=pikepdf.Name("/" + GLYPHLESS),
            CIDSystemInfo=pikepdf.Dictionary(Registry=pikepdf.String("Adobe"),
                                             Ordering=pikepdf.String("Identity"), Supplement=0),
            FontDescriptor=self.pdf.make_indirect(descriptor), DW=GLYPH_WIDTH,
            CIDToGIDMap=self.pdf.make_stream(cid_to_gid))
        return self.pdf.make_indirect(pikepdf.Dictionary(
            Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type0,
            BaseFont=pikepdf.Name("/" + GLYPHLESS), Encoding=pikepdf.Name("/Identity-H"),
            DescendantFonts=[self.pdf.make_indirect(cid_font)],
            ToUnicode=self.pdf.make_stream(to_unicode_cmap(
                {code: char for char, code in self.codes.items()}))))


@cache
def glyphless_font_program() -> bytes:
    """A TrueType font of two empty glyphs half an em wide: .notdef and the one every code shows."""
    from fontTools.fontBuilder import FontBuilder
    from fontTools.misc.timeTools import timestampFromString
    from fontTools.pens.ttGlyphPen import TTGlyphPen

    builder = FontBuilder(1000, isTTF=True)
    builder.setupGlyphOrder([".notdef", "blank"])
    builder.setupCharacterMap({})
    empty = TTGlyphPen(None).glyph()
    builder.setupGlyf({".notdef": empty, "blank": empty})
    builder.setupHorizontalMetrics({".notdef": (GLYPH_WIDTH, 0), "blank": (GLYPH_WIDTH, 0)})
    builder.setupHorizontalHeader(ascent=round((1 - DESCENT) * 1000), descent=-round(DESCENT * 1000))
    builder.setupNameTable({"familyName": GLYPHLESS, "styleName": "Regular"})
    builder.setupOS2()
    builder.setupPost()
    # A fixed date, not now: the same text layer is the same bytes.
    dated = timestampFromString("Mon Jan  1 00:00:00 2024")
    builder.updateHead(created=dated, modified=dated)
    builder.font.recalcTimestamp = False
    buffer = io.BytesIO()
    builder.save(buffer)
    return buffer.getvalue()


def to_unicode_cmap(by_code: dict[int, str]) -> bytes:
    """A ToUnicode CMap: two-byte codes to UTF-16BE, so copy and search give the real text."""
    entries = [f"<{code:04X}> <{char.encode('utf-16-be').hex().upper()}>"
               for code, char in sorted(by_code.items())]
    chunks = [entries[i:i + 100] for i in range(0, len(entries), 100)]  # at most 100 per block
    body = "".join(f"{len(c)} beginbfchar\n" + "\n".join(c) + "\nendbfchar\n" for c in chunks)
    return ("/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"
            "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
            "/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n"
            "1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n" + body +
            "endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n").encode()


def image_xobject(pdf: pikepdf.Pdf, data: bytes, key: str) -> pikepdf.Stream:
    """The page image as an XObject, its compressed bytes carried over where the PDF can hold
    them as they are (PNG data with the PNG predictor, JPEG), so the PDF is about the images' size."""
    if data.startswith(PNG_SIGNATURE):
        stream = _png_passthrough(pdf, data)
        if stream is not None:
            return stream
    try:
        image: Image.Image = Image.open(io.BytesIO(data))
        image.load()
    except OSError as exc:
        raise PageImageError(f"page image {key} is unreadable: {exc}") from exc
    if image.format == "JPEG" and image.mode in ("L", "RGB"):
        return _xobject(pdf, data, image.width, image.height, image.mode, pikepdf.Name.DCTDecode)
    image = image.convert("RGB" if image.mode not in ("1", "L", "I;16", "I") else "L")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    stream = _png_passthrough(pdf, buffer.getvalue())
    assert stream is not None  # an 8-bit, non-interlaced gray or RGB PNG we just wrote
    return stream


def _png_passthrough(pdf: pikepdf.Pdf, data: bytes) -> pikepdf.Stream | None:
    """IDAT carried over for non-interlaced 8-bit grey or RGB and 1-bit grey PNGs; None for
    anything else."""
    pos, idat, header = 8, bytearray(), None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None:
        return None
    width, height, depth, color, _, _, interlace = header
    # 8-bit grey or RGB, or 1-bit grey (a black-and-white page): 0 is black in both formats.
    if (depth, color) not in ((8, 0), (8, 2), (1, 0)) or interlace or not idat:
        return None
    stream = _xobject(pdf, bytes(idat), width, height, "L" if color == 0 else "RGB",
                      pikepdf.Name.FlateDecode, depth)
    stream.DecodeParms = pikepdf.Dictionary(Predictor=15, Colors=1 if color == 0 else 3,
                                            BitsPerComponent=depth, Columns=width)
    return stream


def _xobject(pdf: pikepdf.Pdf, encoded: bytes, width: int, height: int, mode: str,
             filter_: pikepdf.Name, bits: int = 8) -> pikepdf.Stream:
    stream = pikepdf.Stream(pdf, encoded)  # already encoded: kept as is
    stream.Type, stream.Subtype = pikepdf.Name.XObject, pikepdf.Name.Image
    stream.Width, stream.Height, stream.BitsPerComponent = width, height, bits
    stream.ColorSpace = pikepdf.Name.DeviceGray if mode == "L" else pikepdf.Name.DeviceRGB
    stream.Filter = filter_
    return stream


@dataclass(frozen=True)
class _Frame:
    """Where a page image lies in PDF user space: it shows the box (x0, y0, x1, y1), in points,
    turned `rotate` degrees clockwise (the page's /Rotate), `sx` and `sy` points per pixel."""

    x0: float
    y0: float
    x1: float
    y1: float
    rotate: int = 0
    sx: float = 1.0
    sy: float = 1.0

    @classmethod
    def covering(cls, page: PageResult, box: tuple[float, float, float, float], rotate: int) -> _Frame:
        x0, y0, x1, y1 = box
        shown_w, shown_h = (y1 - y0, x1 - x0) if rotate in (90, 270) else (x1 - x0, y1 - y0)
        return cls(x0, y0, x1, y1, rotate, shown_w / page.width, shown_h / page.height)

    def text_matrix(self, x: float, y: float) -> str:
        """The text matrix at (x, y) points from the shown page's top left, text running to
        the right as shown (worked out per quarter turn: u, v are offsets from the box's origin)."""
        w, h = self.x1 - self.x0, self.y1 - self.y0
        u, v, axes = {0: (x, h - y, "1 0 0 1"), 90: (y, x, "0 1 -1 0"),
                      180: (w - x, y, "-1 0 0 -1"), 270: (w - y, h - x, "0 -1 1 0")}[self.rotate]
        return f"{axes} {self.x0 + u:.2f} {self.y0 + v:.2f} Tm"


def text_layer(page: PageResult, fonts: _Fonts, frame: _Frame | None = None,
               font_name: str = "F0") -> bytes:
    """BT ... ET drawing each line invisibly over its box, in reading order. Without a frame the
    page is its image at its dpi, from the origin (a page Quire made)."""
    if frame is None:
        scale = 72.0 / page.dpi
        frame = _Frame(0.0, 0.0, page.width * scale, page.height * scale, 0, scale, scale)
    ops = ["BT", "3 Tr"]
    for line in page.lines:
        text = " ".join(clean(line.text).split())
        box = line.bbox
        if not text or box.width <= 0 or box.height <= 0:
            continue
        size = box.height * frame.sy
        natural = len(text) * GLYPH_WIDTH / 1000 * size
        stretch = 100 * box.width * frame.sx / natural
        baseline = box.y1 * frame.sy - DESCENT * size  # points from the shown page's top
        ops.append(f"{stretch:.2f} Tz {frame.text_matrix(box.x0 * frame.sx, baseline)}")
        ops.append(f"/{font_name} {size:.2f} Tf <{fonts.encode(text).hex()}> Tj")
    ops.append("ET")
    return "\n".join(ops).encode()


def render_pdf(doc: DocumentResult, load_image: ImageLoader) -> bytes:
    made = searchable_pdf(doc, load_image)
    buffer = io.BytesIO()
    made.pdf.save(buffer, **made.save_settings)
    return buffer.getvalue()


class SearchablePdf(NamedTuple):
    pdf: pikepdf.Pdf
    save_settings: dict  # how to save it
    from_source: bool  # the source PDF with a text layer, not one made of the page images


def searchable_pdf(doc: DocumentResult, load_image: ImageLoader,
                   from_images: bool = False) -> SearchablePdf:
    """The searchable PDF open: the source PDF with the text layer added if the document came as
    one (unless `from_images`), else one made of the page images."""
    original = None if from_images else _source_pdf(doc, load_image)
    if original is not None:
        _layer_onto(original, doc)
        return SearchablePdf(original, {"deterministic_id": True}, from_source=True)
    # Streams are saved as they are: re-deflating the images would drop the PNG predictor.
    return SearchablePdf(_from_images(doc, load_image), {
        "deterministic_id": True, "stream_decode_level": pikepdf.StreamDecodeLevel.none,
        "object_stream_mode": pikepdf.ObjectStreamMode.generate}, from_source=False)


def _from_images(doc: DocumentResult, load_image: ImageLoader) -> pikepdf.Pdf:
    pdf = pikepdf.new()
    fonts = _Fonts(pdf)
    pages = []
    for page in doc.pages:
        if not page.image_key:
            raise PageImageError(f"page {page.number} of {doc.name} has no stored image")
        image = image_xobject(pdf, load_image(page.image_key), page.image_key)
        w_pt, h_pt = page.width * 72.0 / page.dpi, page.height * 72.0 / page.dpi
        draw = f"q {w_pt:.3f} 0 0 {h_pt:.3f} 0 0 cm /Im0 Do Q\n".encode()
        pdf_page = pdf.add_blank_page(page_size=(w_pt, h_pt))
        pdf_page.Contents = pdf.make_stream(draw + text_layer(page, fonts))
        pdf_page.Resources = pikepdf.Dictionary(XObject=pikepdf.Dictionary(Im0=image))
        pages.append(pdf_page)
    font_dict = pikepdf.Dictionary(F0=fonts.font())
    for pdf_page in pages:
        pdf_page.Resources.Font = font_dict
    pdf.docinfo[pikepdf.Name.Title] = doc.name
    pdf.docinfo[pikepdf.Name.Producer] = f"{SOFTWARE} {SOFTWARE_VERSION} (pikepdf)"
    pdf.docinfo[pikepdf.Name.Creator] = f"{SOFTWARE}, model {doc.model}"
    return pdf


def _source_pdf(doc: DocumentResult, load: ImageLoader) -> pikepdf.Pdf | None:
    """The PDF the document was read from, if it was one, opens, and has its pages (else None:
    the PDF is made from the page images)."""
    if not doc.sha256:
        return None
    try:
        data = load(source_key(doc.sha256))
    except Exception:  # noqa: BLE001 - no source kept (or not readable): the images will do
        return None
    if b"%PDF-" not in data[:1024]:
        return None
    try:
        pdf = pikepdf.open(io.BytesIO(data))
    except (pikepdf.PdfError, pikepdf.PasswordError, ValueError):
        return None
    return pdf if len(pdf.pages) == len(doc.pages) else None


def _layer_onto(pdf: pikepdf.Pdf, doc: DocumentResult) -> None:
    """The source PDF with each page's text layer added over its own content, each page turned
    as it was to be read. Pages with fonts of their own (born-digital text, or an earlier OCR
    layer) keep their text and get none."""
    fonts = _Fonts(pdf)
    layered = []
    for pdf_page, page in zip(pdf.pages, sorted(doc.pages, key=lambda p: p.number)):
        rotate = int(inherited(pdf_page.obj, "/Rotate") or 0) % 360
        if page.rotation:  # shown as it was read: the turn that set the rendered page upright
            rotate = (rotate - rotate % 90 + page.rotation) % 360
            pdf_page.obj.Rotate = rotate
        resources = inherited(pdf_page.obj, "/Resources")
        if resources is not None and len(resources.get("/Font", {})) > 0:
            continue
        x0, y0, width, height = page_box(pdf_page)
        frame = _Frame.covering(page, (x0, y0, x0 + width, y0 + height), rotate - rotate % 90)
        # The page's own drawing is wrapped in q ... Q so its graphics state cannot move the layer.
        pdf_page.contents_add(b"q\n", prepend=True)
        pdf_page.contents_add(b"\nQ\n" + text_layer(page, fonts, frame, font_name=LAYER_FONT))
        layered.append((pdf_page, resources))
    font = fonts.font() if layered else None
    for pdf_page, resources in layered:
        own = pikepdf.Dictionary(resources) if resources is not None else pikepdf.Dictionary()
        own.Font = pikepdf.Dictionary({f"/{LAYER_FONT}": font})
        pdf_page.obj.Resources = own  # the page's own copy: inherited resources stay as they were


register(Exporter("pdf", "ocr.pdf", "application/pdf", render_pdf, needs_images=True,
                  description="searchable PDF: page images with an invisible text layer"))
