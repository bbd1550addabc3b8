"""Fax (CCITT) and JBIG2 scans cut short in a PDF fail their document, naming the page; whole ones
of every fax kind are read as before."""

from __future__ import annotations

import io
import shutil
import struct
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
    """A PDF of one 850 x 1100 image per page (8.5 x 11 in at 100 dpi): (data, its stream entries)."""
    pdf = pikepdf.new()
    for data, entries in pages:
        image = pikepdf.Stream(pdf, data)
        image.stream_dict.update(pikepdf.Dictionary(
            Type=pikepdf.Name.XObject, Subtype=pikepdf.Name.Image, Width=size[0], Height=size[1],
            BitsPerComponent=1, ColorSpace=pikepdf.Name.DeviceGray, **entries))
        page = pdf.add_blank_page(page_size=(612, 792))
        page.Resources = pikepdf.Dictionary(XObject=pikepdf.Dictionary(Im0=image))
        page.Contents = pikepdf.Stream(pdf, b"q 612 0 0 792 0 0 cm /Im0 Do Q")
    pdf.save(path)
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
])
def test_a_fax_or_jbig2_scan_cut_short_or_corrupt_fails_naming_the_page(tmp_path, embedded_scans, make, damage, reason):
    """Poppler draws the rows a fax scan lacks as white paper without a word (pikepdf's JBIG2
    decoder a blank page): the page's text was lost and its document marked done."""
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
