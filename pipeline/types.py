"""Frozen dataclasses that flow between stages: pages, line boxes, crops, recognized text."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np


@dataclass(frozen=True)
class BBox:
    """Axis-aligned box in page pixels: left, top, right (exclusive), bottom (exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def as_list(self) -> list[int]:
        return [self.x0, self.y0, self.x1, self.y1]

    def iou(self, other: BBox) -> float:
        ix = max(0, min(self.x1, other.x1) - max(self.x0, other.x0))
        iy = max(0, min(self.y1, other.y1) - max(self.y0, other.y0))
        inter = ix * iy
        union = self.width * self.height + other.width * other.height - inter
        return inter / union if union else 0.0


@dataclass(frozen=True)
class PageImage:
    """One rendered page: an RGB or grayscale uint8 array and the resolution it was rendered at."""

    number: int  # 1-based page number within the document
    image: np.ndarray = field(repr=False)
    dpi: int = 300

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True)
class LineBox:
    """A text line found on a page, in reading order, in the coordinates of the original page."""

    order: int  # 0-based reading order on the page
    bbox: BBox
    column: int = 0


@dataclass(frozen=True)
class Segmentation:
    """What segmentation found on one page: the deskew angle and the lines in reading order."""

    angle: float  # degrees the page was rotated by to straighten it
    lines: tuple[LineBox, ...]
    crops: tuple[np.ndarray, ...] = field(repr=False, default=())  # padded grayscale crops


@dataclass(frozen=True)
class LineText:
    """The recognized text of one line crop with a confidence in [0, 1]."""

    text: str
    confidence: float


@dataclass(frozen=True)
class LineResult:
    """A line with its place on the page and its recognized text, as exporters see it."""

    order: int
    bbox: BBox
    text: str
    confidence: float


@dataclass(frozen=True)
class PageResult:
    """A finished page as it was read (upright): size, resolution, turn, deskew angle and its
    lines in reading order."""

    number: int
    width: int
    height: int
    dpi: int
    angle: float
    lines: tuple[LineResult, ...]
    image_key: str = ""  # the page image in the object store (searchable PDF, viewer)
    rotation: int = 0  # clockwise quarter turn that set the rendered page upright


@dataclass(frozen=True)
class DocumentResult:
    """A finished document as exporters see it."""

    name: str
    sha256: str
    model: str
    pages: tuple[PageResult, ...]
    id: str = ""
    created_at: datetime | None = None  # when the document was first submitted
    updated_at: datetime | None = None  # when its rows last changed (PAGE LastChange)
