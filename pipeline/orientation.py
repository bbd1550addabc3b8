"""Which way up a page is: quarter turns found before segmentation (sideways and upside-down scans).

Two cues, both typographic, so a page costs tens of milliseconds beside its segmentation and
no model (bench/bench_orientation.py):
- Which way the lines run. Letters of a line sit closer to their neighbours along the line than
  to the letters of the next line, so for each glyph-sized part the nearest other part across
  the smaller gap votes for the lines' direction.
- Which way is up. Latin script has more ink above its x-height band (ascenders, capitals,
  accents, i-dots) than below its baseline (descenders), in print and in handwriting alike; a
  page whose lines mostly weigh the other way is upside down. Lines in capitals and digits
  (receipts, forms) have no band to speak of: they vote by their dots instead (full stops,
  decimal points and commas sit on the baseline).
A page with too little evidence either way is left as it is; one whose lines run down the page
is turned the way most of its lines say.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from pipeline.layout import clean_mask, pool2
from pipeline.segment import binarize, segment_page, to_gray
from pipeline.types import PageImage, Segmentation

MIN_PARTS = 40  # glyph-sized parts needed to say which way the lines run
ACROSS_SHARE = 0.65  # share of the votes that must say "the lines run the other way"
BAND_LEVEL = 0.35  # rows at least this share of the densest row's ink make up the band
MAX_BAND_SHARE = 0.7  # a band over more of the line's height is capitals or digits
MIN_OUTSIDE = 0.05  # share of a line's ink outside its band for the band to vote
LINE_LEAN = 0.4  # log ratio of ink above and below the band for a line to vote
MIN_VOTES = 4  # lines that must say "upside down", and outnumber the upright ones twice


@dataclass(frozen=True)
class Orientation:
    """The clockwise quarter turn (0, 90, 180, 270) that sets the page upright, and its evidence."""

    rotation: int
    along: int = 0  # parts whose nearest neighbour lies along the page's rows
    across: int = 0  # parts whose nearest neighbour lies along its columns
    upright: int = 0  # lines that lean as upright text does
    upside_down: int = 0  # lines that lean as upside-down text does


def turn(image: np.ndarray, rotation: int) -> np.ndarray:
    """The image turned `rotation` degrees clockwise (a quarter-turn multiple), losslessly."""
    if rotation % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {rotation}")
    return np.ascontiguousarray(np.rot90(image, k=-(rotation // 90) % 4))


def line_direction_votes(ink: np.ndarray, dpi: int) -> tuple[int, int]:
    """Glyph-sized parts whose nearest neighbour lies along the rows, and along the columns.

    The gap to a neighbour is the empty space between the two boxes, counted only between
    parts that overlap across that direction (beside each other in one line, or above each
    other in one column), so words of joined-up writing count as well as single letters.
    """
    small = pool2(ink) if min(ink.shape) >= 200 else ink
    scale = 2 if small is not ink else 1
    _, stats, th, _ = clean_mask(small, max(1, dpi // scale))
    if len(stats) < MIN_PARTS:
        return 0, 0
    x, y, w, h = (stats[:, i].astype(np.float32) for i in range(4))
    size = np.maximum(w, h)
    glyph = (size >= 0.3 * th) & (size <= 8 * th)
    x, y, w, h = x[glyph], y[glyph], w[glyph], h[glyph]
    if len(x) < MIN_PARTS:
        return 0, 0
    rng = np.random.default_rng(0)
    picked = rng.choice(len(x), min(len(x), 1500), replace=False)
    x1, y1 = x + w, y + h
    along = across = 0
    for start in range(0, len(picked), 256):  # a block of parts against all parts at a time
        i = picked[start:start + 256, None]
        # The empty space between the boxes, where they overlap across that direction.
        beside = np.minimum(y1[i], y1) - np.maximum(y[i], y) >= 0.5 * np.minimum(h[i], h)
        above = np.minimum(x1[i], x1) - np.maximum(x[i], x) >= 0.5 * np.minimum(w[i], w)
        gap_x = np.maximum(x - x1[i], x[i] - x1)
        gap_y = np.maximum(y - y1[i], y[i] - y1)
        nearest_along = np.where(beside & (gap_x >= 0), gap_x, np.inf).min(axis=1)
        nearest_across = np.where(above & (gap_y >= 0), gap_y, np.inf).min(axis=1)
        along += int(np.sum(nearest_along < nearest_across))
        across += int(np.sum(nearest_across < nearest_along))
    return along, across


def line_vote(gray: np.ndarray) -> int:
    """+1 where a line's ink leans as upright text does, -1 as upside-down text does, else 0.

    A line with an x-height band (the run of densest rows around the densest one) votes by the
    ink outside it: ascenders, capitals and i-dots above outweigh descenders below. A line
    without one (capitals and digits, as on receipts) votes by its dots: full stops, decimal
    points and commas sit on the baseline.
    """
    if gray.size == 0 or gray.shape[0] < 6:
        return 0
    _, ink = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    rows = ink.sum(axis=1).astype(np.float64)
    k = max(1, len(rows) // 32)
    rows = np.convolve(rows, np.ones(k) / k, mode="same")
    peak = int(np.argmax(rows))
    if rows[peak] <= 0:
        return 0
    dense = rows >= BAND_LEVEL * rows[peak]
    top, bottom = peak, peak
    while top > 0 and dense[top - 1]:
        top -= 1
    while bottom < len(rows) - 1 and dense[bottom + 1]:
        bottom += 1
    inked = np.flatnonzero(rows > 0.02 * rows[peak])
    band_share = (bottom - top + 1) / (inked[-1] - inked[0] + 1)
    above, below = rows[:top].sum(), rows[bottom + 1:].sum()
    if band_share <= MAX_BAND_SHARE and above + below >= MIN_OUTSIDE * rows.sum():
        lean = np.log((above + 1) / (below + 1))
        return 1 if lean > LINE_LEAN else -1 if lean < -LINE_LEAN else 0
    low, high = _dots(ink, inked[0], inked[-1] + 1)
    return int(np.sign(low - high))


def _dots(ink: np.ndarray, top: int, bottom: int) -> tuple[int, int]:
    """Dot-sized parts in the lower and in the upper part of a line's inked rows."""
    _, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    _, y, w, h, area = stats[1:].T
    span = bottom - top
    tall = h >= 0.4 * span
    if tall.sum() < 2:
        return 0, 0
    glyph = float(np.median(h[tall]))
    dot = (h <= 0.3 * glyph) & (w <= 0.4 * glyph) & (area >= 0.02 * glyph * glyph)
    dot &= (w <= 2.5 * h) & (h <= 2.5 * w)
    centre = (y + h / 2 - top) / span
    return int(np.sum(dot & (centre > 0.6))), int(np.sum(dot & (centre < 0.4)))


