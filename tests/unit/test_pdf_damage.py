"""Fax (CCITT), JBIG2 and Flate scans cut short or corrupt (JBIG2: where coded as MMR) in a PDF fail
their document, naming the page; whole ones of every kind are read as before."""

from __future__ import annotations

import base64
import io
import shutil
import struct
import zlib
from functools import cache
from pathlib import Path

import numpy as np
import pikepdf
import pytest
from PIL import Image

from pipeline.config import RenderOptions
from pipeline.errors import CorruptDocumentError
from pipeline.render import render_pages
from tests.unit.test_render import _error, corrupt, scan_with_text, with_page_image

pytestmark = pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils missing")


def tiff_strip(page: Image.Image, compression: str, t4_options: int | None = None) -> bytes:
    """The fax data libtiff writes for a 1-bit page, as one strip (EOLs before each row in
    Group 3, as fax machines send them; T4Options 1: mixed 1D/2D rows, 4: EOLs byte-aligned)."""
    info = {278: page.height} if t4_options is None else {278: page.height, 292: t4_options}
    buffer = io.BytesIO()
    page.save(buffer, "TIFF", compression=compression, tiffinfo=info)
    tiff = Image.open(io.BytesIO(buffer.getvalue()))
    [offset], [length] = tiff.tag_v2[273], tiff.tag_v2[279]
    return buffer.getvalue()[offset:offset + length]


def image_pdf(path: Path, pages: list[tuple[bytes, dict]], size=(850, 1100)) -> Path:
    """A PDF of one 850 x 1100 image per page (8.5 x 11 in at 100 dpi): (data, its stream entries,
    1-bit gray unless they say otherwise; None drops one). Saved as written: qpdf would otherwise
    undo an ASCII85 filter and re-compress the data."""
    pdf = pikepdf.new()
    for data, entries in pages:
        fields = {"BitsPerComponent": 1, "ColorSpace": pikepdf.Name.DeviceGray} | entries
        image = pikepdf.Stream(pdf, data)
        image.stream_dict.update(pikepdf.Dictionary(
            Type=pikepdf.Name.XObject, Subtype=pikepdf.Name.Image, Width=size[0], Height=size[1],
            **{key: value for key, value in fields.items() if value is not None}))
        page = pdf.add_blank_page(page_size=(612, 792))
        page.Resources = pikepdf.Dictionary(XObject=pikepdf.Dictionary(Im0=image))
        page.Contents = pikepdf.Stream(pdf, b"q 612 0 0 792 0 0 cm /Im0 Do Q")
    pdf.save(path, compress_streams=False, stream_decode_level=pikepdf.StreamDecodeLevel.none)
    return path


def group3_pdf(path: Path, count: int) -> Path:
    """`count` pages of Group 3 fax (one-dimensional, EOL before every row), as fax servers write."""
    data = tiff_strip(scan_with_text("1"), "group3", 0)
    parms = pikepdf.Dictionary(K=0, Columns=850, Rows=1100, EndOfLine=True, BlackIs1=True)
    return image_pdf(path, [(data, {"Filter": pikepdf.Name.CCITTFaxDecode, "DecodeParms": parms})] * count)


def jbig2_pdf(path: Path, count: int) -> Path:
    """`count` pages of JBIG2, as scanners and OCRmyPDF write them: a page-information segment
    and one generic region (coded as MMR, i.e. Group 4 fax data)."""
    page = scan_with_text("1")
    mmr = tiff_strip(Image.fromarray(255 - np.asarray(page.convert("L"))).convert("1"), "group4")

    def segment(number: int, kind: int, data: bytes) -> bytes:  # on page 1, referring to none
        return struct.pack(">IBBBI", number, kind, 0, 1, len(data)) + data

    region = struct.pack(">IIIIB", *page.size, 0, 0, 0) + b"\x01" + mmr  # region info, flags: MMR
    data = segment(0, 48, struct.pack(">IIIIBH", *page.size, 0, 0, 0, 0)) + segment(1, 38, region)
    return image_pdf(path, [(data, {"Filter": pikepdf.Name.JBIG2Decode})] * count)


def group4_pdf(path: Path, count: int) -> Path:
    """`count` pages of Group 4 fax, as Pillow's PDF writer (and most scanners) store 1-bit scans."""
    page = scan_with_text("1")
    page.save(path, "PDF", resolution=100.0, save_all=True, append_images=[page] * (count - 1))
    return path


