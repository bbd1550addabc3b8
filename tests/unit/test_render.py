"""Rendering: PDFs and images to pages, and a clear, named error for each kind of bad input."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.config import RenderOptions
from pipeline.errors import (
    CorruptDocumentError,
    EmptyFileError,
    EncryptedDocumentError,
    ImageTooLargeError,
    NoPagesError,
    UnsupportedFormatError,
)
from pipeline.render import count_pages, render_pages

pytestmark = pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils missing")


def write_pdf(path: Path, pages: int, size=(850, 1100)) -> Path:
    images = [Image.new("L", size, 255 - 20 * i) for i in range(pages)]
    images[0].save(path, "PDF", resolution=100, save_all=True, append_images=images[1:])
    return path


def test_pdf_renders_every_page_in_chunks_at_requested_dpi(tmp_path):
    pdf = write_pdf(tmp_path / "doc.pdf", 5)  # 8.5 x 11 in at 100 dpi
    pages = list(render_pages(pdf, RenderOptions(dpi=60, chunk_pages=2)))
    assert [p.number for p in pages] == [1, 2, 3, 4, 5]
    assert all(p.dpi == 60 for p in pages)
    assert pages[0].image.shape[:2] == (660, 510)
    # page shades survive rendering, so pages come out in order
    assert pages[0].image.mean() > pages[4].image.mean()
    assert count_pages(pdf) == 5


@pytest.mark.parametrize("program", ["pdfinfo", "pdftoppm"])
def test_a_poppler_child_killed_by_a_signal_does_not_fail_a_good_pdf(tmp_path, monkeypatch, program):
    """Ctrl-C at a terminal, or systemd stopping a worker, signals the whole process group: the
    poppler child dies too, and its empty answer must not make a good PDF 'damaged'."""
    import pdf2image
    from pdf2image.exceptions import PDFPageCountError

    import pipeline.pdf_render

    pdf = write_pdf(tmp_path / "doc.pdf", 3)
    owner, attribute = {"pdfinfo": (pdf2image, "pdfinfo_from_path"),
                        "pdftoppm": (pipeline.pdf_render, "_pdftoppm")}[program]
    real = getattr(owner, attribute)
    killed: list[str] = []

    def killed_once(*args, **kwargs):
        if not killed:
            killed.append(program)
            if program == "pdfinfo":  # what pdf2image makes of a pdfinfo that printed nothing
                raise PDFPageCountError("Unable to get page count.\n")
            return [], ""  # pdftoppm ended before writing a page
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, attribute, killed_once)
    pages = list(render_pages(pdf, RenderOptions(dpi=50, embedded_scans=False)))
    assert killed == [program] and [p.number for p in pages] == [1, 2, 3]


def test_multipage_tiff_and_png(tmp_path):
    frames = [Image.new("L", (300, 200), v) for v in (250, 200, 150)]
    tiff = tmp_path / "scan.tif"
    frames[0].save(tiff, save_all=True, append_images=frames[1:], dpi=(400, 400))
    pages = list(render_pages(tiff))
    assert [p.number for p in pages] == [1, 2, 3]
    assert pages[0].dpi == 400  # the scan's own resolution wins
    assert [int(p.image.mean()) for p in pages] == [250, 200, 150]
    png = tmp_path / "one.png"
    Image.new("RGB", (40, 30), (255, 0, 0)).save(png)
    [page] = list(render_pages(png))
    assert page.image.shape == (30, 40, 3)


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp"])
def test_an_image_is_read_as_its_orientation_tag_says_it_is_shown(tmp_path, suffix):
    """A phone photo stores the sensor's pixels and records the turn (EXIF Orientation 6: turn
    90 degrees clockwise to show it); every viewer shows it turned, and so does Quire."""
    shown = np.zeros((60, 100), np.uint8)
    shown[:, :50] = 255  # white left half, black right half: which way it lies is plain
    stored = np.ascontiguousarray(np.rot90(shown))  # the sensor's pixels: a quarter counterclockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / f"photo{suffix}"
    Image.fromarray(stored).save(path, exif=exif, **({"lossless": True} if suffix == ".webp" else {}))
    [page] = list(render_pages(path))
    assert page.image.shape == shown.shape
    assert np.abs(page.image.astype(int) - shown).mean() < 3  # (JPEG's losses aside)


@pytest.mark.parametrize("suffix", [".jp2", ".j2k"])
def test_a_jpeg_2000_scan_is_read_and_found_in_a_folder(tmp_path, suffix):
    """Archives keep their masters as JPEG 2000: named, or in a folder walked, it is a document."""
    from pipeline.inputs import collect_inputs

    pixels = np.full((120, 200), 255, np.uint8)
    pixels[40:80, 20:180] = 0  # a black bar: the page is read as stored, not blank
    path = tmp_path / f"master{suffix}"
    Image.fromarray(pixels).save(path)  # Pillow's JPEG 2000 writer is lossless by default
    [page] = list(render_pages(path))
    assert np.array_equal(page.image, pixels)
    assert count_pages(path) == 1
    assert collect_inputs([tmp_path]) == [path]


def test_jpeg_2000_without_a_decoder_says_so_and_how_to_convert(tmp_path, monkeypatch):
    from PIL import features

    path = tmp_path / "master.jp2"
    Image.new("L", (40, 30), 255).save(path)
    monkeypatch.setattr(features, "check", lambda name: name != "jpg_2000")
    err = _error(path)
    assert isinstance(err, UnsupportedFormatError)
    assert "JPEG 2000 is not supported by this install" in str(err) and "opj_decompress" in str(err)


def test_a_photo_s_72_dpi_is_not_taken_for_the_paper_s(tmp_path):
    """Phones record 72 dpi whatever they photograph: 3000 px at 72 dpi would be a 42-inch page."""
    photo, scan = tmp_path / "photo.jpg", tmp_path / "scan.png"
    Image.new("L", (3000, 2250), 255).save(photo, dpi=(72, 72))
    Image.new("L", (1000, 800), 255).save(scan, dpi=(72, 72))  # a small card at 72 dpi: plausible
    assert [p.dpi for p in render_pages(photo, RenderOptions(dpi=300))] == [300]
    assert [p.dpi for p in render_pages(scan, RenderOptions(dpi=300))] == [72]


def _error(path: Path, options: RenderOptions | None = None):
    with pytest.raises(Exception) as info:
        list(render_pages(path, options))
    message = str(info.value)
    assert message.startswith(str(path) + ": "), message  # every error names the file
    return info.value


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pdf"
    path.write_bytes(b"")
    err = _error(path)
    assert isinstance(err, EmptyFileError) and "empty" in str(err)


def test_corrupt_pdf(tmp_path):
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.4\n this is not really a PDF \n")
    err = _error(path)
    assert isinstance(err, CorruptDocumentError) and "damaged" in str(err)


def test_truncated_pdf(tmp_path):
    good = write_pdf(tmp_path / "good.pdf", 2).read_bytes()
    path = tmp_path / "truncated.pdf"
    path.write_bytes(good[: len(good) // 3])
    assert isinstance(_error(path), CorruptDocumentError)


@pytest.mark.skipif(shutil.which("qpdf") is None, reason="qpdf missing")
def test_encrypted_pdf(tmp_path):
    plain = write_pdf(tmp_path / "plain.pdf", 1)
    path = tmp_path / "secret.pdf"
    subprocess.run(["qpdf", "--encrypt", "user", "owner", "256", "--", str(plain), str(path)], check=True)
    err = _error(path)
    assert isinstance(err, EncryptedDocumentError) and "password" in str(err)


def test_not_a_document(tmp_path):
    path = tmp_path / "notes.pdf"
    path.write_text("just some words, not a scan\n")
    err = _error(path)
    assert isinstance(err, UnsupportedFormatError) and "not a PDF or an image" in str(err)


def scan_with_text(mode: str = "L") -> Image.Image:
    """An 8.5 x 11 in page at 100 dpi with black bars where lines of text would be: Pillow's PDF
    writer stores it as a JPEG ("L") or a CCITT fax image ("1")."""
    rng = np.random.default_rng(0)
    pixels = np.full((1100, 850), 255, np.uint8)
    for _ in range(60):
        x, y = int(rng.integers(40, 700)), int(rng.integers(40, 1050))
        pixels[y:y + 12, x:x + int(rng.integers(20, 120))] = 0
    return Image.fromarray(pixels).convert(mode)


def with_page_image(pdf: Path, page: int, damage, drawn_over: bool = False) -> Path:
    """`pdf` with page `page`'s image data passed through `damage` (bytes -> bytes); with
    `drawn_over`, a line is drawn on every page too, so poppler renders them all."""
    import pikepdf

    with pikepdf.open(pdf, allow_overwriting_input=True) as doc:
        [image] = doc.pages[page - 1].Resources.XObject.values()
        image.write(damage(image.read_raw_bytes()), filter=image.Filter, decode_parms=image.get("/DecodeParms"))
        if drawn_over:
            for each in doc.pages:
                each.contents_add(pikepdf.Stream(doc, b"0 G 10 10 m 100 10 l S"))
        doc.save(pdf)
    return pdf


def cut(data: bytes) -> bytes:
    return data[: len(data) // 2]


def corrupt(data: bytes) -> bytes:
    """Some of the middle's bytes changed, as a bad sector or a faulty copy leaves them."""
    middle = len(data) // 2
    return bytes(b ^ 0x5A if middle <= i < middle + 400 and i % 7 == 0 else b for i, b in enumerate(data))


