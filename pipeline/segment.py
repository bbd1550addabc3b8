"""Page segmentation with OpenCV: grayscale, binarize, deskew, text lines in reading order, crops."""

from __future__ import annotations

import math

import cv2
import numpy as np

from pipeline.layout import find_lines, pool2
from pipeline.types import BBox, LineBox, Segmentation

MAX_SKEW = 15.0  # degrees either way; beyond this a page is treated as rotated, not skewed
_MIN_ROTATION = 0.05  # below this, rotating only blurs the page


def to_gray(image: np.ndarray) -> np.ndarray:
    """An RGB(A) or grayscale uint8 array as a contiguous 2-D uint8 array."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 3:
        code = cv2.COLOR_RGBA2GRAY if array.shape[2] == 4 else cv2.COLOR_RGB2GRAY
        array = cv2.cvtColor(np.ascontiguousarray(array[:, :, : min(array.shape[2], 4)]), code)
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D or 3-D page image, got shape {array.shape}")
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array)


def binarize(gray: np.ndarray, dpi: int = 300) -> np.ndarray:
    """Ink mask (uint8, 1 = ink) for dark text on light paper, robust to shading and grey paper.

    The paper is estimated with a max filter wider than a glyph on a quarter-size copy and
    divided out; Otsu on the flattened page then separates ink from paper. The threshold is
    clamped so that a blank, noisy page stays blank.
    """
    h, w = gray.shape
    f = 4 if min(h, w) >= 64 else 1
    small = cv2.resize(gray, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
    k = max(3, round(0.2 * dpi / f)) | 1  # 0.2 in: wider than body glyph strokes and counters
    paper = cv2.dilate(small, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    paper = cv2.blur(paper, (k, k))
    # Shading rarely darkens paper below ~60% of its typical level; darker areas are pictures,
    # and flattening them away would shred them into text-sized specks.
    floor = 0.6 * float(np.median(paper))
    paper = np.maximum(paper, floor).astype(np.uint8)
    paper = cv2.resize(paper, (w, h), interpolation=cv2.INTER_LINEAR)
    flat = cv2.divide(gray, paper, scale=255)
    otsu, _ = cv2.threshold(flat, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    thresh = min(max(otsu, 90.0), 200.0)
    return (flat < thresh).astype(np.uint8)


def estimate_skew(ink: np.ndarray, dpi: int = 300) -> float:
    """Counterclockwise skew of the text lines in degrees (text rising to the right is > 0).

    Maximises the sharpness of the horizontal projection of text-sized ink over candidate
    angles, coarse then fine, on a sample of ink pixels (cost independent of page size).
    """
    h, w = ink.shape
    f = 2 if min(h, w) >= 200 else 1
    small = pool2(ink) if f > 1 else ink
    n, labels, stats, _ = cv2.connectedComponentsWithStats(small, connectivity=8)
    if n <= 1:
        return 0.0
    cw, ch, area = stats[1:, 2], stats[1:, 3], stats[1:, 4]
    unit = dpi / 300 * 2 / f  # a couple of pixels at 300 dpi, scaled
    plausible = (ch >= 3 * unit) & (ch <= dpi * 0.5 / f) & (area >= 4 * unit * unit)
    if plausible.sum() < 5:
        return 0.0
    th = float(np.median(ch[plausible]))
    # Glyph- and word-sized parts only: pictures, rules and page borders would pull the
    # profile towards their own edges.
    keep = plausible & (ch <= 3 * th) & (cw <= 15 * th)
    lut = np.zeros(n, dtype=np.uint8)
    lut[1:][keep] = 1
    ys, xs = np.nonzero(lut[labels])
    if ys.size < 50:
        return 0.0
    rng = np.random.default_rng(0)
    if ys.size > 80_000:
        pick = rng.choice(ys.size, 80_000, replace=False)
        ys, xs = ys[pick], xs[pick]
    ys = ys.astype(np.float32)
    xs = xs.astype(np.float32) - xs.mean(dtype=np.float32)
    bin_px = max(1.0, th / 6)

    def score(deg: float) -> float:
        rad = math.radians(deg)
        proj = ys * math.cos(rad) + xs * math.sin(rad)
        hist = np.bincount(((proj - proj.min()) / bin_px).astype(np.int32)).astype(np.float64)
        return float(np.dot(hist, hist))

    def best(candidates: np.ndarray) -> float:
        scores = [score(float(a)) for a in candidates]
        return float(candidates[int(np.argmax(scores))])

    angle = best(np.arange(-MAX_SKEW, MAX_SKEW + 1e-6, 0.5))
    angle = best(np.arange(angle - 0.5, angle + 0.5 + 1e-6, 0.1))
    angle = best(np.arange(angle - 0.1, angle + 0.1 + 1e-6, 0.02))
    return round(angle, 2)


def _rotation(shape: tuple[int, int], angle: float) -> tuple[np.ndarray, tuple[int, int]]:
    """Affine matrix rotating a page counterclockwise by `angle` onto a canvas that fits it."""
    h, w = shape
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_w, new_h = math.ceil(h * sin + w * cos), math.ceil(h * cos + w * sin)
    matrix[0, 2] += new_w / 2 - w / 2
    matrix[1, 2] += new_h / 2 - h / 2
    return matrix, (new_w, new_h)


def _to_page(box: tuple[int, int, int, int], inverse: np.ndarray, w: int, h: int) -> BBox:
    """The axis-aligned box, on the original page, of a straightened box's rotated rectangle."""
    x0, y0, x1, y1 = box
    corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], dtype=np.float64)
    pts = corners @ inverse.T
    return BBox(
        max(0, math.floor(pts[:, 0].min() + 1e-6)),
        max(0, math.floor(pts[:, 1].min() + 1e-6)),
        min(w, math.ceil(pts[:, 0].max() - 1e-6)),
        min(h, math.ceil(pts[:, 1].max() - 1e-6)),
    )


