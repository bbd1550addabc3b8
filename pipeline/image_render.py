"""Image files to page images with Pillow, a page at a time, held to the pixel limit, turned as viewers show them."""

from __future__ import annotations

import itertools
import re
import struct
import threading
from collections.abc import Callable, Container, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from pipeline.config import RenderOptions
from pipeline.document_checks import check_page_count
from pipeline.errors import CorruptDocumentError, ImageTooLargeError
from pipeline.types import PageImage

# What Pillow's format plugins raise on a damaged file besides OSError: a truncated multi-page
# TIFF fails with TypeError ("Missing dimensions") or KeyError while its pages are counted.
DAMAGED_IMAGE = (OSError, EOFError, SyntaxError, ValueError, TypeError, KeyError, IndexError,
                 struct.error)

MAX_PAGE_INCHES = 25  # long side: A2 (23.4 in) and smaller sheets keep the resolution their scan records
EXIF_ORIENTATION = 0x0112  # 1 as stored; 2-8 mirrored and/or turned


def count_image_pages(path: Path) -> int:
    """Pages of an image file, checking it opens; only headers are read, so no pixel limit
    applies: rendering holds each page to its own."""
    with _open_image(path, max_pixels=None) as image:
        return _frame_count(path, image)


def _frame_count(path: Path, image: Image.Image) -> int:
    """Pages of an opened image; counting reads every page's header, where damage shows."""
    try:
        return int(getattr(image, "n_frames", 1))
    except DAMAGED_IMAGE as exc:
        readable = _readable_frames(image)
        reason = (f"image is cut short or damaged at page {readable + 1} ({_why(exc)}); pages "
                  f"1-{readable} can be read: copy the file again, or rescan it" if readable
                  else f"image is damaged: its pages cannot be counted ({_why(exc)})")
        raise CorruptDocumentError(reason, source=str(path)) from exc


def _readable_frames(image: Image.Image) -> int:
    """How many pages from the first have headers that can be read (a cut-short multi-page TIFF
    loses its last pages' headers, so its page count fails)."""
    count = 0
    try:
        while True:
            image.seek(count)
            count += 1
    except (EOFError, *DAMAGED_IMAGE):
        return count


def _why(exc: BaseException) -> str:
    """The library's reason on one line (libheif's ends in a newline), its own parentheses made
    a colon: it is given in parentheses, and "(image file is truncated (0 bytes not processed))"
    reads badly. Never the exception's class name, which tells a user nothing."""
    reason = " ".join(str(exc).split())
    return re.sub(r" ?\(([^()]*)\)", r": \1", reason) or "no reason given"


def _open_image(path: Path, max_pixels: int | None) -> Image.Image:
    """The image opened (its header read, nothing decoded) and held to `max_pixels`, which
    stands in for Pillow's own fixed bomb limit so QUIRE_RENDER__MAX_PIXELS can raise it; None
    holds it to nothing (counting pages: a 180 M pixel map under our limit counted 0 pages
    when Pillow's applied)."""
    name = str(path)
    try:
        image = open_unbounded(path)
    except UnidentifiedImageError as exc:
        raise CorruptDocumentError("image is damaged or in an unknown format", source=name) from exc
    except DAMAGED_IMAGE as exc:
        raise CorruptDocumentError(f"image cannot be read ({_why(exc)})", source=name) from exc
    if max_pixels is not None and image.width * image.height > max_pixels:
        image.close()
        raise ImageTooLargeError(
            f"image is too large: {image.width}x{image.height} = {image.width * image.height:,} pixels "
            f"(limit {max_pixels:,}; QUIRE_RENDER__MAX_PIXELS raises it)",
            source=name,
        )
    return image


_PIL_LIMIT = threading.Lock()


@contextmanager
def _unbounded() -> Iterator[None]:
    """Pillow's limit lifted (module-wide, hence the lock); the caller checks its own."""
    with _PIL_LIMIT:
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def open_unbounded(path: Path) -> Image.Image:
    """The image opened without Pillow's pixel limit: the caller holds it to its own."""
    with _unbounded():
        return Image.open(path)


def _decoded(frame: Image.Image) -> np.ndarray:
    """A page checked against QUIRE_RENDER__MAX_PIXELS, decoded. A TIFF read by libtiff meets
    Pillow's own limit again as it decodes (an error over 179 M pixels): a 180 M pixel map, under
    ours, failed with Pillow's message. Only such pages hold the lock while decoding."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is None or frame.width * frame.height <= limit:
        return page_array(_as_shown(frame))
    with _unbounded():
        return page_array(_as_shown(frame))


def render_image(path: Path, options: RenderOptions, skip: Container[int] = frozenset(),
                  counted: Callable[[int], None] | None = None) -> Iterator[PageImage]:
    name = str(path)
    with _open_image(path, options.max_pixels) as image:
        total = _frame_count(path, image)
        check_page_count(path, total, options)
        if counted is not None:
            counted(total)
        dpi = _image_dpi(image, options.dpi)
        frames = ImageSequence.Iterator(image)
        for number in itertools.count(1):
            try:  # moving to a page reads its header; decoding it, its (maybe truncated) data
                frame = next(frames)
                if number in skip:
                    continue
                if frame.width * frame.height > options.max_pixels:
                    raise ImageTooLargeError(f"page {number} exceeds the pixel limit", source=name)
                array = _decoded(frame)
            except StopIteration:
                return
            except DAMAGED_IMAGE as exc:
                raise CorruptDocumentError(f"page {number} is truncated or damaged ({_why(exc)})",
                                           source=name) from exc
            yield PageImage(number, array, dpi)


def _as_shown(frame: Image.Image) -> Image.Image:
    """The image as viewers show it: cameras and phones store pixels as the sensor saw them and
    record the turn in the EXIF Orientation tag. (TIFF is left to Pillow's TIFF reader, which
    handles the tag itself; pages it leaves turned are set upright by their text.)"""
    if frame.format == "TIFF":
        return frame
    try:
        orientation = frame.getexif().get(EXIF_ORIENTATION, 1)
    except (OSError, SyntaxError, ValueError):  # a damaged EXIF block: the pixels as stored
        return frame
    return ImageOps.exif_transpose(frame) if orientation in range(2, 9) else frame


def _image_dpi(image: Image.Image, default: int) -> int:
    """The scan's own resolution when it records a plausible one; else the configured dpi.

    Cameras and phones write 72 dpi whatever they photograph: a resolution that would make the
    page larger than MAX_PAGE_INCHES is not the paper's, and the configured dpi stands instead."""
    raw = image.info.get("dpi")
    try:
        value = round(float(raw[0])) if raw else 0
    except (TypeError, ValueError, IndexError):
        value = 0
    if not 72 <= value <= 2400 or max(image.size) / value > MAX_PAGE_INCHES:
        return default
    return value


def page_array(image: Image.Image) -> np.ndarray:
    """RGB pages stay RGB, everything else (1-bit fax, gray, palette) becomes 8-bit gray.
    Transparency is laid over white paper, as viewers show it: dropped, the transparent
    background's stored colour (often black) hid black text on it."""
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    if image.mode in ("RGB", "RGBA", "CMYK", "P", "YCbCr", "LAB", "HSV"):
        rgb = image.convert("RGB")
        array = np.asarray(rgb)
        # Most scans are gray; a gray page stored as RGB costs 3x the memory for nothing.
        if np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 1], array[..., 2]):
            return np.ascontiguousarray(array[..., 0])
        return array
    return np.asarray(image.convert("L"))
