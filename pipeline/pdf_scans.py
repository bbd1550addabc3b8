"""A scanned PDF page's own image, taken out of the file instead of rendered.

Most archive PDFs hold one scan per page. Poppler renders such a page by decoding the scan,
scaling it and drawing it into a fresh RGB raster: for a 300 dpi fax page that is most of ingest's
time and 26 MB of pixels. When a page shows nothing but one opaque, upright image covering all of
it (at most with invisible text from an earlier OCR pass on top), that image is the page: decode
it, and resample it only where its resolution is not the one asked for. Anything else on the page
(visible text, drawings, annotations, clips, masks, a turned or partial image, an unusual colour
space or decode) makes `ScanPages.image` answer None, and the page is rendered as before.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Self

import numpy as np
from PIL import Image

from pipeline.errors import CorruptDocumentError
from pipeline.image_render import page_array
from pipeline.pdf_damage import (
    DamagedJpeg,
    cut_short,
    damaged_page,
    is_jpeg,
    jpeg_samples,
    page_images,
    undecodable,
)
from pipeline.pdf_pages import inherited, page_box

log = logging.getLogger(__name__)

# Operators that cannot change what a page with one image on it looks like: state saving,
# colour and line settings (nothing is painted with them), marked content, and text objects,
# whose text is checked separately to be invisible (render mode 3, as OCR text layers are).
# Not `gs`: an ExtGState can make the image translucent or mask it.
_HARMLESS = frozenset([
    "q", "Q", "cm", "ri", "i", "w", "J", "j", "M", "d",
    "g", "G", "rg", "RG", "k", "K", "cs", "CS", "sc", "SC", "scn", "SCN",
    "BMC", "BDC", "EMC", "MP", "DP",
    "BT", "ET", "Tf", "Tz", "Tc", "Tw", "TL", "Ts", "Td", "TD", "Tm", "T*",
])
_SHOW_TEXT = frozenset(["Tj", "TJ", "'", '"'])
_INVISIBLE_TEXT = 3
_COLOUR_SPACES = {"/DeviceGray": 1, "/DeviceRGB": 3}  # named spaces; ICCBased is an array
# How far (in points, or this share of the page) the image may sit from the page's edges.
_PLACEMENT_SLACK = 0.005
# A scan within this share of the asked-for pixel size is used as it is, not resampled.
_SIZE_SLACK = 0.01


class ScanPages:
    """One PDF opened for its scans; `image(number, dpi)` per page, None where it must be rendered,
    and `damaged_image(number)`, why a JPEG, fax, JBIG2 or Flate image on the page is damaged."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._pdf = None
        self._cut: dict[tuple[int, int], str | None] = {}  # by image: a logo on every page is checked once
        try:
            import pikepdf

            self._pdf = pikepdf.open(path)
        except Exception as exc:  # noqa: BLE001 - poppler may still read what pikepdf cannot
            log.debug("%s: not opened for its scans (%s); pages are rendered", path, exc)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        if self._pdf is not None:
            self._pdf.close()

    def image(self, number: int, dpi: int) -> np.ndarray | None:
        """Page `number` (1-based) as a gray or RGB array at `dpi`, or None if it is not one scan."""
        if self._pdf is None:
            return None
        try:
            page = self._pdf.pages[number - 1]
            box = page_box(page)
            scan = _lone_scan(page, box)
            if scan is None:
                return None
            if is_jpeg(scan):
                array = self._jpeg(number, scan)
                return None if array is None else _at_dpi(array, box, dpi)
            from pikepdf import PdfImage

            pil = PdfImage(scan).as_pil_image()
        except CorruptDocumentError:
            raise
        except Exception as exc:  # noqa: BLE001 - an odd filter, a missing jbig2dec: render instead
            log.debug("page %d: scan not taken (%s); rendering it", number, exc)
            return None
        return _at_dpi(page_array(pil), box, dpi)

    def _jpeg(self, number: int, scan) -> np.ndarray | None:
        """A JPEG scan's pixels (libjpeg's through qpdf: as fast as Pillow's, and it stops at
        corrupt data, which Pillow passes over); None if they are not the size the PDF says."""
        try:
            samples = jpeg_samples(scan)
        except DamagedJpeg as exc:
            raise damaged_page(self._path, number, str(exc)) from exc
        width, height = int(scan.Width), int(scan.Height)
        channels = len(samples) // max(1, width * height)
        if channels not in (1, 3) or len(samples) != width * height * channels:
            return None
        array = np.frombuffer(samples, np.uint8).reshape((height, width, channels)[: 2 if channels == 1 else 3])
        return page_array(Image.fromarray(array))

    def damaged_image(self, number: int, decode: bool = False) -> str | None:
        """Why an image that page `number` draws is damaged, or None: a JPEG cut short or not
        JPEG, from its bytes (cheap), or with `decode`, libjpeg's complaint decoding it (for when
        poppler complained); fax or Flate data holding fewer rows than its image, JBIG2 segments
        cut short. None too where pikepdf cannot read the page: poppler's reading stands."""
        if self._pdf is None:
            return None
        try:
            for image in page_images(self._pdf.pages[number - 1]):
                if decode and is_jpeg(image):
                    reason = undecodable(image)
                else:
                    if image.objgen not in self._cut:
                        self._cut[image.objgen] = cut_short(image)
                    reason = self._cut[image.objgen]
                if reason:
                    return reason
        except Exception as exc:  # noqa: BLE001 - an odd structure: poppler may still read it
            log.debug("page %d: images not checked (%s)", number, exc)
        return None


