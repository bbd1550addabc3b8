"""Sideways and upside-down pages are found and turned upright before segmentation."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from pipeline.orientation import line_vote, segment_upright, segmented, turn
from pipeline.segment import segment_page, to_gray
from pipeline.types import PageImage
from tests.pagegen import make_page
from tests.unit.test_segment import match


@pytest.fixture(scope="module")
def page():
    return make_page("two_columns", seed=3, scan=True)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_a_turned_page_is_set_upright_and_its_lines_found(page, rotation):
    gray = to_gray(page.image)
    upright = segment_upright(turn(gray, -rotation), dpi=300)  # needs `rotation` clockwise

    assert upright.orientation.rotation == rotation
    assert np.array_equal(upright.image, gray)  # quarter turns lose nothing
    truth = [line.bbox for line in page.lines]
    found = list(upright.segmentation.lines)
    assert len(match(truth, found)) >= 0.95 * len(truth)  # the boxes are the upright page's
    assert len(found) <= 1.05 * len(truth)


def test_an_upright_page_is_left_as_segment_page_finds_it(page):
    upright = segment_upright(page.image, dpi=300)
    plain = segment_page(page.image, dpi=300)

    assert upright.orientation.rotation == 0
    assert upright.image is page.image
    assert upright.segmentation.lines == plain.lines and upright.segmentation.angle == plain.angle


def test_a_page_with_too_little_text_is_left_as_it_is_unless_it_reads_better_turned_over():
    rng = np.random.default_rng(0)
    blank = np.full((1100, 850), 245, np.uint8)
    for y, x in rng.integers(20, 800, size=(30, 2)):  # dust: specks, no lines
        blank[y:y + 3, x:x + 2] = 40
    for rotation in (0, 90, 180, 270):
        assert segment_upright(turn(blank, rotation), dpi=100).orientation.rotation == 0
    image = Image.fromarray(np.full((1100, 850), 255, np.uint8))
    ImageDraw.Draw(image).text((100, 100), "Box 7, letters", font=_font(40), fill=0)
    label = np.asarray(image)
    # Too few letters to say which way lines run: on its side it stays; upside down, the one
    # line reads surer turned over, so it is set upright.
    found = {r: segment_upright(turn(label, -r), dpi=100).orientation.rotation for r in (0, 90, 180, 270)}
    assert found == {0: 0, 90: 0, 180: 180, 270: 0}
    assert segment_upright(turn(label, 180), dpi=100, judge=None).orientation.rotation == 0


def _font(size: int):
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default()


def _line(text: str) -> np.ndarray:
    image = Image.new("L", (40 * len(text), 90), 255)
    ImageDraw.Draw(image).text((20, 20), text, font=_font(48), fill=0)
    return np.asarray(image)


@pytest.mark.parametrize("text", ["Quarterly report of the Highgate branch",
                                  "TOTAL 12.50  CASH 20.00  CHANGE 7.50"])
def test_lines_vote_upright_and_turned_over(text):
    """Mixed case votes by its ascenders; capitals and digits by the dots on their baseline."""
    line = _line(text)
    assert line_vote(line) == 1
    assert line_vote(turn(line, 180)) == -1


def test_segmented_turns_the_page_image_unless_told_not_to(page):
    sideways = PageImage(number=2, image=turn(page.image, 90), dpi=300)

    turned, seg, rotation = segmented(sideways)
    assert rotation == 270 and turned.number == 2 and np.array_equal(turned.image, page.image)
    assert len(seg.lines) >= 0.95 * len(page.lines)

    kept, _, rotation = segmented(sideways, rotate=False)
    assert rotation == 0 and kept is sideways


def test_turn_refuses_what_is_not_a_quarter_turn():
    with pytest.raises(ValueError, match="multiple of 90"):
        turn(np.zeros((4, 4), np.uint8), 45)


def _page(lines: list[str], font: str, size: int = 42) -> np.ndarray:
    """A 150 dpi page of `lines` in `font` (Pillow's own where the font is missing)."""
    try:
        face = ImageFont.truetype(font, size)
    except OSError:
        face = _font(size)
    image = Image.new("L", (1275, 1650), 255)
    draw = ImageDraw.Draw(image)
    for i, text in enumerate(lines):
        draw.text((120, 150 + 80 * i), text, font=face, fill=0)
    return np.asarray(image)


TELEGRAM = ["WESTERN UNION TELEGRAM", "1931 MAR 12 PM 4 18", "MR J HOLLOWAY", "QUIRE COUNTY ARCHIVES",
            "ARRIVING MONDAY STOP", "PLEASE MEET TRAIN STOP", "BRING THE LEDGERS STOP",
            "REGARDS", "A. WHITMORE"]
NO_DESCENDERS = ["Document one with some text"] * 6


@pytest.mark.parametrize("lines,font", [(TELEGRAM, "LiberationSerif-Regular.ttf"),
                                        (TELEGRAM, "DejaVuSerif.ttf"),
                                        (NO_DESCENDERS, "LiberationSerif-Regular.ttf")],
                         ids=["telegram-liberation", "telegram-dejavu", "no-descenders"])
def test_capitals_and_lines_without_descenders_are_set_upright_every_way(lines, font):
    """Styles that fool the ink votes (serif capitals, no descenders): the reading decides."""
    page = _page(lines, font)
    found = {r: segment_upright(turn(page, -r), dpi=150).orientation.rotation for r in (0, 90, 180, 270)}
    assert found == {0: 0, 90: 90, 180: 180, 270: 270}


def test_without_the_judge_s_model_pages_are_turned_by_their_ink_alone(caplog):
    from pipeline.orientation import UprightJudge

    missing = UprightJudge(model="/nonexistent/model")
    page = _page(TELEGRAM, "DejaVuSerif.ttf")
    with caplog.at_level("WARNING"):
        found = segment_upright(turn(page, 90), dpi=150, judge=missing).orientation
    assert found.rotation in (90, 270) and found.read_as_is is None  # turned, no error
    assert "turned by their ink alone" in caplog.text


def test_a_negative_page_is_read_as_its_positive_and_a_dark_picture_is_left_alone():
    """White text on black (a negative, a microfilm print) found no lines and read as an empty
    'done' page; it is read as its positive. A page whose text sits beside a large dark picture
    keeps its own reading."""
    from tests.model_fixtures import LETTER_LINES, make_letter_page

    positive = make_letter_page(150)
    page, seg, _ = segmented(PageImage(1, 255 - positive, 150))
    assert len(seg.lines) == len(LETTER_LINES)
    assert float(np.median(page.image)) == 255  # the page is kept as read: its positive
    assert [c.shape for c in seg.crops] == [c.shape for c in segmented(PageImage(1, positive, 150))[1].crops]

    pictured = positive.copy()
    pictured[int(0.45 * len(pictured)):] = 20  # a dark photograph over the lower half and more
    assert float(np.median(pictured)) < 128
    page, seg, _ = segmented(PageImage(1, pictured, 150))
    assert len(seg.lines) == len(LETTER_LINES) and page.image is not None
    assert float(np.median(page.image)) < 128  # not inverted