def segment_page(image: np.ndarray, *, dpi: int = 300, pad: int | None = None,
                 ink: np.ndarray | None = None) -> Segmentation:
    """Find the text lines of one page image in reading order.

    `angle` in the result is the counterclockwise rotation (degrees) that straightened the
    page: a page whose text rises to the right by 3 degrees gives -3.0. Line boxes are in
    the original page's coordinates (the axis-aligned box of the line's rotated rectangle);
    crops are grayscale, cut from the straightened page with `pad` pixels around the ink
    (default: 15% of the line height above and below, 50% left and right). `ink` is the page's
    ink mask (`binarize`) where the caller has made it already.
    """
    gray = to_gray(image)
    h, w = gray.shape
    if h < 8 or w < 8:
        return Segmentation(angle=0.0, lines=(), crops=())
    if ink is None:
        ink = binarize(gray, dpi)
    skew = estimate_skew(ink, dpi)
    if abs(skew) >= _MIN_ROTATION:
        matrix, size = _rotation((h, w), -skew)
        paper = int(np.percentile(gray[:: max(1, h // 256), :: max(1, w // 256)], 90))
        straight = cv2.warpAffine(
            gray,
            matrix,
            size,
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=paper,
        )
        straight_ink = cv2.warpAffine(
            ink,
            matrix,
            size,
            flags=cv2.INTER_NEAREST,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        inverse = cv2.invertAffineTransform(matrix)
    else:
        skew = 0.0
        straight, straight_ink = gray, ink
        inverse = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    found = find_lines(straight_ink, dpi)
    sh, sw = straight.shape
    lines: list[LineBox] = []
    crops: list[np.ndarray] = []
    for order, (x0, y0, x1, y1, column) in enumerate(found):
        lh = y1 - y0
        px = pad if pad is not None else max(2, round(0.5 * lh))
        py = pad if pad is not None else max(2, round(0.15 * lh))
        crop = straight[max(0, y0 - py) : min(sh, y1 + py), max(0, x0 - px) : min(sw, x1 + px)]
        crops.append(np.ascontiguousarray(crop))
        lines.append(
            LineBox(order=order, bbox=_to_page((x0, y0, x1, y1), inverse, w, h), column=column)
        )
    return Segmentation(angle=-skew if skew else 0.0, lines=tuple(lines), crops=tuple(crops))