def cut_in_the_scan(data: bytes) -> bytes:
    """The first 40 % of the data: well inside the rows (Pillow's fax streams carry a TIFF
    directory after them)."""
    return data[: len(data) * 2 // 5]


@pytest.mark.parametrize("embedded_scans", [True, False])
@pytest.mark.parametrize("make, damage, reason", [
    (group4_pdf, cut_in_the_scan, "its fax data is cut short: "),
    (group3_pdf, cut_in_the_scan, "its fax data is cut short: "),
    (group4_pdf, corrupt, "its fax data is corrupt after row "),
    (jbig2_pdf, cut_in_the_scan, "its JBIG2 data is cut short"),
    (jbig2_pdf, corrupt, "its JBIG2 data is corrupt after row "),  # its region coded as MMR
])
def test_a_fax_or_jbig2_scan_cut_short_or_corrupt_fails_naming_the_page(tmp_path, embedded_scans, make, damage, reason):
    """Poppler draws the rows a fax scan lacks as white paper without a word (pikepdf's JBIG2
    decoder a blank page), and a JBIG2 region's corrupt MMR rows wrong with a warning (pikepdf's
    decoder without one): the page's text was lost and its document marked done."""
    path = make(tmp_path / "faxes.pdf", 3)
    whole = list(render_pages(path, RenderOptions(dpi=100, embedded_scans=embedded_scans)))
    assert len(whole) == 3 and all(page.image.min() == 0 for page in whole)  # each with its text
    with_page_image(path, 2, damage, drawn_over=not embedded_scans)
    err = _error(path, RenderOptions(dpi=100, embedded_scans=embedded_scans))
    assert isinstance(err, CorruptDocumentError)
    assert str(err).startswith(f"{path}: page 2's image data is damaged ({reason}"), str(err)


def test_a_fax_scan_white_at_the_bottom_is_whole(tmp_path):
    """Rows are counted from the data, not from the ink: an empty bottom half is no damage."""
    page = np.full((1100, 850), 255, np.uint8)
    page[100:140, 100:700] = 0
    path = tmp_path / "half.pdf"
    Image.fromarray(page).convert("1").save(path, "PDF", resolution=100.0)
    [rendered] = render_pages(path, RenderOptions(dpi=100))
    assert rendered.image[120, 400] == 0 and rendered.image[1000].min() == 255


@cache
def gray_scan() -> np.ndarray:
    return np.asarray(scan_with_text())


def png_up(rows: np.ndarray) -> bytes:
    """Rows under the PNG "Up" predictor, each after its tag byte, as img2pdf stores PNG scans."""
    above = np.vstack([np.zeros_like(rows[:1]), rows[:-1]])
    return np.hstack([np.full((len(rows), 1), 2, np.uint8), rows - above]).tobytes()


_FLATE = pikepdf.Name.FlateDecode
_GRAY = {"BitsPerComponent": 8}
# The kinds of Flate scans writers make: (zlib input from the page's rows, stream entries, how the
# compressed data is stored).
FLATE_KINDS = {
    "gray": (lambda rows: rows.tobytes(), {**_GRAY, "Filter": _FLATE}, lambda data: data),
    "png predictor": (png_up, {**_GRAY, "Filter": _FLATE, "DecodeParms": pikepdf.Dictionary(
        Predictor=15, Columns=850, Colors=1, BitsPerComponent=8)}, lambda data: data),
    "ascii85": (lambda rows: rows.tobytes(), {**_GRAY, "Filter": pikepdf.Array(
        [pikepdf.Name.ASCII85Decode, _FLATE])}, lambda data: base64.a85encode(data, wrapcol=72) + b"~>"),
    "stencil mask": (lambda rows: np.packbits(rows >= 128, axis=1).tobytes(),  # 1 bits are not painted
                     {"ImageMask": True, "ColorSpace": None, "Filter": _FLATE}, lambda data: data),
}


def flate_pdf(path: Path, kind: str, damages: list) -> Path:
    """A page per damage (bytes -> bytes, applied to the zlib data) of the scan stored as `kind`."""
    rows_of, entries, stored = FLATE_KINDS[kind]
    data = zlib.compress(rows_of(gray_scan()))
    return image_pdf(path, [(stored(damage(data)), entries) for damage in damages])


def whole(data: bytes) -> bytes:
    return data


def bad_block_type(data: bytes) -> bytes:
    """The first deflate block's type made 3, which no deflate stream has (a bad first sector)."""
    return data[:2] + bytes([data[2] | 0x06]) + data[3:]


def first_700_rows(_: bytes) -> bytes:
    """A whole zlib stream of the scan's first 700 rows: what repairing a file cut short writes."""
    return zlib.compress(gray_scan()[:700].tobytes())


@pytest.mark.parametrize("embedded_scans", [True, False])
@pytest.mark.parametrize("kind, damage, reason", [
    ("gray", cut_in_the_scan, "its Flate data is cut short: "),
    ("gray", bad_block_type, "its Flate data is corrupt after row 0 of 1100 (invalid block type)"),
    ("gray", first_700_rows, "its Flate data ends after 700 of its 1100 rows"),
    ("png predictor", cut_in_the_scan, "its Flate data is cut short: "),
    ("ascii85", cut_in_the_scan, "its Flate data is cut short: "),
    ("stencil mask", cut_in_the_scan, "its Flate data is cut short: "),
])
def test_a_flate_scan_cut_short_or_corrupt_fails_naming_the_page(tmp_path, embedded_scans, kind, damage, reason):
    """Poppler draws the rows a Flate image lacks as white paper (with a line on stderr when the
    data is cut short, without one when it is corrupt or holds too few rows), so the page's text
    was lost and its document marked done with a warning at most."""
    options = RenderOptions(dpi=100, embedded_scans=embedded_scans)
    pages = list(render_pages(flate_pdf(tmp_path / "whole.pdf", kind, [whole] * 3), options))
    assert len(pages) == 3 and all(page.image[550:].min() == 0 for page in pages)  # each with its text
    path = flate_pdf(tmp_path / "flate.pdf", kind, [whole, damage, whole])
    err = _error(path, options)
    assert isinstance(err, CorruptDocumentError)
    assert str(err).startswith(f"{path}: page 2's image data is damaged ({reason}"), str(err)


def no_checksum(data: bytes) -> bytes:
    return data[:-4]


def wrong_checksum_then_bytes(data: bytes) -> bytes:
    return data[:-4] + b"\0\0\0\0\r\nendstream junk\r\n"


@pytest.mark.parametrize("embedded_scans", [True, False])
def test_flate_data_poppler_draws_whole_is_no_damage(tmp_path, embedded_scans):
    """Poppler never checks the Adler-32 checksum after the deflate data and stops reading once it
    has the image's rows: a checksum missing (some writers omit it) or wrong, or bytes after it,
    draw the whole page. Only the last page, cut short, is named."""
    options = RenderOptions(dpi=100, embedded_scans=embedded_scans)
    tolerated = [no_checksum, wrong_checksum_then_bytes]
    [reference] = render_pages(flate_pdf(tmp_path / "whole.pdf", "gray", [whole]), options)
    pages = list(render_pages(flate_pdf(tmp_path / "odd.pdf", "gray", tolerated), options))
    assert len(pages) == 2 and all(np.array_equal(page.image, reference.image) for page in pages)
    path = flate_pdf(tmp_path / "odd-and-cut.pdf", "gray", [*tolerated, cut_in_the_scan])
    assert str(_error(path, options)).startswith(f"{path}: page 3's image data is damaged (its Flate data is cut short")


def test_a_stencil_mask_cut_short_fails_naming_the_page(tmp_path):
    """An image drawn through a stencil /Mask (as mixed-raster writers draw text: black paint
    masked to the letters) loses the letters below the mask's cut: poppler masks those rows out."""
    data = zlib.compress(np.packbits(gray_scan() >= 128, axis=1).tobytes())  # 1 bits masked out
    path = image_pdf(tmp_path / "masked.pdf", [(zlib.compress(bytes(850 * 1100)), {
        "BitsPerComponent": 8, "Filter": pikepdf.Name.FlateDecode})] * 2)  # black paper
    with pikepdf.open(path, allow_overwriting_input=True) as pdf:
        for number, page in enumerate(pdf.pages, 1):
            [image] = page.Resources.XObject.values()
            image.Mask = pdf.make_stream(data if number == 1 else cut_in_the_scan(data), Width=850, Height=1100,
                                         ImageMask=True, Filter=pikepdf.Name.FlateDecode)
        pdf.save(path)
    [first] = render_pages(path, RenderOptions(dpi=100, chunk_pages=1), skip={2})
    assert first.image[550:].min() == 0 and first.image[550:].max() == 255  # letters on white paper
    err = _error(path, RenderOptions(dpi=100))
    assert str(err).startswith(f"{path}: page 2's image data is damaged (its Flate data is cut short: "), str(err)
