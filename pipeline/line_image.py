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
