"""A PDF page that is one scan is taken from the file; any page showing more is rendered by poppler."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pikepdf
import pytest
from PIL import Image, ImageDraw

from pipeline.config import RenderOptions
from pipeline.pdf_render import _runs
from pipeline.pdf_scans import ScanPages
from pipeline.render import render_pages

pytestmark = pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils missing")

SIZE = (850, 1100)  # 8.5 x 11 in at 100 dpi


def fax_page(seed: int) -> Image.Image:
    """A 1-bit page with black blocks where text would be; the white bottom-left is left empty."""
    rng = np.random.default_rng(seed)
    page = Image.new("1", SIZE, 1)
    draw = ImageDraw.Draw(page)
    for _ in range(40):
        x, y = int(rng.integers(50, 700)), int(rng.integers(50, 700))
        draw.rectangle([x, y, x + int(rng.integers(20, 120)), y + 12], fill=0)
    return page


def scan_pdf(path: Path, pages: list[Image.Image], dpi: int = 100) -> Path:
    """One CCITT G4 scan per page, as scanners write them (Pillow's PDF writer)."""
    pages[0].save(path, "PDF", resolution=float(dpi), save_all=True, append_images=pages[1:])
    return path


def edit_pdf(path: Path, edit) -> Path:
    with pikepdf.open(path, allow_overwriting_input=True) as pdf:
        edit(pdf)
        pdf.save(path)
    return path


def add_text(pdf: pikepdf.Pdf, page_index: int, mode: int) -> None:
    """'STAMP' in 48 pt Helvetica in the page's empty bottom-left corner, in text render `mode`."""
    page = pdf.pages[page_index]
    font = pdf.make_indirect(pikepdf.Dictionary(Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1,
                                                BaseFont=pikepdf.Name.Helvetica))
    page.obj.Resources.Font = pikepdf.Dictionary(F1=font)
    page.contents_add(pikepdf.Stream(pdf, f"BT /F1 48 Tf {mode} Tr 40 40 Td (STAMP) Tj ET".encode()))


def bits(page: Image.Image) -> np.ndarray:
    return np.asarray(page.convert("L"))


def test_scan_page_is_its_own_image(tmp_path):
    pages = [fax_page(1), fax_page(2)]
    pdf = scan_pdf(tmp_path / "fax.pdf", pages)
    with ScanPages(pdf) as scans:
        assert np.array_equal(scans.image(2, 100), bits(pages[1]))  # pixel for pixel, no resampling
    taken = list(render_pages(pdf, RenderOptions(dpi=100)))
    rendered = list(render_pages(pdf, RenderOptions(dpi=100, embedded_scans=False)))
    for page, mine, poppler in zip(pages, taken, rendered):
        assert np.array_equal(mine.image, bits(page))
        # poppler draws the same page: same size, same black and white (not inverted)
        assert mine.image.shape == poppler.image.shape
        assert np.abs(mine.image.astype(int) - poppler.image.astype(int)).mean() < 2


def test_scan_is_resampled_to_the_asked_dpi(tmp_path):
    pdf = scan_pdf(tmp_path / "fax.pdf", [fax_page(3)])
    [mine] = render_pages(pdf, RenderOptions(dpi=60))
    [poppler] = render_pages(pdf, RenderOptions(dpi=60, embedded_scans=False))
    assert mine.dpi == 60 and mine.image.shape == poppler.image.shape == (660, 510)
    assert abs(float(mine.image.mean()) - float(poppler.image.mean())) < 2


def stamp_ink(image: np.ndarray) -> int:
    """Dark pixels where add_text puts its STAMP (100 dpi: 40 pt from the left and bottom)."""
    return int((image[-100:, 40:400] < 128).sum())


def test_visible_text_on_a_scan_is_rendered_not_lost(tmp_path):
    pdf = edit_pdf(scan_pdf(tmp_path / "stamped.pdf", [fax_page(4)]), lambda p: add_text(p, 0, 0))
    with ScanPages(pdf) as scans:
        assert scans.image(1, 100) is None
    [page] = render_pages(pdf, RenderOptions(dpi=100))
    assert stamp_ink(page.image) > 500


def test_invisible_ocr_text_does_not_stop_taking_the_scan(tmp_path):
    page = fax_page(5)
    pdf = edit_pdf(scan_pdf(tmp_path / "ocred.pdf", [page]), lambda p: add_text(p, 0, 3))
    with ScanPages(pdf) as scans:
        assert np.array_equal(scans.image(1, 100), bits(page))


def test_inverted_decode_and_turned_pages_are_rendered(tmp_path):
    page = fax_page(6)

    def invert(pdf):
        for image in pdf.pages[0].Resources.XObject.values():
            image.Decode = pikepdf.Array([1, 0])

    inverted = edit_pdf(scan_pdf(tmp_path / "inverted.pdf", [page]), invert)
    with ScanPages(inverted) as scans:
        assert scans.image(1, 100) is None
    [drawn] = render_pages(inverted, RenderOptions(dpi=100))
    assert drawn.image.mean() < 128  # poppler honours the Decode array: mostly black now

    def turn(pdf):
        pdf.pages[0].obj.Rotate = 90

    turned = edit_pdf(scan_pdf(tmp_path / "turned.pdf", [page]), turn)
    with ScanPages(turned) as scans:
        assert scans.image(1, 100) is None
    [drawn] = render_pages(turned, RenderOptions(dpi=100))
    assert drawn.image.shape == (SIZE[0], SIZE[1])  # landscape, as a viewer shows it


def test_mixed_document_keeps_its_page_order(tmp_path):
    pages = [fax_page(7), fax_page(8), fax_page(9)]
    pdf = edit_pdf(scan_pdf(tmp_path / "mixed.pdf", pages), lambda p: add_text(p, 1, 0))
    out = list(render_pages(pdf, RenderOptions(dpi=100, chunk_pages=2)))
    assert [p.number for p in out] == [1, 2, 3]
    assert np.array_equal(out[0].image, bits(pages[0])) and np.array_equal(out[2].image, bits(pages[2]))
    assert stamp_ink(out[1].image) > 500 and stamp_ink(out[0].image) == 0
    assert _runs([2, 3, 5, 7, 8]) == [(2, 3), (5, 5), (7, 8)]


def test_unreadable_file_for_pikepdf_leaves_rendering_to_poppler(tmp_path):
    with ScanPages(tmp_path / "missing.pdf") as scans:
        assert scans.image(1, 100) is None


def test_a_jpeg_scan_is_taken_with_its_own_pixels(tmp_path):
    """A JPEG scan is decoded once, by libjpeg through qpdf (strict about corrupt data), to the
    very pixels the JPEG holds."""
    path = tmp_path / "photo_scan.pdf"
    Image.fromarray(bits(fax_page(3))).save(path, "PDF", resolution=100.0)
    with pikepdf.open(path) as pdf:
        [jpeg] = pdf.pages[0].Resources.XObject.values()
        assert jpeg.Filter == "/DCTDecode"
        stored = np.asarray(Image.open(io.BytesIO(jpeg.read_raw_bytes())))
    with ScanPages(path) as scans:
        taken = scans.image(1, 100)
    assert taken is not None and np.array_equal(taken, stored)
