"""How a rendered page image is kept in the store: as small as it can be without losing what the
source had, since at archive scale the page images are most of the disk and their encoding a
good part of a page's time (a 300 dpi A4 colour scan: 16 MB and 0.7 s on one core as PNG, 1.6 MB
and 26 ms as JPEG)."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

JPEG_QUALITY = 90
JPEG_MAX_SIDE = 65_500  # JPEG cannot hold a side of 65,536 pixels or more; such a page stays PNG


@dataclass(frozen=True, slots=True)
class EncodedPage:
    data: bytes
    extension: str  # of its store key: png or jpg
    media_type: str


def encode_page(image: np.ndarray, *, lossy: bool) -> EncodedPage:
    """The page image (grey or RGB, as rendering gives it: grey held as RGB is grey by then) in
    the smallest form that keeps it: black and white as a 1-bit PNG, other pages as a JPEG if
    `lossy` is allowed, else a PNG."""
    page = Image.fromarray(image)
    buffer = io.BytesIO()
    if image.ndim == 2 and _black_and_white(page):
        # Level 6: a 1-bit page deflates as fast as a grey one at level 1, and to a third of it.
        page.convert("1", dither=Image.Dither.NONE).save(buffer, format="PNG")
        return EncodedPage(buffer.getvalue(), "png", "image/png")
    if lossy and max(image.shape[:2]) <= JPEG_MAX_SIDE:
        page.save(buffer, format="JPEG", quality=JPEG_QUALITY)
        return EncodedPage(buffer.getvalue(), "jpg", "image/jpeg")
    # Level 1: written once and large; speed matters more than a few % of size.
    page.save(buffer, format="PNG", compress_level=1)
    return EncodedPage(buffer.getvalue(), "png", "image/png")


def source_jpeg(source: Path, image: np.ndarray) -> EncodedPage | None:
    """The source's own bytes where it is a JPEG that the page shows as it is (not turned, not
    resampled, grey or RGB): a page image that costs no encoding and loses nothing, which the
    searchable PDF then carries byte for byte, as the file was. None otherwise."""
    try:
        with open(source, "rb") as f:
            if f.read(3) != b"\xff\xd8\xff":
                return None
        data = source.read_bytes()
        with _opened(io.BytesIO(data)) as jpeg:
            if jpeg.format != "JPEG" or jpeg.mode not in ("L", "RGB") \
                    or (jpeg.height, jpeg.width) != image.shape[:2]:
                return None
            same = np.array_equal(np.asarray(jpeg), image)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None  # then it is encoded as any page is
    return EncodedPage(data, "jpg", "image/jpeg") if same else None


def lossy_allowed(mode: str, source: Path) -> bool:
    """Whether `mode` (QUIRE_RENDER__PAGE_IMAGES) lets the source's continuous-tone pages be kept
    as JPEG: auto, when the source was lossy already or is a PDF; compact, always; lossless, never."""
    if mode == "compact":
        return True
    return mode == "auto" and source_is_lossy(source)


def source_is_lossy(source: Path) -> bool:
    """A PDF (its searchable PDF is the file itself with a text layer, so its page images only
    serve the viewer) or an image coded lossily: JPEG, HEIC or AVIF, lossy WebP, JPEG in TIFF.
    Anything unknown (or unreadable: rendering names why) counts as lossless, which keeps every
    pixel."""
    try:
        with open(source, "rb") as f:
            head = f.read(1024)
    except OSError:
        return False
    if b"%PDF-" in head or head.startswith(b"\xff\xd8\xff"):
        return True
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"heim", b"heis", b"mif1",
                                                b"msf1", b"avif", b"avis"):
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return head[12:16] == b"VP8 "
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_is_jpeg(source)
    return False


def _tiff_is_jpeg(source: Path) -> bool:
    try:
        with _opened(source) as tiff:
            return tiff.info.get("compression") in ("jpeg", "tiff_jpeg")
    except (OSError, ValueError, Image.DecompressionBombError):
        return False  # rendering names what is wrong with it


@contextmanager
def _opened(file: Path | io.BytesIO) -> Iterator[Image.Image]:
    """The image opened without Pillow's warnings: rendering read it already, held its pages to
    Quire's pixel limit (past Pillow's own) and told of damage ("Corrupt EXIF data" and the like
    would be said twice)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(file) as image:
            yield image


def _black_and_white(page: Image.Image) -> bool:
    counts = page.histogram()
    return sum(counts[1:255]) == 0