@pytest.mark.parametrize("embedded_scans", [True, False])
@pytest.mark.parametrize("damage, reason", [
    (cut, "its JPEG data is cut short"),
    (lambda data: b"", "its JPEG data is empty"),
    (corrupt, "JPEG"),  # Pillow's words for a scan taken from the file, libjpeg's for poppler's
])
def test_a_pdf_page_whose_jpeg_is_damaged_fails_naming_the_page(tmp_path, embedded_scans, damage, reason):
    """Poppler draws a JPEG cut short as white paper without a word, and corrupt data as grey:
    the page's text was lost and the document marked done."""
    path = tmp_path / "scans.pdf"
    page = scan_with_text()
    page.save(path, "PDF", resolution=100.0, save_all=True, append_images=[page, page])
    with_page_image(path, 2, damage, drawn_over=not embedded_scans)
    err = _error(path, RenderOptions(dpi=100, embedded_scans=embedded_scans))
    assert isinstance(err, CorruptDocumentError)
    assert str(err).startswith(f"{path}: page 2's image data is damaged (") and reason in str(err), str(err)


def test_bytes_after_a_jpeg_s_end_are_no_damage(tmp_path):
    path = tmp_path / "padded.pdf"
    scan_with_text().save(path, "PDF", resolution=100.0)
    with_page_image(path, 1, lambda data: data + b"\r\n\x00\x00")
    for embedded_scans in (True, False):
        [page] = render_pages(path, RenderOptions(dpi=100, embedded_scans=embedded_scans))
        assert page.image.min() == 0  # its text is there


