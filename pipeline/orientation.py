"""Which way up a page is: quarter turns found before segmentation (sideways and upside-down scans).

- Which way the lines run. Letters of a line sit closer to their neighbours along the line than
  to the letters of the next line, so for each glyph-sized part the nearest other part across
  the smaller gap votes for the lines' direction. This is typographic and cheap, and it does not
  fail on the bench pages (bench/bench_orientation.py).
- Which way is up. Each line first votes by its ink: Latin has more ink above its x-height band
  (ascenders, capitals, i-dots) than below its baseline, and lines in capitals and digits go by
  the dots on their baseline. Where that is not clearly "upright" (about a tenth of lines vote
  wrong, and some styles, serif capitals or lines without descenders, fool it), the shipped line
  model reads a few of the page's widest lines as they are and turned over, by its CTC head
  alone, and the surer reading wins (`UprightJudge`): on the dev lines the upright reading was
  the surer one for 64 of 65 lines.
A page with too little text either way is left as it is; one whose lines run down the page is
turned whichever way reads better.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import cv2
import numpy as np

from pipeline.layout import clean_mask, pool2
from pipeline.segment import binarize, segment_page, to_gray
from pipeline.types import PageImage, Segmentation

if TYPE_CHECKING:
    from pipeline.recognize import Recognizer

log = logging.getLogger(__name__)

MIN_PARTS = 40  # glyph-sized parts needed to say which way the lines run
ACROSS_SHARE = 0.65  # share of the votes that must say "the lines run the other way"
BAND_LEVEL = 0.35  # rows at least this share of the densest row's ink make up the band
MAX_BAND_SHARE = 0.7  # a band over more of the line's height is capitals or digits
MIN_OUTSIDE = 0.05  # share of a line's ink outside its band for the band to vote
LINE_LEAN = 0.4  # log ratio of ink above and below the band for a line to vote
MIN_VOTES = 4  # without a judge: lines that must say "upside down", twice the upright ones
JUDGE_MODEL = "quire-line-v1"  # the shipped model reads for the judge, whatever the job's model
JUDGE_LINES = 6  # the page's widest lines, read as they are and turned over
JUDGE_SPAN = 12  # ... each cut to at most this many times its height (some 20 letters) to read fast
JUDGE_MARGIN = 0.03  # mean confidence by which a page that looks upright must read better turned
JUDGE_FLOOR = 0.5  # ... and turned it must read at least this sure (specks read unsure either way)


@dataclass(frozen=True)
class Orientation:
    """The clockwise quarter turn (0, 90, 180, 270) that sets the page upright, and its evidence."""

    rotation: int
    along: int = 0  # parts whose nearest neighbour lies along the page's rows
    across: int = 0  # parts whose nearest neighbour lies along its columns
    upright: int = 0  # lines that lean as upright text does
    upside_down: int = 0  # lines that lean as upside-down text does
    read_as_is: float | None = None  # the judge's mean confidence, where it was asked
    read_turned: float | None = None  # ... and turned over


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


def clearly_upright(upright: int, upside_down: int) -> bool:
    """Votes that need no second opinion: most lines of most upright pages vote so."""
    return upright >= 3 and upright >= 4 * upside_down


class UprightJudge:
    """Reads a few of a page's lines as they are and turned over with the shipped line model
    (CTC head only: one encoder pass a line, no language model) and gives each way's mean
    confidence. The model is loaded on first use, so pages that never need it cost nothing."""

    def __init__(self, model: str = JUDGE_MODEL) -> None:
        self.model = model
        self._reader: Recognizer | None = None
        self._missing = False  # the model could not be loaded: the ink votes decide alone
        self._lock = threading.Lock()  # one reader shared by the threads of a process

    def confidences(self, crops: Sequence[np.ndarray]) -> tuple[float, float] | None:
        """(as they are, turned over), or None where no crop is line-shaped (specks, a letter)."""
        widest = sorted((c for c in crops if c.shape[1] >= 2 * c.shape[0]), key=lambda c: c.shape[1],
                        reverse=True)[:JUDGE_LINES]
        lines = [c[:, : JUDGE_SPAN * c.shape[0]] for c in widest]
        if not lines:
            return None
        with self._lock:
            reader = self._load()
            if reader is None:
                return None
            as_is = reader.recognize(lines)
            turned = reader.recognize([turn(line, 180) for line in lines])
        return (float(np.mean([r.confidence for r in as_is])),
                float(np.mean([r.confidence for r in turned])))

    def _load(self):
        if self._reader is None and not self._missing:
            from pipeline.errors import QuireError
            from pipeline.recognize import Recognizer

            try:
                self._reader = Recognizer(self.model, device="cpu", decode="ctc", retry_below=0.0,
                                          language_model=False)
            except QuireError as exc:  # an install without the shipped model: pages still go on
                self._missing = True
                log.warning("pages are turned by their ink alone: %s", exc)
        return self._reader


_SHARED_JUDGE = UprightJudge()


@dataclass(frozen=True)
class UprightPage:
    """A page image turned upright (`orientation.rotation` degrees clockwise) and its segmentation,
    whose boxes are in the upright image's coordinates."""

    image: np.ndarray
    orientation: Orientation
    segmentation: Segmentation


