"""Line pairs cut from PAGE XML and ALTO transcriptions: which page of which image, and their names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.config import RenderOptions
from pipeline.ground_truth import read_transcription
from pipeline.line_pairs import Written, page_in_image, transcribed_lines, write_pairs

ALTO = """<?xml version="1.0" encoding="UTF-8"?>
<alto xmlns="http://www.loc.gov/standards/alto/ns-v4#">
  <Description><MeasurementUnit>pixel</MeasurementUnit>
    <sourceImageInformation><fileName>{image}</fileName></sourceImageInformation></Description>
  <Layout><Page ID="p1" PHYSICAL_IMG_NR="{number}" WIDTH="200" HEIGHT="60"><PrintSpace>
    <TextLine ID="a1" HPOS="10" VPOS="10" WIDTH="150" HEIGHT="30"><String CONTENT="Anno"/></TextLine>
  </PrintSpace></Page></Layout>
</alto>
"""


def _scan(path: Path, pages: int = 1) -> Path:
    """A scan of `pages` pages, each a black bar on white whose width tells the pages apart."""
    frames = []
    for page in range(1, pages + 1):
        pixels = np.full((60, 200), 255, dtype=np.uint8)
        pixels[15:35, 10:10 + 40 * page] = 0
        frames.append(Image.fromarray(pixels))
    frames[0].save(path, save_all=pages > 1, append_images=frames[1:])
    return path


def _alto(folder: Path, image: str, number: int) -> Path:
    path = folder / f"{Path(image).stem}.xml"
    path.write_text(ALTO.format(image=image, number=number), encoding="utf-8")
    return path


def test_alto_physical_image_number_picks_a_page_only_of_a_file_that_holds_several(tmp_path: Path) -> None:
    """PHYSICAL_IMG_NR is the scan's number in its document (image 42 of a book): read as a page
    of the image file, the single-page scan 0042.png had 'no page 42' and none of its lines were cut."""
    _scan(tmp_path / "0042.png")
    [page] = read_transcription(_alto(tmp_path, "0042.png", 42))
    assert (page.number, page.physical) == (1, 42)
    assert page_in_image(tmp_path / "0042.png", page) == 1
    [line] = transcribed_lines([page], "0042", RenderOptions())
    assert line.name.startswith("0042_") and line.text == "Anno" and (line.image < 128).sum() > 100

    # A file holding the document's pages (a PDF, a multi-page TIFF) is paged by it.
    _scan(tmp_path / "book.tif", pages=3)
    [page] = read_transcription(_alto(tmp_path, "book.tif", 2))
    assert page_in_image(tmp_path / "book.tif", page) == 2
    [line] = transcribed_lines([page], "book", RenderOptions())
    assert (line.image < 128).sum(axis=1).max() == 80  # page 2's bar, 80 pixels long
    # A number past its pages is not a page of it: the page's place in the ALTO file.
    [page] = read_transcription(_alto(tmp_path, "book.tif", 7))
    assert page_in_image(tmp_path / "book.tif", page) == 1


def test_line_names_sort_in_reading_order_and_lines_cut_before_keep_theirs(tmp_path: Path) -> None:
    """Names were the line ids as they stand: tl_1, tl_10, tl_11, tl_2 in file order."""
    _scan(tmp_path / "folio.png")
    lines = "".join(f'<TextLine ID="tl_{n}" HPOS="10" VPOS="10" WIDTH="150" HEIGHT="30">'
                    f'<String CONTENT="line {n}"/></TextLine>' for n in range(1, 13))
    alto = _alto(tmp_path, "folio.png", 1)
    alto.write_text(alto.read_text().replace(
        '<TextLine ID="a1" HPOS="10" VPOS="10" WIDTH="150" HEIGHT="30"><String CONTENT="Anno"/></TextLine>', lines))
    pairs = list(transcribed_lines(read_transcription(alto), "folio", RenderOptions()))
    names = [pair.name for pair in pairs]
    assert names[:2] == ["folio_l001_tl_1", "folio_l002_tl_2"] and names[-1] == "folio_l012_tl_12"
    assert sorted(names) == names and [pair.text for pair in pairs] == [f"line {n}" for n in range(1, 13)]

    # A folder cut before the names were padded: its lines are there already, corrections and all.
    out = tmp_path / "lines"
    out.mkdir()
    (out / "folio_tl_2.gt.txt").write_text("line 2, corrected\n", encoding="utf-8")
    written = Written()
    write_pairs(pairs, out, None, written)
    assert (written.new, written.kept) == (11, 1)
    assert not (out / "folio_l002_tl_2.gt.txt").exists()


PAGE_TWO_READINGS = """<?xml version="1.0" encoding="UTF-8"?>
<PcGts xmlns="http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15">
  <Page imageFilename="folio.png" imageWidth="200" imageHeight="60"><TextRegion id="r1">
    <TextLine id="l1"><Coords points="10,10 160,10 160,40 10,40"/>
      <TextEquiv index="{index}"><Unicode>second guess</Unicode></TextEquiv>
      <TextEquiv index="0"><Unicode>Anno Domini</Unicode></TextEquiv>
    </TextLine>
  </TextRegion></Page>
</PcGts>
"""


def test_a_reading_whose_index_is_no_number_ranks_after_the_indexed_ones(tmp_path: Path) -> None:
    # A TextEquiv index that is not a number counts as none (read last), as a missing one does:
    # it used to compare None with a number and stop `quire lines` with a TypeError.
    for index in ("first", ""):
        path = tmp_path / "folio.xml"
        path.write_text(PAGE_TWO_READINGS.format(index=index), encoding="utf-8")
        [page] = read_transcription(path)
        assert [line.text for line in page.lines] == ["Anno Domini"]
