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
    new_w = letterbox_width(gray.shape, height, width)
    resized = np.asarray(
        Image.fromarray(gray).resize((new_w, height), Image.Resampling.BILINEAR)
    )
    out = np.full((height, width), 255, dtype=np.uint8)
    out[:, :new_w] = resized
    return out