def test_damaged_data_poppler_draws_in_part_is_a_warning_naming_the_page(tmp_path, caplog):
    """A soft mask (/SMask) cut short: poppler says so on stderr and draws the rows it lacks
    opaque, so its image, whole, shows as it would without one. It is not checked the way an
    image's own data is, so the document goes on, with a warning to check its text."""
    import pikepdf

    path = tmp_path / "flate.pdf"
    page = scan_with_text()
    page.save(path, "PDF", resolution=100.0, save_all=True, append_images=[page])
    with pikepdf.open(path, allow_overwriting_input=True) as doc:  # JPEGs made Flate images
        for each in doc.pages:
            [image] = each.Resources.XObject.values()
            image.write(zlib.compress(page.tobytes()), filter=pikepdf.Name.FlateDecode)
            opaque = zlib.compress(b"\xff" * page.width * page.height)
            image.SMask = doc.make_stream(opaque if each.index == 0 else cut(opaque),
                                          Type=pikepdf.Name.XObject, Subtype=pikepdf.Name.Image,
                                          Width=page.width, Height=page.height, BitsPerComponent=8,
                                          ColorSpace=pikepdf.Name.DeviceGray, Filter=pikepdf.Name.FlateDecode)
        doc.save(path)
    with caplog.at_level("WARNING", logger="pipeline.pdf_damage"):
        pages = list(render_pages(path, RenderOptions(dpi=100, chunk_pages=1)))
    assert len(pages) == 2 and pages[1].image[550:].min() == 0  # its text, below the cut too
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith(f"{path}: page 2: poppler reports damaged data") and "flate" in warning


