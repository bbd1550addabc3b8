"""What a checkpoint's encoder takes (input size, channels, normalisation), and line crops made into it.

Recognition, training and validation all go through here, so a line reaches the model the same
way in each: fitted into the input once, batched with lines of its width, cut and normalised.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.line_image import (
    LINE_SHAPED_MIN_ASPECT,
    letterbox,
    line_batches,
    normalize_ink,
    to_gray,
    trim_padding,
)
from pipeline.slant import deslant

# Bump when `prepare_crop` changes what the model sees (2: crops sheared upright, session 21), so
# documents read before are read again rather than reused (`process.profile_key`).
PREPARATION_VERSION = "2"


@dataclass(frozen=True)
class InputShape:
    """What the checkpoint's image processor expects: size, channels and normalisation."""

    height: int
    width: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def line_shaped(self) -> bool:
        return self.width / self.height >= LINE_SHAPED_MIN_ASPECT


def encoder_channels(model: Any) -> int:
    """Channels a VisionEncoderDecoder's encoder reads (3 where its config does not say)."""
    return int(getattr(model.config.encoder, "num_channels", 3))


def cuts_padding(model: Any) -> bool:
    """Whether the encoder reads any width (Quire's LineEncoder): its batches are then cut past
    their widest line's ink (`trim` below); other encoders (TrOCR's ViT) get the full input."""
    return bool(getattr(model.encoder, "reads_any_width", False))


def input_shape(processor: Any, channels: int) -> InputShape:
    """The input of a checkpoint whose encoder has `channels` (its config's num_channels)."""
    image_processor = getattr(processor, "image_processor", processor)
    size = getattr(image_processor, "size", None) or {}
    get = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)  # SizeDict
    height = int(get("height") or get("shortest_edge") or 384)
    width = int(get("width") or get("shortest_edge") or height)
    mean = _per_channel(getattr(image_processor, "image_mean", None), channels)
    std = _per_channel(getattr(image_processor, "image_std", None), channels)
    return InputShape(height, width, channels, mean, std)


def _per_channel(values: Any, channels: int) -> tuple[float, ...]:
    if values is None:
        return (0.5,) * channels
    values = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    if len(values) == channels:
        return tuple(values)
    return (sum(values) / len(values),) * channels


def fit_lines(crops: Sequence[Any], shape: InputShape) -> list[np.ndarray]:
    """Gray crops fitted into a line-shaped input: paper whitened and cut to the ink
    (`normalize_ink`), sheared upright if the writing leans (`deslant`), then letterboxed. A line
    already the input's size (a synthetic training line, drawn letterboxed) is taken as it is.
    Square-input checkpoints (TrOCR) get the crops as they come, as they were trained: their
    processor resizes (and stretches) them itself."""
    if not shape.line_shaped:
        return [to_gray(c) for c in crops]
    fitted = []
    for crop in map(to_gray, crops):
        if crop.shape != (shape.height, shape.width):
            crop = letterbox(prepare_crop(crop), shape.height, shape.width)
        fitted.append(crop)
    return fitted


def prepare_crop(gray: np.ndarray) -> np.ndarray:
    """A gray crop as a line-shaped model reads it before letterboxing: paper whitened, cut to the
    ink, sheared upright and cut again (shearing widens it with white). Training draws its
    synthetic lines through this too (`quire train --ink-cut`)."""
    cut = normalize_ink(gray)
    upright = deslant(cut)
    return cut if upright is cut else normalize_ink(upright)


def model_batches(
    lines: list[np.ndarray], shape: InputShape, batch_size: int, trim: bool
) -> Iterator[tuple[list[int], list[np.ndarray]]]:
    """(indices into `lines`, those lines) in recognition's batches: narrow lines first, and with
    `trim` (encoders that read any width) only lines that cut to the same width together.
    `lines` come from `fit_lines`."""
    cut = trim and shape.line_shaped
    for chunk in line_batches(lines, batch_size, cut):
        yield chunk, [lines[i] for i in chunk]


def pixel_values(lines: Sequence[np.ndarray], shape: InputShape, processor: Any, trim: bool = False):
    """A float tensor (N, C, H, W) of gray lines (fitted or not), cut past the widest line's ink
    when `trim`, normalised with the processor's mean and std."""
    import torch

    if not shape.line_shaped:
        from PIL import Image

        mode = "RGB" if shape.channels == 3 else "L"
        images = [Image.fromarray(to_gray(c)).convert(mode) for c in lines]
        return processor(images=images, return_tensors="pt").pixel_values
    batch = np.stack([letterbox(c, shape.height, shape.width) for c in lines])
    if trim:
        batch = trim_padding(batch)
    tensor = torch.from_numpy(batch.astype(np.float32) / 255.0).unsqueeze(1)  # N,1,H,W
    if shape.channels != 1:
        tensor = tensor.expand(-1, shape.channels, -1, -1)
    mean = torch.tensor(shape.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(shape.std, dtype=torch.float32).view(1, -1, 1, 1)
    return (tensor - mean) / std