def upside_down_votes(crops: Sequence[np.ndarray]) -> tuple[int, int]:
    """Lines that vote upright, and lines that vote upside down."""
    votes = [line_vote(c) for c in crops]
    return votes.count(1), votes.count(-1)


def lines_run_across(along: int, across: int) -> bool:
    """Whether the votes say the lines run down the page (the page lies on its side)."""
    total = along + across
    return total >= MIN_PARTS and across >= ACROSS_SHARE * total


def is_upside_down(upright: int, upside_down: int) -> bool:
    return upside_down >= MIN_VOTES and upside_down >= 2 * upright


@dataclass(frozen=True)
class UprightPage:
    """A page image turned upright (`orientation.rotation` degrees clockwise) and its segmentation,
    whose boxes are in the upright image's coordinates."""

    image: np.ndarray
    orientation: Orientation
    segmentation: Segmentation


def segment_upright(image: np.ndarray, *, dpi: int = 300) -> UprightPage:
    """Turn a page upright by quarter turns where its text says it lies otherwise, then segment it.

    The lines' direction is settled first (a page on its side is turned a quarter clockwise);
    the segmenter's own lines then say whether it is upside down, and only then is it segmented
    again (a page that was on its side goes the way most of its lines say; any other page only
    on firm evidence, `is_upside_down`). The image keeps its channels; turns are exact (no resampling).
    """
    gray = to_gray(image)
    ink = binarize(gray, dpi)
    along, across = line_direction_votes(ink, dpi)
    rotation = 90 if lines_run_across(along, across) else 0
    seg = segment_page(turn(gray, rotation), dpi=dpi, ink=turn(ink, rotation))
    upright, upside_down = upside_down_votes(seg.crops)
    # A page on its side is turned one way or the other regardless, so there the majority of its
    # lines picks the way; an upright-looking page is turned over only on firm evidence.
    sideways_other_way = rotation == 90 and upside_down > upright
    if sideways_other_way or is_upside_down(upright, upside_down):
        rotation = (rotation + 180) % 360
        seg = segment_page(turn(gray, rotation), dpi=dpi, ink=turn(ink, rotation))
    found = Orientation(rotation, along, across, upright, upside_down)
    return UprightPage(turn(image, rotation) if rotation else image, found, seg)


def segmented(page: PageImage, *, rotate: bool = True) -> tuple[PageImage, Segmentation, int]:
    """The page as it is read (turned upright unless `rotate` is off), its segmentation, and
    the clockwise quarter turn it was given."""
    if not rotate:
        return page, segment_page(page.image, dpi=page.dpi), 0
    upright = segment_upright(page.image, dpi=page.dpi)
    return replace(page, image=upright.image), upright.segmentation, upright.orientation.rotation
