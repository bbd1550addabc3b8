"""Fit a text-line crop into a model's fixed line-shaped input without distorting its glyphs.

Training and recognition both call this, so a line looks the same to the model in both.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# A model whose input is at least this many times wider than tall is "line-shaped":
# crops are letterboxed (aspect kept, padded right). Square-input models such as
# microsoft/trocr-* were trained on stretched lines and get the crop as it is.
LINE_SHAPED_MIN_ASPECT = 4.0


def looks_like_a_page(image: np.ndarray) -> bool:
    """Taller than a line could sensibly be for its width: a line, even one word, is wider than
    tall (the dev sets' narrowest, a handwritten word, is 148x77), a page or a paragraph is not."""
    height, width = image.shape[:2]
    return height > 200 and width < 1.5 * height


def to_gray(image: np.ndarray | Image.Image) -> np.ndarray:
    """Any crop (PIL, RGB/RGBA/gray array) as a 2-D uint8 array."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("L"))
    array = np.asarray(image)
    if array.ndim == 3:
        return np.asarray(Image.fromarray(array[..., :3]).convert("L"))
    return array.astype(np.uint8, copy=False)


def stretch_width(image: np.ndarray | Image.Image, factor: float) -> np.ndarray:
    """The gray crop `factor` times as wide, same height (cubic: thin strokes stay sharp)."""
    import cv2

    gray = to_gray(image)
    h, w = gray.shape
    return cv2.resize(gray, (max(1, round(w * factor)), h), interpolation=cv2.INTER_CUBIC)


# `normalize_ink`: the gray levels taken as ink and as paper (quantiles of the crop's pixels), the
# least contrast between them worth stretching, the white kept around the ink (fractions of the
# ink's height; tighter than `segment_page`'s 15 % above and below, which read worse on held-out
# synthetic lines, docs/BENCHMARKS.md), and how solidly ink may fill its band before it is taken
# for a rule, dashes or dots, whose thickness says nothing of the text's size (text fills at
# most 0.8 of it: 1,500 held-out synthetic lines, the dev lines).
INK_QUANTILE, PAPER_QUANTILE = 0.01, 0.95
MIN_CONTRAST = 48
INK_MARGIN_Y, INK_MARGIN_X = 0.04, 0.5
SOLID_FILL = 0.9


def normalize_ink(image: np.ndarray | Image.Image) -> np.ndarray:
    """The gray crop with its paper white and its ink black, cut to its ink plus a small margin.

    Crops come from anywhere: the page segmenter, a folder of scanned lines with tall grey margins,
    a photo. Stretching the gray levels (the darkest 1 % to black, all at or above the 95th
    percentile to white) and cutting to the ink makes them alike, with the letters as tall as the
    input allows and white padding the encoder's batches can cut. A crop without that much
    contrast (blank, or too faint to tell ink from paper) is returned as it is.
    """
    import cv2

    gray = to_gray(image)
    if gray.size == 0:
        return gray
    cdf = np.cumsum(np.bincount(gray.ravel(), minlength=256)) / gray.size
    ink, paper = int(np.searchsorted(cdf, INK_QUANTILE)), int(np.searchsorted(cdf, PAPER_QUANTILE))
    if paper - ink < MIN_CONTRAST:
        return gray
    levels = np.clip((np.arange(256) - ink) * (255.0 / (paper - ink)), 0, 255).astype(np.uint8)
    gray = levels[gray]
    _, mask = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    per_row = mask.sum(axis=1)
    # A row is ink if it holds a little of the densest row's ink: ascenders and descenders count,
    # a speck of dust above a full line does not.
    rows = np.flatnonzero(per_row >= max(1, 0.02 * per_row.max()))
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    cols = np.flatnonzero(mask[top:bottom].any(axis=0))
    left, right = int(cols[0]), int(cols[-1]) + 1
    h, w = gray.shape
    ink_height = bottom - top
    if mask[top:bottom].sum() > SOLID_FILL * ink_height * cols.size:
        top, bottom, ink_height = 0, h, h  # a rule, dashes or dots: keep the crop's own height
    dy, dx = round(INK_MARGIN_Y * ink_height) + 1, round(INK_MARGIN_X * ink_height) + 1
    return gray[max(0, top - dy) : min(h, bottom + dy), max(0, left - dx) : min(w, right + dx)]


def letterbox_width(shape: tuple[int, ...], height: int, width: int) -> int:
    """Columns a crop of `shape` (h, w) fills after `letterbox`; the rest is white padding."""
    h, w = shape[:2]
    return max(1, min(width, round(w * height / h)))


def letterbox(image: np.ndarray | Image.Image, height: int, width: int) -> np.ndarray:
    """Scale the crop to `height` keeping its aspect, squeeze only if still too wide, pad right white."""
    gray = to_gray(image)
    h, w = gray.shape
    if h == 0 or w == 0:
        return np.full((height, width), 255, dtype=np.uint8)
    if (h, w) == (height, width):  # already fitted (recognition fits each line once)
        return gray
    new_w = letterbox_width(gray.shape, height, width)
    resized = np.asarray(
        Image.fromarray(gray).resize((new_w, height), Image.Resampling.BILINEAR)
    )
    out = np.full((height, width), 255, dtype=np.uint8)
    out[:, :new_w] = resized
    return out


# Encoders that read any width (Quire's LineEncoder) get each batch cut to its widest line plus
# a line-height of white, rounded up to two line-heights: a short line (a receipt total, a header,
# a page number) then costs a fraction of a full-width one. Training cuts its batches the same
# way, so the model knows lines both with and without a long white tail.
TRIM_MARGIN_HEIGHTS = 1
TRIM_MULTIPLE_HEIGHTS = 2


def inked_width(image: np.ndarray) -> int:
    """Columns up to the last one that is not pure white (the padding `letterbox` adds); any shape
    (..., H, W), so a whole batch at once."""
    inked = np.flatnonzero((image != 255).reshape(-1, image.shape[-1]).any(axis=0))
    return int(inked[-1]) + 1 if inked.size else 0


def trimmed_width(batch: np.ndarray) -> int:
    """How many columns of a letterboxed (N, H, W) uint8 batch an any-width encoder needs to read."""
    height = batch.shape[-2]
    # A multiple of 8 as well: the width any stem's downsampling divides.
    step = max(8, TRIM_MULTIPLE_HEIGHTS * height // 8 * 8)
    wanted = inked_width(batch) + TRIM_MARGIN_HEIGHTS * height
    return min(batch.shape[-1], -(-wanted // step) * step)


def trim_padding(batch: np.ndarray) -> np.ndarray:
    """The batch without the white columns past `trimmed_width` (a view, no copy)."""
    return batch[..., : trimmed_width(batch)]


def width_order(images: list[np.ndarray]) -> list[int]:
    """Indices from the narrowest line to the widest (inked width over height, so lines already
    letterboxed sort too): batches taken in this order are alike in width, little of each padding."""
    return sorted(range(len(images)), key=lambda i: inked_width(images[i]) / max(1, images[i].shape[0]))


def line_batches(images: list[np.ndarray], batch_size: int, cut: bool = False) -> list[list[int]]:
    """Indices of `images` in batches of up to `batch_size`, narrowest lines first.

    With `cut` (letterboxed lines for an encoder that reads any width, whose batches
    `trim_padding` cuts), a batch only holds lines that cut to the same width, so a line reads
    the same whatever else it is recognized with.
    """
    if not cut:
        order = width_order(images)
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    widths = [trimmed_width(image[None]) for image in images]
    chunks: list[list[int]] = []
    for i in sorted(range(len(images)), key=lambda i: widths[i]):
        if chunks and len(chunks[-1]) < batch_size and widths[chunks[-1][-1]] == widths[i]:
            chunks[-1].append(i)
        else:
            chunks.append([i])
    return chunks
