"""`quire lines`: documents and PAGE/ALTO transcriptions cut into line pairs to correct, train and measure on."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.training.evaluate import load_pairs, read_gray
from tests.model_fixtures import LETTER_LINES, make_letter_page
from tests.pagegen import make_pdf

pytestmark = pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils missing")
DPI = 150


@pytest.fixture(scope="module")
def letter(tmp_path_factory, letter_reader) -> Path:
    root = tmp_path_factory.mktemp("letter")
    return make_pdf([make_letter_page(DPI), make_letter_page(DPI)], root / "letter.pdf", dpi=DPI)


@pytest.fixture
def env(tmp_path, letter_reader, monkeypatch) -> Path:
    monkeypatch.setenv("QUIRE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("QUIRE_MODEL", str(letter_reader))
    monkeypatch.setenv("QUIRE_RENDER__DPI", str(DPI))
    for name in ("QUIRE_DATABASE_URL", "QUIRE_STORAGE_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def quire(*args: str):
    return CliRunner().invoke(app, [*args, "--no-progress"], catch_exceptions=False)


def texts(folder: Path) -> dict[str, str]:
    return {path.name: text for path, text in load_pairs(folder)}


def test_a_document_becomes_lines_with_drafts_and_corrections_survive_a_rerun(env, letter) -> None:
    out = env / "lines"
    result = quire("lines", str(letter), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "8 new line pairs" in result.output
    found = texts(out)
    # Cut as recognition cuts them, read by the model as drafts to correct.
    assert found == {f"letter_p{page:04d}_l{line:03d}.png": LETTER_LINES[line - 1]
                     for page in (1, 2) for line in range(1, 5)}
    image = read_gray(out / "letter_p0001_l002.png")
    assert image.ndim == 2 and (image < 128).sum() > 50
    # The drafts listed least sure first, to be corrected in that order.
    assert "8 drafts to correct" in result.output and "drafts.tsv lists them" in result.output
    header, *rows = (out / "drafts.tsv").read_text(encoding="utf-8").splitlines()
    assert header == "confidence\tline\tdraft" and len(rows) == 8
    listed = [row.split("\t") for row in rows]
    assert [float(c) for c, _, _ in listed] == sorted(float(c) for c, _, _ in listed)
    assert {f"{name}.png": text for _, name, text in listed} == found

    (out / "letter_p0001_l002.gt.txt").write_text("12 March 1931.\n", encoding="utf-8")  # a correction
    again = quire("lines", str(letter), "--out", str(out))
    assert again.exit_code == 0 and "0 new line pairs, 8 already there" in again.output
    assert texts(out)["letter_p0001_l002.png"] == "12 March 1931."
    # The other drafts stay listed; the corrected one is done with. An emptied .gt.txt rejects
    # its line: left out of training and not cut again.
    listed = (out / "drafts.tsv").read_text().splitlines()
    assert len(listed) == 8 and not any("letter_p0001_l002" in row for row in listed)
    (out / "letter_p0001_l003.gt.txt").write_text("", encoding="utf-8")
    assert quire("lines", str(letter), "--out", str(out)).exit_code == 0
    assert "letter_p0001_l003.png" not in texts(out)
    assert (out / "letter_p0001_l003.gt.txt").read_text() == ""

    # A sample spread over the collection, the same one for the same seed.
    sampled = env / "sample"
    assert quire("lines", str(letter), "--out", str(sampled), "--sample", "3").exit_code == 0
    names = sorted(texts(sampled))
    assert len(names) == 3 and set(names) <= set(found)
    shutil.rmtree(sampled)
    assert quire("lines", str(letter), "--out", str(sampled), "--sample", "3").exit_code == 0
    assert sorted(texts(sampled)) == names

    # Without drafts the .gt.txt files are empty, to be typed, and not yet lines to train on.
    blank = env / "blank"
    assert quire("lines", str(letter), "--out", str(blank), "--no-draft").exit_code == 0
    assert len(list(blank.glob("*.png"))) == 8 and load_pairs(blank) == []
    assert {p.read_text() for p in blank.glob("*.gt.txt")} == {"\n"}


def test_a_same_named_file_of_the_next_box_gets_its_own_line_names(env, letter) -> None:
    out = env / "lines"
    for box in ("box1", "box2"):
        (env / box).mkdir()
    shutil.copy(letter, env / "box1" / "0001.pdf")  # two pages
    make_pdf([make_letter_page(DPI)], env / "box2" / "0001.pdf", dpi=DPI)  # one page, other bytes
    assert "8 new line pairs" in quire("lines", str(env / "box1"), "--out", str(out)).output
    second = quire("lines", str(env / "box2"), "--out", str(out))
    assert second.exit_code == 0 and "4 new line pairs, 0 already there" in second.output, second.output
    assert "its lines are named 0001-2_*" in second.output
    assert sorted(texts(out)) == sorted([f"0001_p{page:04d}_l{line:03d}.png" for page in (1, 2) for line in range(1, 5)]
                                        + [f"0001-2_p0001_l{line:03d}.png" for line in range(1, 5)])
    # Each file finds its own names again, whichever box is cut again and in which order.
    for box in ("box2", "box1"):
        again = quire("lines", str(env / box), "--out", str(out))
        assert "0 new line pairs" in again.output and "already there" in again.output
    assert len(texts(out)) == 12


def test_a_folder_s_catalogue_xml_is_passed_over_and_its_scans_are_cut(env, letter) -> None:
    """Archive folders carry METS, Dublin Core or manifest XML beside their scans: one such file
    made the whole folder count as transcriptions, and every scan was dropped without a word."""
    box = env / "box"
    box.mkdir()
    shutil.copy(letter, box / "0001.pdf")
    (box / "metadata.xml").write_text('<?xml version="1.0"?><record><title>Box 1</title></record>')
    result = quire("lines", str(box), "--out", str(env / "lines"))
    assert result.exit_code == 0, result.output
    assert "8 new line pairs" in result.output
    assert "passed over 1 XML file that is neither PAGE XML nor ALTO: metadata.xml" in result.output


def test_quires_own_page_and_alto_exports_come_back_as_line_pairs(env, letter) -> None:
    exported = env / "exported"
    result = quire("run", str(letter), "--format", "page,alto", "--out", str(exported))
    assert result.exit_code == 0, result.output
    # The zip of one PAGE file per page (naming letter.pdf#page=N) is read as it is.
    out = env / "lines"
    result = quire("lines", str(exported / "letter.page.zip"), str(exported / "letter.alto.xml"),
                   "--images", str(letter.parent), "--out", str(out))
    assert result.exit_code == 0, result.output
    found = texts(out)
    assert len(found) == 16
    assert sorted(found.values()) == sorted(LETTER_LINES * 4)
    assert found["letter.alto_p0002_l003_line_2_3.png"] == LETTER_LINES[2]
    for name in found:
        image = read_gray(out / name)
        # Rendered at the same 150 dpi as the export: each crop is its line's box, ink included.
        assert 12 <= image.shape[0] <= 40 and image.shape[1] > 100 and (image < 128).sum() > 50


def _page_image(path: Path) -> None:
    page = Image.new("L", (600, 200), 255)
    draw = ImageDraw.Draw(page)
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", 28)
    except OSError:
        font = ImageFont.load_default()
    draw.text((20, 20), "Anno 1847", font=font, fill=0)
    draw.text((20, 110), "received with thanks", font=font, fill=0)
    page.save(path, dpi=(254, 254))


PAGE_2013 = """<?xml version="1.0" encoding="UTF-8"?>
<PcGts xmlns="http://schema.primaresearch.org/PAGE/gts/pagecontent/2013-07-15">
  <Page imageFilename="C:\\scans\\folio1.png" imageWidth="300" imageHeight="100">
    <TextRegion id="r1">
      <TextLine id="tl 1">
        <Coords points="5,5 200,5 200,30 5,30"/>
        <TextEquiv index="1"><Unicode>Anno 1874</Unicode></TextEquiv>
        <TextEquiv index="0"><Unicode>Anno  1847</Unicode></TextEquiv>
      </TextLine>
      <TextLine id="tl2">
        <Coords><Point x="5" y="50"/><Point x="200" y="50"/><Point x="200" y="75"/><Point x="5" y="75"/></Coords>
        <Word id="w1"><TextEquiv><Unicode>received</Unicode></TextEquiv></Word>
        <Word id="w2"><TextEquiv><Unicode>with</Unicode></TextEquiv></Word>
        <Word id="w3"><TextEquiv><Unicode>thanks</Unicode></TextEquiv></Word>
      </TextLine>
      <TextLine id="tl3"><Coords points="5,80 100,80 100,95 5,95"/></TextLine>
    </TextRegion>
  </Page>
