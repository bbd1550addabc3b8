"""Segmentation on generated pages with known lines: recall, reading order, deskew, crops."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.segment import segment_page
from pipeline.types import BBox, LineBox, Segmentation
from tests.pagegen import GeneratedPage, make_page

# (kind, angle, scan look): one and two columns, a picture with a rule, skew both ways.
CASES = [
    ("one_column", 0.0, False),
    ("two_columns", 0.0, False),
    ("two_columns", 3.0, True),
    ("picture", 0.0, True),
    ("one_column", -5.0, False),
]


@pytest.fixture(
    scope="module", params=CASES, ids=lambda c: f"{c[0]}{c[1]:+g}{'-scan' if c[2] else ''}"
)
def case(request: pytest.FixtureRequest) -> tuple[GeneratedPage, Segmentation]:
    kind, angle, scan = request.param
    page = make_page(kind, seed=1, angle=angle, scan=scan)
    return page, segment_page(page.image, dpi=300)


def match(truth: list[BBox], found: list[LineBox], min_iou: float = 0.7) -> dict[int, int]:
    """One-to-one matching, best IoU first: true line index -> found line index."""
    pairs = sorted(
        (
            (t.iou(f.bbox), i, j)
            for i, t in enumerate(truth)
            for j, f in enumerate(found)
            if t.iou(f.bbox) >= min_iou
        ),
        reverse=True,
    )
    pairs_t: dict[int, int] = {}
    used: set[int] = set()
    for _, i, j in pairs:
        if i not in pairs_t and j not in used:
            pairs_t[i] = j
            used.add(j)
    return pairs_t


def ink_rows(crop: np.ndarray) -> np.ndarray:
    return crop < (int(crop.max()) + int(crop.min())) // 2


def test_finds_95_percent_of_lines(case: tuple[GeneratedPage, Segmentation]) -> None:
    page, seg = case
    matched = match([t.bbox for t in page.lines], list(seg.lines))
    assert len(matched) >= 0.95 * len(page.lines), (len(matched), len(page.lines))


def test_reading_order_is_the_true_order(case: tuple[GeneratedPage, Segmentation]) -> None:
    page, seg = case
    matched = match([t.bbox for t in page.lines], list(seg.lines))
    found_order = [seg.lines[matched[i]].order for i in sorted(matched)]
    assert found_order == sorted(found_order)
    assert [line.order for line in seg.lines] == list(range(len(seg.lines)))


def test_deskew_angle(case: tuple[GeneratedPage, Segmentation]) -> None:
    page, seg = case
    # The result is the rotation that straightens the page: minus the skew put in.
    assert abs(seg.angle + page.angle) <= 0.5


def test_no_line_inside_a_picture(case: tuple[GeneratedPage, Segmentation]) -> None:
    page, seg = case
    for pic in page.pictures:
        for line in seg.lines:
            b = line.bbox
            ix = max(0, min(b.x1, pic.x1) - max(b.x0, pic.x0))
            iy = max(0, min(b.y1, pic.y1) - max(b.y0, pic.y0))
            assert ix * iy < 0.2 * b.width * b.height, (line, pic)


def test_crops_are_padded_grey_and_horizontal(case: tuple[GeneratedPage, Segmentation]) -> None:
    page, seg = case
    assert len(seg.crops) == len(seg.lines)
    for line, crop in zip(seg.lines, seg.crops):
        assert crop.dtype == np.uint8 and crop.ndim == 2
        ink = ink_rows(crop)
        rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
        # a margin of paper on every side of the ink
        assert rows[0] > 0 and rows[-1] < crop.shape[0] - 1, line
        assert cols[0] > 0 and cols[-1] < crop.shape[1] - 1, line
        if page.angle == 0:
            assert crop.shape[0] > line.bbox.height and crop.shape[1] > line.bbox.width
    # Long lines are level in their crops: ink sits at the same height at both ends.
    long_lines = sorted(range(len(seg.crops)), key=lambda k: -seg.crops[k].shape[1])[:8]
    for k in long_lines:
        ink = ink_rows(seg.crops[k])
        quarter = ink.shape[1] // 4
        ys = np.arange(ink.shape[0])[:, None]
        left = (ys * ink[:, :quarter]).sum() / max(1, ink[:, :quarter].sum())
        right = (ys * ink[:, -quarter:]).sum() / max(1, ink[:, -quarter:].sum())
        assert abs(left - right) < 0.15 * ink.shape[0], (k, left, right)


def test_two_columns_read_column_by_column() -> None:
    page = make_page("two_columns", seed=2)
    seg = segment_page(page.image)
    matched = match([t.bbox for t in page.lines], list(seg.lines))
    assert len(matched) >= 0.95 * len(page.lines)
    for i, j in matched.items():
        assert seg.lines[j].column == page.lines[i].column
    # every left-column line comes before every right-column line
    columns = [seg.lines[matched[i]].column for i in sorted(matched)]
    assert columns == sorted(columns)


def test_grayscale_input_and_fixed_pad() -> None:
    page = make_page("one_column", seed=3)
    gray = page.image[:, :, 0].copy()
    seg = segment_page(gray, pad=0)
    assert len(match([t.bbox for t in page.lines], list(seg.lines))) >= 0.95 * len(page.lines)
    for line, crop in zip(seg.lines, seg.crops):
        assert crop.shape == (line.bbox.height, line.bbox.width)


@pytest.mark.parametrize("shade", [255, 200])
def test_blank_page_has_no_lines(shade: int) -> None:
    rng = np.random.default_rng(0)
    page = np.full((3300, 2550, 3), shade, dtype=np.uint8)
    if shade < 255:  # grey paper with scanner grain
        page = np.clip(page + rng.normal(0, 6, page.shape), 0, 255).astype(np.uint8)
    seg = segment_page(page)
    assert seg.lines == () and seg.crops == () and seg.angle == 0.0


def test_tiny_image_is_not_an_error() -> None:
    assert segment_page(np.zeros((4, 4), dtype=np.uint8)).lines == ()


def test_a_wide_space_after_a_full_stop_does_not_split_a_book_line() -> None:
    """Justified book text can leave a double space after a full stop as wide as the gutter
    between narrow columns; a line alone (no line above or below shares the gap) is one line.
    Its height is judged against its tallest phrase: i-dots are phrases of their own, and
    against the median phrase (a dot) one line looked like two and was cut at the full stop."""
    from PIL import Image, ImageDraw

    from tests.pagegen import _font

    font = _font(46)  # 11 pt at 300 dpi
    page = Image.new("L", (1700, 600), 255)
    draw = ImageDraw.Draw(page)
    draw.text((150, 150), "He looked round the room and saw nothing there at all,", font=font, fill=0)
    draw.text((150, 240), "in it is in it is mine.", font=font, fill=0)
    after = 150 + draw.textlength("in it is in it is mine.", font=font) + 6 * draw.textlength(" ", font=font)
    draw.text((after, 240), "Then he", font=font, fill=0)
    draw.text((150, 330), "came over to us and sat down by the door of the house.", font=font, fill=0)
    seg = segment_page(np.asarray(page), dpi=300)
    assert len(seg.lines) == 3, [line.bbox for line in seg.lines]
    assert all(line.column == 0 for line in seg.lines)
