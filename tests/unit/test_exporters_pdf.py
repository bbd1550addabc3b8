"""Searchable PDF: the stored page images as they are, plus invisible text on each line's box."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import pikepdf
import pytest
from PIL import Image, ImageDraw

from pipeline.exporters import get_exporter
from pipeline.types import BBox, DocumentResult, LineResult, PageResult

pytestmark = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils missing")
DPI = 150


def page_image(mode: str = "L", fmt: str = "PNG") -> bytes:
    image = Image.new(mode, (1275, 1650), "white")
    draw = ImageDraw.Draw(image)
    for i in range(12):
        draw.rectangle((150, 150 + 60 * i, 900, 180 + 60 * i), fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def make_doc(texts: list[str], pages: int = 1, fit: bool = True) -> DocumentResult:
    """Lines 60 px apart; fit: box width in proportion to the text, as segmentation finds it."""
    def right(text: str) -> int:
        return 150 + 15 * len(text) if fit else 900  # about 0.5 em a character

    lines = tuple(LineResult(i, BBox(150, 150 + 60 * i, right(t), 181 + 60 * i), t, 0.9)
                  for i, t in enumerate(texts))
    return DocumentResult("scan.png", "ab" * 32, "m", tuple(
        PageResult(n + 1, 1275, 1650, DPI, 0.0, lines, image_key=f"p{n + 1}") for n in range(pages)))


def pdftotext(data: bytes, tmp_path: Path, *args: str) -> str:
    path = tmp_path / "out.pdf"
    path.write_bytes(data)
    return subprocess.run(["pdftotext", *args, str(path), "-"], check=True, capture_output=True,
                          text=True).stdout


def words_of(text: str) -> list[str]:
    return text.split()


def test_text_layer_reads_back_in_reading_order_and_pages(tmp_path):
    texts = ["Quire County Archives", "12 March 1931", "Dear Mr. Holloway,", "Über café — naïve"]
    image = page_image()
    data = get_exporter("pdf").export(make_doc(texts, pages=2), lambda key: image)
    out = pdftotext(data, tmp_path)
    pages = out.split("\f")
    assert [words_of(p) for p in pages[:2]] == [words_of("\n".join(texts))] * 2
    # Boxes that fit their text badly still come out in reading order in content-stream order.
    loose = get_exporter("pdf").export(make_doc(texts, fit=False), lambda key: image)
    assert words_of(pdftotext(loose, tmp_path, "-raw")) == words_of("\n".join(texts))
    with pikepdf.open(io.BytesIO(data)) as pdf:
        assert len(pdf.pages) == 2
        assert [float(v) for v in pdf.pages[0].MediaBox] == [0, 0, 612, 792]  # 8.5x11 in at 150 dpi
        content = pdf.pages[0].Contents.read_bytes()
        assert b"3 Tr" in content and content.index(b"Do") < content.index(b"BT")


def test_words_sit_on_their_line_boxes(tmp_path):
    data = get_exporter("pdf").export(make_doc(["alpha beta", "gamma"], fit=False),
                                      lambda key: page_image())
    boxes = re.findall(r'xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(\w+)<',
                       pdftotext(data, tmp_path, "-bbox"))
    scale = 72 / DPI
    found = {w: tuple(float(v) / scale for v in box) for *box, w in boxes}
    assert found["alpha"][0] == pytest.approx(150, abs=1)
    assert found["beta"][2] == pytest.approx(900, abs=2)  # the line's right edge
    # Viewers size a glyph from the font size: within a few pixels of the line box.
    assert found["alpha"][1] == pytest.approx(150, abs=3) and found["alpha"][3] == pytest.approx(181, abs=4)
    assert found["gamma"][1] == pytest.approx(210, abs=3)


@pytest.mark.parametrize("mode,fmt", [("L", "PNG"), ("RGB", "PNG"), ("RGB", "JPEG"), ("P", "PNG"),
                                      ("1", "PNG"), ("LA", "PNG")])
def test_page_images_are_carried_over_at_about_their_size(tmp_path, mode, fmt):
    image = page_image(mode, fmt)
    data = get_exporter("pdf").export(make_doc(["one line"]), lambda key: image)
    assert words_of(pdftotext(data, tmp_path)) == ["one", "line"]
    with pikepdf.open(io.BytesIO(data)) as pdf:
        [(_, xobject)] = pdf.pages[0].get_images().items()
        decoded = pikepdf.PdfImage(xobject).as_pil_image()
        assert decoded.size == (1275, 1650)
        assert decoded.convert("L").getpixel((500, 160)) < 60  # black bar where it was drawn
    if mode in ("L", "RGB", "1"):  # compressed bytes kept as they are
        assert len(data) < len(image) + 6000


def test_many_distinct_characters_read_back_through_one_font(tmp_path):
    alphabet = "".join(chr(c) for c in range(0x391, 0x3A9) if c != 0x3A2)  # Greek capitals
    alphabet += "".join(chr(c) for c in range(0x100, 0x17F))  # Latin Extended-A
    alphabet += "".join(chr(c) for c in range(0x410, 0x44F))  # Cyrillic
    alphabet += "".join(chr(c) for c in range(0x4E00, 0x4E64))  # CJK: past 255 codes
    alphabet += "\U0001D11E\U00010348"  # past the 16-bit plane: a musical clef, Gothic hwair
    lines = [alphabet[i:i + 40] for i in range(0, len(alphabet), 40)]
    data = get_exporter("pdf").export(make_doc(lines, fit=False), lambda key: page_image())
    assert "".join(words_of(pdftotext(data, tmp_path, "-raw"))) == "".join(lines)
    with pikepdf.open(io.BytesIO(data)) as pdf:
        assert list(pdf.pages[0].Resources.Font.keys()) == ["/F0"]


def source_pdf(rotate: int = 0, with_font: bool = False) -> bytes:
    """A one-page PDF as a scanner might write it: its own drawing (a marker rectangle), a
    MediaBox away from the origin, turned `rotate` degrees; with_font: text of its own."""
    pdf = pikepdf.new()
    page = pdf.add_blank_page(page_size=(612, 792))
    page.MediaBox = [10, 20, 622, 812]
    page.Rotate = rotate
    page.Contents = pdf.make_stream(b"0.5 g 100 100 50 50 re f % marker\n")
    if with_font:
        page.Resources = pikepdf.Dictionary(Font=pikepdf.Dictionary(F1=pikepdf.Dictionary(
            Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1, BaseFont=pikepdf.Name.Helvetica)))
        page.Contents = pdf.make_stream(b"BT /F1 12 Tf 72 700 Td (Typed text) Tj ET\n")
    buffer = io.BytesIO()
    pdf.save(buffer)
    return buffer.getvalue()


def shown_doc(rotate: int) -> DocumentResult:
    """The page as rendered (turned, 150 dpi): two lines at known pixel boxes."""
    width, height = (1650, 1275) if rotate in (90, 270) else (1275, 1650)
    lines = (LineResult(0, BBox(150, 150, 600, 181), "alpha beta", 0.9),
             LineResult(1, BBox(300, 400, 500, 431), "gamma", 0.9))
    return DocumentResult("letter.pdf", "cd" * 32, "m",
                          (PageResult(1, width, height, DPI, 0.0, lines, image_key="p1"),))


@pytest.mark.parametrize("rotate", [0, 90, 180, 270])
def test_a_pdf_keeps_its_own_pages_with_the_words_on_their_boxes(tmp_path, rotate):
    from pipeline.storage import source_key

    doc, source = shown_doc(rotate), source_pdf(rotate)
    load = {source_key(doc.sha256): source, "p1": page_image()}.__getitem__
    data = get_exporter("pdf").export(doc, load)
    with pikepdf.open(io.BytesIO(data)) as pdf:
        [page] = pdf.pages
        assert int(page.Rotate) == rotate and [float(v) for v in page.MediaBox] == [10, 20, 622, 812]
        assert not page.get_images()  # the source's own drawing, no page image added
        content = b"".join(s.read_bytes() for s in page.obj.Contents) \
            if isinstance(page.obj.Contents, pikepdf.Array) else page.obj.Contents.read_bytes()
        assert b"% marker" in content and b"3 Tr" in content
    # pdftotext reports boxes as the page is shown: each word on its line's box.
    boxes = re.findall(r'xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(\w+)<',
                       pdftotext(data, tmp_path, "-bbox"))
    found = {w: tuple(float(v) * DPI / 72 for v in box) for *box, w in boxes}
    assert set(found) == {"alpha", "beta", "gamma"}
    assert found["alpha"][0] == pytest.approx(150, abs=2) and found["beta"][2] == pytest.approx(600, abs=3)
    assert found["alpha"][1] == pytest.approx(150, abs=4) and found["alpha"][3] == pytest.approx(181, abs=5)
    assert found["gamma"][0] == pytest.approx(300, abs=2) and found["gamma"][1] == pytest.approx(400, abs=4)


def test_a_pdf_page_with_text_of_its_own_keeps_it_alone(tmp_path):
    from pipeline.storage import source_key

    doc = shown_doc(0)
    load = {source_key(doc.sha256): source_pdf(with_font=True), "p1": page_image()}.__getitem__
    data = get_exporter("pdf").export(doc, load)
    assert words_of(pdftotext(data, tmp_path)) == ["Typed", "text"]