def test_pdf_with_zero_pages(tmp_path):
    path = tmp_path / "zero.pdf"
    path.write_bytes(
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
        b"trailer << /Root 1 0 R /Size 3 >>\n%%EOF\n"
    )
    err = _error(path)
    assert isinstance(err, NoPagesError) and "no pages" in str(err)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a huge size but carries almost no data: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_decompression_bomb_image(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(100_000, 100_000))
    err = _error(path)
    assert isinstance(err, ImageTooLargeError) and "too large" in str(err)


def test_image_over_configured_pixel_limit(tmp_path):
    path = tmp_path / "big.png"
    Image.fromarray(np.full((500, 800), 255, np.uint8)).save(path)
    err = _error(path, RenderOptions(max_pixels=100_000))
    assert isinstance(err, ImageTooLargeError) and "400,000 pixels" in str(err)


def test_the_configured_pixel_limit_stands_in_for_pillows(tmp_path, monkeypatch):
    # Pillow warns over its own fixed limit (89 M pixels, an error at twice that); ours (200 M by
    # default, QUIRE_RENDER__MAX_PIXELS) decides instead. Pillow's limit is lowered here to stand for it.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    path = tmp_path / "map.png"
    Image.fromarray(np.full((500, 800), 255, np.uint8)).save(path)
    [page] = list(render_pages(path, RenderOptions()))
    assert page.image.shape[:2] == (500, 800)
    assert Image.MAX_IMAGE_PIXELS == 1_000  # left as it was
    err = _error(path, RenderOptions(max_pixels=100_000))
    assert isinstance(err, ImageTooLargeError) and "QUIRE_RENDER__MAX_PIXELS" in str(err)


def test_a_pdf_page_within_the_configured_limit_is_rendered_past_pillows(tmp_path, monkeypatch):
    # Pages of 179-200 M pixels at the default limit failed inside pdf2image as an internal
    # error (Pillow's DecompressionBombError); Pillow's limit is lowered to stand for that.
    import pikepdf

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    pdf = pikepdf.new()  # vector pages (no scan inside), so poppler renders them
    for size in ((72, 144), (144, 72)):
        pdf.add_blank_page(page_size=size)
    pdf.save(tmp_path / "plan.pdf")
    pages = list(render_pages(tmp_path / "plan.pdf", RenderOptions(dpi=60, chunk_pages=2)))
    assert [p.image.shape[:2] for p in pages] == [(120, 60), (60, 120)]  # in order
    assert Image.MAX_IMAGE_PIXELS == 1_000


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_is_laid_over_white_paper(tmp_path, mode):
    """Black text on a transparent background (its stored colour black too) read as a black
    page with no lines; viewers show it on white."""
    rgba = np.zeros((60, 200, 4), np.uint8)  # transparent black everywhere...
    rgba[20:40, 30:170, 3] = 255  # ...but an opaque black bar
    image = Image.fromarray(rgba, "RGBA")
    if mode == "LA":
        image = image.convert("LA")
    elif mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE)
        image.info["transparency"] = image.getpixel((0, 0))
    image.save(tmp_path / "ink.png", transparency=image.info.get("transparency")) if mode == "P" \
        else image.save(tmp_path / "ink.png")
    [page] = list(render_pages(tmp_path / "ink.png", RenderOptions()))
    gray = page.image if page.image.ndim == 2 else page.image.mean(axis=2)
    assert gray[:15].min() == 255 and gray[45:].min() == 255  # paper
    assert gray[25:35, 40:160].max() < 30  # ink


def test_pdf_page_over_pixel_limit_is_refused_before_rendering(tmp_path):
    pdf = write_pdf(tmp_path / "poster.pdf", 1)
    err = _error(pdf, RenderOptions(dpi=300, max_pixels=1_000_000))
    assert isinstance(err, ImageTooLargeError) and "lower --dpi" in str(err)
    assert "page 1 would be" in str(err) and "QUIRE_RENDER__MAX_PIXELS" in str(err)