def segment_upright(image: np.ndarray, *, dpi: int = 300,
                    judge: UprightJudge | None = _SHARED_JUDGE) -> UprightPage:
    """Turn a page upright by quarter turns where its text says it lies otherwise, then segment it.

    The lines' direction is settled first (a page on its side is turned a quarter clockwise);
    the segmenter's own lines then say whether it is upside down, and only then is it segmented
    again. Lines that vote clearly upright settle it; otherwise `judge` reads the widest lines
    both ways (a page that was on its side goes whichever way reads better, any other page only
    if turned over reads better by JUDGE_MARGIN). Without a judge the votes decide (a page on its
    side by their majority, any other page only on firm evidence, `is_upside_down`). The image
    keeps its channels; turns are exact (no resampling).
    """
    gray = to_gray(image)
    ink = binarize(gray, dpi)
    along, across = line_direction_votes(ink, dpi)
    rotation = 90 if lines_run_across(along, across) else 0
    seg = segment_page(turn(gray, rotation), dpi=dpi, ink=turn(ink, rotation))
    upright, upside_down = upside_down_votes(seg.crops)
    found = Orientation(rotation, along, across, upright, upside_down)
    sideways = rotation == 90
    if sideways or not clearly_upright(upright, upside_down):
        read = judge.confidences(seg.crops) if judge is not None else None
        if read is not None:
            as_is, turned = read
            found = replace(found, read_as_is=as_is, read_turned=turned)
            # A page on its side is turned one way or the other regardless: the better reading
            # picks the way. An upright-looking page is turned over only on a clear margin.
            over = turned > as_is if sideways else turned >= max(as_is + JUDGE_MARGIN, JUDGE_FLOOR)
        else:
            over = upside_down > upright if sideways else is_upside_down(upright, upside_down)
        if over:
            rotation = (rotation + 180) % 360
            found = replace(found, rotation=rotation)
            seg = segment_page(turn(gray, rotation), dpi=dpi, ink=turn(ink, rotation))
    return UprightPage(turn(image, rotation) if rotation else image, found, seg)


def segmented(page: PageImage, *, rotate: bool = True,
              judge: UprightJudge | None = _SHARED_JUDGE) -> tuple[PageImage, Segmentation, int]:
    """The page as it is read (turned upright unless `rotate` is off, made positive if it is a
    negative), its segmentation, and the clockwise quarter turn it was given."""
    found = _segmented(page, rotate, judge)
    # Light text on dark paper (a negative, a microfilm print, a fax stored inverted) has no
    # dark ink to find. Only a dark page where nothing was found is tried inverted, so a page
    # with a large dark picture beside its text keeps its own reading.
    if not found[1].lines and _mostly_dark(page.image):
        positive = _segmented(replace(page, image=255 - np.asarray(page.image)), rotate, judge)
        if positive[1].lines:
            return positive
    return found


def _mostly_dark(image: np.ndarray) -> bool:
    gray = to_gray(image)
    step = max(1, max(gray.shape) // 512)
    return float(np.median(gray[::step, ::step])) < 128


def _segmented(page: PageImage, rotate: bool, judge: UprightJudge | None
               ) -> tuple[PageImage, Segmentation, int]:
    if not rotate:
        return page, segment_page(page.image, dpi=page.dpi), 0
    upright = segment_upright(page.image, dpi=page.dpi, judge=judge)
    return replace(page, image=upright.image), upright.segmentation, upright.orientation.rotation
