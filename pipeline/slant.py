"""Upright handwriting: estimate how far a line's strokes lean and shear it back.

Most hands lean forward (IAM and Bentham lines by about 0.45: a stroke's top sits 0.45 of its
height to the right of its foot), while the model learnt mostly from upright letters. Shearing a
line upright before it is read took the dev handwriting CER from 50 % to 42 % and left the
printed and receipt lines as they were; weights then trained on lines sheared the same way read
them at 40 % (docs/BENCHMARKS.md, session 21).

The lean is read off the stroke edges: where ink meets paper along a near-vertical stroke, the
gray-level gradient points across the stroke, and its direction gives the stroke's lean. The
magnitude-weighted median over all such edge pixels ignores horizontal strokes (underlines, rules,
the bars of t and e) and a few stray marks. Upright print measures within 0.05 of 0.
"""

from __future__ import annotations

import numpy as np

# Lines are measured at this height, so a lean reads the same whatever the crop's resolution.
MEASURE_HEIGHT = 48
# Edge pixels weaker than this share of the strongest are paper texture or noise.
EDGE_SHARE = 0.25
# Only edges within 45 degrees of vertical (|gy| < |gx|) belong to the strokes that carry the lean.
MAX_EDGE_TAN = 1.0
# Leans under this are left alone: upright print measures within 0.05 of 0, and shearing it
# would only blur it by resampling.
MIN_SLANT = 0.08
MIN_EDGE_PIXELS = 20
LEAN_STEP = 0.01
LEAN_BINS = round(2 * MAX_EDGE_TAN / LEAN_STEP) + 1


def estimate_slant(gray: np.ndarray) -> float:
    """How far the line's strokes lean: horizontal shift per unit of height, positive for a
    forward (rightward) lean, within +-MAX_EDGE_TAN. 0.0 when the crop has too little ink to tell."""
    import cv2

    h, w = gray.shape[:2]
    if h == 0 or w == 0:
        return 0.0
    size = (max(1, round(w * MEASURE_HEIGHT / h)), MEASURE_HEIGHT)
    image = cv2.resize(gray, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    gx = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3)
    magnitude = cv2.magnitude(gx, gy)
    edges = (magnitude > EDGE_SHARE * magnitude.max()) & (np.abs(gy) < MAX_EDGE_TAN * np.abs(gx))
    if int(np.count_nonzero(edges)) < MIN_EDGE_PIXELS:
        return 0.0
    # The edge runs across the gradient, so a stroke leaning by s (dx/dy = -s, y pointing down)
    # has gy / gx = s on both its edges, whichever side is dark. Within MAX_EDGE_TAN, binned to
    # LEAN_STEP: a weighted histogram's median, no sort.
    leans = gy[edges] / gx[edges]
    bins = np.rint((leans + MAX_EDGE_TAN) / LEAN_STEP).astype(np.intp)
    histogram = np.bincount(bins, weights=magnitude[edges], minlength=LEAN_BINS)
    cumulative = np.cumsum(histogram)
    median = int(np.searchsorted(cumulative, 0.5 * cumulative[-1])) * LEAN_STEP - MAX_EDGE_TAN
    return round(median, 2)


def shear(gray: np.ndarray, slant: float) -> np.ndarray:
    """The crop with a lean of `slant` taken out, widened so no ink is cut off; the new corners
    are white."""
    import cv2

    h, w = gray.shape
    # x' = x + slant * y: each row moves right by slant times its depth, bringing a stroke's foot
    # under its top; the offset keeps every x' at or above 0.
    matrix = np.array([[1, slant, max(0.0, -slant * (h - 1))], [0, 1, 0]], dtype=np.float32)
    width = w + int(np.ceil(abs(slant) * (h - 1))) + 1
    return cv2.warpAffine(gray, matrix, (width, h), flags=cv2.INTER_LINEAR, borderValue=255)


def deslant(gray: np.ndarray) -> np.ndarray:
    """The gray crop sheared upright when its strokes lean by MIN_SLANT or more, else as it is."""
    slant = estimate_slant(gray)
    return shear(gray, slant) if abs(slant) >= MIN_SLANT else gray