def test_truncated_png(tmp_path):
    data = (tmp_path / "ok.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300), dtype=np.uint8)).save(data)
    path = tmp_path / "cut.png"
    path.write_bytes(data.read_bytes()[:2000])
    assert isinstance(_error(path), CorruptDocumentError)


@pytest.mark.parametrize("suffix", [".heic", ".avif", ".pgm"])
def test_a_phone_photo_or_sane_scan_cut_short_fails_on_one_line_naming_the_file(tmp_path, suffix):
    from pipeline import heif

    heif.enable()  # to write the HEIC
    pixels = np.random.default_rng(0).integers(0, 255, (300, 300), dtype=np.uint8)
    whole = tmp_path / f"whole{suffix}"
    Image.fromarray(pixels).convert("RGB" if suffix != ".pgm" else "L").save(whole)
    assert len(list(render_pages(whole))) == 1
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size * 9 // 10])
    err = _error(path)
    assert isinstance(err, CorruptDocumentError) and "\n" not in str(err), str(err)


def test_a_document_over_the_page_limit_fails_before_any_page_is_read(tmp_path):
    pdf = write_pdf(tmp_path / "long.pdf", 5)
    err = _error(pdf, RenderOptions(max_pages=4))
    assert isinstance(err, ImageTooLargeError)
    assert "has 5 pages, more than the limit of 4 (QUIRE_RENDER__MAX_PAGES)" in str(err)
    tiff = tmp_path / "stack.tif"
    frames = [Image.fromarray(np.full((60, 80), 255, np.uint8)) for _ in range(3)]
    frames[0].save(tiff, save_all=True, append_images=frames[1:])
    err = _error(tiff, RenderOptions(max_pages=2))
    assert isinstance(err, ImageTooLargeError) and "has 3 pages" in str(err)
    assert len(list(render_pages(pdf, RenderOptions(max_pages=5, dpi=50)))) == 5


def test_a_multi_page_tiff_cut_short_names_the_page_where_it_breaks(tmp_path):
    """It used to say only that its pages 'cannot be counted', as if the whole file were bad."""
    from PIL import Image

    from pipeline.errors import CorruptDocumentError
    from pipeline.render import count_pages

    noise = np.random.default_rng(0)
    pages = [Image.fromarray(noise.integers(0, 255, (400, 300), dtype=np.uint8)) for _ in range(3)]
    pages[0].save(tmp_path / "whole.tif", save_all=True, append_images=pages[1:], compression="tiff_lzw")
    data = (tmp_path / "whole.tif").read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[:-200])  # compressed, each page's header follows its pixels: page 3's goes
    with pytest.raises(CorruptDocumentError) as raised:
        count_pages(cut)
    assert "cut short or damaged at page 3" in str(raised.value) and "pages 1-2 can be read" in str(raised.value)
    assert "cut.tif" in str(raised.value)


def test_a_tiff_map_under_the_configured_limit_is_read_past_pillows(tmp_path, monkeypatch):
    """A 180 M pixel TIFF (a map scanned large, under the default 200 M limit) failed with
    Pillow's "exceeds limit of 178956970 pixels, could be decompression bomb" as libtiff
    decoded it, whatever QUIRE_RENDER__MAX_PIXELS said. Pillow's limit is lowered here to
    stand for that, on a small map."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    path = tmp_path / "map.tif"
    Image.fromarray(np.full((300, 900), 255, np.uint8)).save(path, compression="tiff_lzw")
    [page] = list(render_pages(path, RenderOptions()))
    assert page.image.shape[:2] == (300, 900)
    assert count_pages(path) == 1  # the progress bar's total and `quire lines` count it too
    assert Image.MAX_IMAGE_PIXELS == 1_000  # left as it was
    err = _error(path, RenderOptions(max_pixels=100_000))
    assert isinstance(err, ImageTooLargeError) and "QUIRE_RENDER__MAX_PIXELS" in str(err)


def test_line_folders_take_every_image_kind_quire_run_reads():
    """Training and `quire eval` list their own suffixes (they run without render's
    dependencies): they must not fall behind what `quire run` reads."""
    from pipeline.document_checks import IMAGE_SUFFIXES
    from pipeline.training.evaluate import LINE_IMAGE_SUFFIXES

    assert set(LINE_IMAGE_SUFFIXES) == IMAGE_SUFFIXES