</PcGts>
"""

ALTO_MM10 = """<?xml version="1.0" encoding="UTF-8"?>
<alto xmlns="http://www.loc.gov/standards/alto/ns-v4#">
  <Description><MeasurementUnit>mm10</MeasurementUnit>
    <sourceImageInformation><fileName>folio1.png</fileName></sourceImageInformation></Description>
  <Layout><Page ID="p1"><PrintSpace>
    <TextLine ID="a1" HPOS="10" VPOS="10" WIDTH="400" HEIGHT="50">
      <String CONTENT="Anno"/><SP/><String CONTENT="1847"/>
    </TextLine>
    <TextLine ID="a2">
      <Shape><Polygon POINTS="10 100 400 100 400 150 10 150"/></Shape>
      <String CONTENT="received"/><String CONTENT="with"/><String CONTENT="tha"/><HYP CONTENT="-"/>
    </TextLine>
  </PrintSpace></Page></Layout>
</alto>
"""


def test_transcription_tools_page_xml_and_alto_are_cut_along_their_lines(env) -> None:
    """A Transkribus-style export (XML in page/ under the images, a Windows path, a preferred
    TextEquiv, word-level text, an old <Point> polygon) and an ALTO file in tenths of a millimetre."""
    export = env / "export"
    (export / "page").mkdir(parents=True)
    _page_image(export / "folio1.png")
    (export / "page" / "folio1.xml").write_text(PAGE_2013, encoding="utf-8")
    (export / "folio1.alto.xml").write_text(ALTO_MM10, encoding="utf-8")

    out = env / "lines"
    result = quire("lines", str(export / "page" / "folio1.xml"), str(export / "folio1.alto.xml"), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "1 line without text skipped" in result.output
    assert texts(out) == {
        "folio1_l001_tl_1.png": "Anno 1847",  # index 0 is the preferred reading; spaces normalised
        "folio1_l002_tl2.png": "received with thanks",
        "folio1.alto_l001_a1.png": "Anno 1847",
        "folio1.alto_l002_a2.png": "received with tha-",
    }
    # The page image is twice the size the PAGE file gives: coordinates are scaled to it.
    first = read_gray(out / "folio1_l001_tl_1.png")
    assert first.shape == (50, 390)
    # ALTO in tenths of a millimetre on a 254 dpi image: one pixel per unit.
    assert read_gray(out / "folio1.alto_l001_a1.png").shape == (50, 400)
    for name in texts(out):
        assert (read_gray(out / name) < 128).sum() > 100  # each crop holds its line's ink


def test_bad_transcriptions_are_named_and_the_good_ones_still_written(env) -> None:
    folder = env / "mixed"
    folder.mkdir()
    _page_image(folder / "folio1.png")
    (folder / "folio1.xml").write_text(PAGE_2013.replace("C:\\scans\\", ""), encoding="utf-8")
    (folder / "broken.xml").write_text("<PcGts><Page", encoding="utf-8")
    (folder / "other.xml").write_text("<html><body/></html>", encoding="utf-8")
    (folder / "lost.xml").write_text(PAGE_2013.replace("folio1.png", "missing.png"), encoding="utf-8")
    (folder / "nan.xml").write_text(PAGE_2013.replace("5,5 200,5", "5,5 nan,5"), encoding="utf-8")
    out = env / "lines"
    result = quire("lines", str(folder), "--out", str(out))
    assert result.exit_code == 1
    assert "3 inputs failed" in result.output
    assert "nan.xml: not a list of x,y points: '5,5 nan,5" in result.output
    assert f"{folder / 'broken.xml'}: not well-formed XML" in result.output
    # Other XML in a folder is passed over, said once; named by itself it fails (below).
    assert "passed over 1 XML file that is neither PAGE XML nor ALTO: other.xml" in result.output
    assert "lost.xml: its page image 'C:/scans/missing.png' is not found" in result.output
    assert "--images" in result.output
    assert sorted(texts(out).values()) == ["Anno 1847", "received with thanks"]

    named = quire("lines", str(folder / "other.xml"), "--out", str(out))
    assert f"{folder / 'other.xml'}: neither PAGE XML nor ALTO (its root element is <html>)" in named.output

    nested = quire("lines", str(folder), "--out", str(folder / "lines"))
    assert nested.exit_code == 2 and "is inside the input folder" in nested.output


def test_scans_no_transcription_names_are_said_not_cut(env) -> None:
    """A folder of PAGE files cuts only the scans they name: one left untranscribed was passed
    over without a word."""
    folder = env / "box"
    folder.mkdir()
    for name in ("folio1.png", "folio2.png", "cover.jpg"):
        _page_image(folder / name)
    (folder / "folio1.xml").write_text(PAGE_2013.replace("C:\\scans\\", ""), encoding="utf-8")
    result = quire("lines", str(folder), "--out", str(env / "lines"))
    assert result.exit_code == 0, result.output
    assert "2 new line pairs" in result.output
    assert ("2 scans beside the transcriptions are named by no PAGE XML or ALTO file, so not cut: "
            "cover.jpg, folio2.png; give them by name") in result.output


def test_a_polygon_whitens_what_lies_outside_it() -> None:
    from pipeline.line_pairs import cut_polygon

    page = np.zeros((100, 100), dtype=np.uint8)  # all ink
    crop = cut_polygon(page, [(10, 10), (90, 10), (90, 50), (10, 90)])  # a right-angled trapezoid
    assert crop is not None and crop.shape == (80, 80)
    assert crop[5, 5] == 0 and crop[75, 5] == 0  # inside
    assert crop[75, 75] == 255  # the corner cut off by the slanted side
    assert cut_polygon(page, [(10, 10), (11, 10), (11, 10.5)]) is None  # too small to hold a line