def _lone_scan(page, box: tuple[float, float, float, float]):
    """The page's one image XObject if the page is that image (covering `box`, its MediaBox) and
    nothing visible besides."""
    import pikepdf

    obj = page.obj
    if int(inherited(obj, "/Rotate") or 0) % 360 or obj.get("/Annots") or float(obj.get("/UserUnit", 1)) != 1:
        return None
    resources = inherited(obj, "/Resources")
    xobjects = resources.get("/XObject") if resources is not None else None
    if xobjects is None or not any(o.get("/Subtype") == "/Image" for o in xobjects.values()):
        return None  # no scan to take: spare parsing a born-digital page's content
    x, y, width, height = box
    found = None
    ctm: tuple[float, ...] = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)
    text_mode, saved = 0, []
    for instruction in pikepdf.parse_content_stream(page):
        operands, op = instruction.operands, str(instruction.operator)
        if op == "q":
            saved.append((ctm, text_mode))
        elif op == "Q":
            if saved:
                ctm, text_mode = saved.pop()
        elif op == "cm":
            ctm = _concat(tuple(float(v) for v in operands), ctm)
        elif op == "Tr":
            text_mode = int(operands[0])
        elif op in _SHOW_TEXT:
            if text_mode != _INVISIBLE_TEXT:
                return None
        elif op == "Do":
            image = xobjects.get(str(operands[0]))
            if found is not None or image is None or image.get("/Subtype") != "/Image":
                return None  # a second image, or a form XObject that may draw anything
            if not _covers(ctm, x, y, width, height) or not _plain_image(image):
                return None
            found = image
        elif op not in _HARMLESS:
            return None  # paths, clips, shadings, inline images: render the page
    return found


def _concat(m: tuple[float, ...], ctm: tuple[float, ...]) -> tuple[float, ...]:
    """m x ctm for PDF's row-vector matrices [a b c d e f]."""
    a, b, c, d, e, f = m
    A, B, C, D, E, F = ctm
    return (a * A + b * C, a * B + b * D, c * A + d * C, c * B + d * D, e * A + f * C + E, e * B + f * D + F)


def _covers(ctm: tuple[float, ...], x: float, y: float, width: float, height: float) -> bool:
    """Whether the image's unit square lands upright on the whole page box."""
    a, b, c, d, e, f = ctm
    slack = max(1.0, _PLACEMENT_SLACK * max(width, height))
    return (
        abs(b) < 1e-6 and abs(c) < 1e-6 and a > 0 and d > 0
        and abs(a - width) <= slack and abs(d - height) <= slack
        and abs(e - x) <= slack and abs(f - y) <= slack
    )


def _plain_image(image) -> bool:
    """Opaque gray or RGB samples read as stored: no masks, no Decode flip, 1 or 8 bits."""
    import pikepdf

    if image.get("/ImageMask") or "/SMask" in image or "/Mask" in image:
        return False
    if int(image.get("/BitsPerComponent", 0)) not in (1, 8):
        return False
    space = image.get("/ColorSpace")
    if isinstance(space, pikepdf.Array):
        if len(space) != 2 or str(space[0]) != "/ICCBased":
            return False  # Indexed, Separation, Lab...: poppler knows them best
        channels = int(space[1].get("/N", 0))
    else:
        channels = _COLOUR_SPACES.get(str(space), 0)
    if channels not in (1, 3):
        return False
    decode = image.get("/Decode")
    return decode is None or [float(v) for v in decode] == [0.0, 1.0] * channels


def _at_dpi(array: np.ndarray, box: tuple[float, float, float, float], dpi: int) -> np.ndarray:
    """The scan at the page size `dpi` gives; one already within 1 % of it is left as it is."""
    import cv2

    _, _, width, height = box
    want_w, want_h = max(1, round(width * dpi / 72)), max(1, round(height * dpi / 72))
    h, w = array.shape[:2]
    if abs(w - want_w) <= _SIZE_SLACK * want_w and abs(h - want_h) <= _SIZE_SLACK * want_h:
        return array
    shrink = want_w * want_h < w * h
    return cv2.resize(array, (want_w, want_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
