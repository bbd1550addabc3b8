"""Documents to page images: PDFs through poppler (pdfinfo, pdftoppm) a chunk of pages at a time, images with Pillow."""

from __future__ import annotations

import itertools
import os
import re
import stat
import struct
import subprocess
import tempfile
import threading
from collections.abc import Callable, Container, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar, cast

import numpy as np
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from pipeline import heif
from pipeline.config import RenderOptions
from pipeline.errors import (
    BadInputError,
    CorruptDocumentError,
    EmptyFileError,
    EncryptedDocumentError,
    ImageTooLargeError,
    NoPagesError,
    UnsupportedFormatError,
)
from pipeline.pdf_damage import damaged_page, heed_poppler
from pipeline.types import PageImage

T = TypeVar("T")

# What Pillow's format plugins raise on a damaged file besides OSError: a truncated multi-page
# TIFF fails with TypeError ("Missing dimensions") or KeyError while its pages are counted.
DAMAGED_IMAGE = (OSError, EOFError, SyntaxError, ValueError, TypeError, KeyError, IndexError,
                 struct.error)

# Extensions picked up when a folder is walked; a file named explicitly is always tried.
# JPEG 2000 (.jp2 and its kin) is what many archives and libraries keep their masters in.
JPEG2000_SUFFIXES = {".jp2", ".j2k", ".jpx", ".jpf", ".j2c", ".jpc"}
# SANE's scanimage writes PNM (.pnm/.pbm/.pgm/.ppm) by default; phones save photos as HEIC.
DOCUMENT_SUFFIXES = {".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif",
                     ".pnm", ".pbm", ".pgm", ".ppm", ".avif", *JPEG2000_SUFFIXES, *heif.HEIF_SUFFIXES}
IMAGE_SUFFIXES = DOCUMENT_SUFFIXES - {".pdf"}

_MAGIC = {
    b"%PDF": "pdf",
    b"\x89PNG": "image",
    b"\xff\xd8\xff": "image",
    b"II*\x00": "image",
    b"MM\x00*": "image",
    b"BM": "image",
    b"GIF8": "image",
    b"\x00\x00\x00\x0cjP  \r\n\x87\n": "jpeg2000",  # JP2/JPX signature box
    b"\xff\x4f\xff\x51": "jpeg2000",  # bare codestream (.j2k): SOC then SIZ marker
}
# ISO base media files name their kind in the 'ftyp' box: HEIF (HEVC, what iPhones save) and AVIF.
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs",
                b"mif1", b"msf1", b"mif2", b"avif", b"avis"}
SUPPORTED = "PDF, PNG, JPEG, JPEG 2000, TIFF, BMP, GIF, WebP, PNM, HEIC/HEIF, AVIF"


def not_regular(mode: int) -> str | None:
    """What a named pipe, socket or device is, in words; None for a regular file or a folder."""
    kinds = [(stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")]
    return next((words for test, words in kinds if test(mode)), None)


def regular_file_stat(path: Path) -> os.stat_result:
    """The file's stat, refusing what is not a regular file: opening a named pipe waits for a
    writer for ever, and a device such as /dev/zero never ends, so either hung the run."""
    try:
        info = path.stat()
    except OSError as exc:
        raise BadInputError(f"cannot read file ({exc.strerror})", source=str(path)) from exc
    kind = not_regular(info.st_mode)
    if kind is not None:
        raise BadInputError(f"is not a regular file ({kind})", source=str(path))
    return info


def regular_file_size(path: Path) -> int:
    """The file's size (regular_file_stat)."""
    return regular_file_stat(path).st_size


def sniff_kind(path: Path) -> str:
    """'pdf' or 'image' from the file's first bytes; bad input raises a BadInputError naming the file."""
    name = str(path)
    size = regular_file_size(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(1024)
    except OSError as exc:
        raise BadInputError(f"cannot read file ({exc.strerror})", source=name) from exc
    if size == 0:
        raise EmptyFileError("file is empty", source=name)
    if b"%PDF" in head:  # some writers put junk before the header; poppler accepts that
        return "pdf"
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return _jpeg2000_decodable(path) if kind == "jpeg2000" else kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image"
    if head[:1] == b"P" and head[1:2] in b"123456" and head[2:3].isspace():  # PBM/PGM/PPM, text or raw
        return "image"
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        heif.enable()
        return "image"
    raise UnsupportedFormatError(f"not a PDF or an image (supported: {SUPPORTED})", source=name)


def _jpeg2000_decodable(path: Path) -> str:
    """'image' where Pillow was built with OpenJPEG; without it Pillow reads the header and then
    fails on the pixels with 'decoder jpeg2k not available', which reads like a damaged file."""
    from PIL import features

    if features.check("jpg_2000"):
        return "image"
    raise UnsupportedFormatError(
        "JPEG 2000 is not supported by this install (Pillow was built without OpenJPEG); convert "
        "it to TIFF first, e.g. opj_decompress -i scan.jp2 -o scan.tif", source=str(path))


def count_pages(path: Path) -> int:
    """Number of pages, checking the document opens; raises BadInputError naming the file.
    Only headers are read, so no pixel limit applies: rendering holds each page to its own."""
    if sniff_kind(path) == "pdf":
        return int(_pdf_info(path)["Pages"])
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
    """The library's reason on one line (libheif's ends in a newline)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def render_pages(path: Path, options: RenderOptions | None = None,
                 skip: Container[int] = frozenset(),
                 counted: Callable[[int], None] | None = None) -> Iterator[PageImage]:
    """Yield the document's pages one by one, but those numbered in `skip` (read before: an
    interrupted run going on), which are not rendered; memory holds one chunk of pages at most.
    `counted` is told the document's page count once it is known, before the first page."""
    options = options or RenderOptions()
    if sniff_kind(path) == "pdf":
        yield from _render_pdf(path, options, skip, counted)
    else:
        yield from _render_image(path, options, skip, counted)


def render_page(path: Path, number: int, options: RenderOptions | None = None) -> PageImage:
    """Page `number` (1-based) of a document, as `render_pages` renders it, without the others."""
    options = options or RenderOptions()
    name = str(path)
    if sniff_kind(path) == "pdf":
        from pipeline.pdf_scans import ScanPages

        total = int(_pdf_info(path)["Pages"])
        if not 1 <= number <= total:
            raise NoPagesError(f"has no page {number} (it has {total})", source=name)
        with ScanPages(path) as scans:
            return PageImage(number, _pdf_pages(path, [number], options, scans)[number], options.dpi)
    for page in _render_image(path, options):
        if page.number == number:
            return page
    raise NoPagesError(f"has no page {number}", source=name)


def _pdf_info(path: Path, first: int | None = None, last: int | None = None) -> dict:
    from pdf2image import pdfinfo_from_path
    from pdf2image.exceptions import PDFInfoNotInstalledError, PDFPageCountError

    name = str(path)
    try:
        info = _twice(lambda: pdfinfo_from_path(str(path), first_page=first, last_page=last, timeout=60),
                      PDFPageCountError)
    except PDFInfoNotInstalledError as exc:
        raise BadInputError("poppler-utils (pdfinfo) is not installed", source=name) from exc
    except PDFPageCountError as exc:
        message = str(exc)
        if "password" in message.lower():
            raise EncryptedDocumentError(
                "PDF is encrypted with a password; decrypt it first (e.g. qpdf --decrypt)",
                source=name,
            ) from exc
        if "page count 0" in message or "last page (0)" in message:
            raise NoPagesError("PDF has no pages", source=name) from exc
        detail = _first_error_line(message)
        raise CorruptDocumentError(f"PDF is damaged or unreadable ({detail})", source=name) from exc
    if int(info.get("Pages", 0)) == 0:
        raise NoPagesError("PDF has no pages", source=name)
    return info


def _first_error_line(message: str) -> str:
    for line in message.splitlines():
        if "Error" in line:
            return line.strip().removeprefix("b'").strip()
    return message.strip()[:120] or "unknown error"


MAX_PAGE_INCHES = 25  # long side: A2 (23.4 in) and smaller sheets keep the resolution their scan records
EXIF_ORIENTATION = 0x0112  # 1 as stored; 2-8 mirrored and/or turned
_PAGE_SIZE = re.compile(r"([\d.]+) x ([\d.]+) pts")


def _largest_page_pixels(info: dict, dpi: int) -> int:
    """Pixels of the largest page in a pdfinfo answer (per-page keys when a range was asked)."""
    largest = 0.0
    for key, value in info.items():
        if key.startswith("Page") and key.endswith("size"):
            match = _PAGE_SIZE.search(str(value))
            if match:
                w, h = (float(v) * dpi / 72.0 for v in match.groups())
                largest = max(largest, w * h)
    return int(largest)


def _render_pdf(path: Path, options: RenderOptions, skip: Container[int] = frozenset(),
                counted: Callable[[int], None] | None = None) -> Iterator[PageImage]:
    from pipeline.pdf_scans import ScanPages

    total = int(_pdf_info(path)["Pages"])
    _check_page_count(path, total, options)
    if counted is not None:
        counted(total)
    with ScanPages(path) as scans:
        for first in range(1, total + 1, options.chunk_pages):
            last = min(total, first + options.chunk_pages - 1)
            numbers = [n for n in range(first, last + 1) if n not in skip]
            if not numbers:
                continue
            pages = _pdf_pages(path, numbers, options, scans)
            for number, array in pages.items():
                yield PageImage(number, array, options.dpi)
            del pages  # keep only one chunk alive


def _pdf_pages(path: Path, numbers: list[int], options: RenderOptions, scans) -> dict[int, np.ndarray]:
    """Pages `numbers` (ascending): a page that is one scan taken from the file
    (options.embedded_scans), the others rendered by poppler; refused if one would exceed
    options.max_pixels, or if an image on one is damaged (`scans`, a ScanPages, finds it)."""
    first, last = numbers[0], numbers[-1]
    pixels = _largest_page_pixels(_pdf_info(path, first, last), options.dpi)
    if pixels > options.max_pixels:
        where = f"page {first}" if first == last else f"a page in {first}-{last}"
        raise ImageTooLargeError(
            f"{where} would be {pixels:,} pixels at {options.dpi} dpi "
            f"(limit {options.max_pixels:,}); use a lower --dpi, or raise QUIRE_RENDER__MAX_PIXELS",
            source=str(path),
        )
    for number in numbers:
        reason = scans.damaged_image(number)
        if reason:
            raise damaged_page(path, number, reason)
    pages = {n: scans.image(n, options.dpi) if options.embedded_scans else None for n in numbers}
    for start, end in _runs([n for n, image in pages.items() if image is None]):
        arrays, said = _poppler_pages(path, start, end, options.dpi)
        heed_poppler(path, start, end, said, scans)
        for offset, array in enumerate(arrays):
            pages[start + offset] = array
    return cast(dict[int, np.ndarray], pages)  # no None left: a run's pages all render, or it raises


def _runs(numbers: list[int]) -> list[tuple[int, int]]:
    """Ascending page numbers as (first, last) runs of consecutive pages: one pdftoppm call each."""
    runs: list[tuple[int, int]] = []
    for n in numbers:
        if runs and runs[-1][1] == n - 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return runs


def _poppler_pages(path: Path, first: int, last: int, dpi: int) -> tuple[list[np.ndarray], str]:
    """Pages first..last rendered by pdftoppm, as arrays, and what it said on stderr. Their size
    was held to QUIRE_RENDER__MAX_PIXELS from pdfinfo before rendering, so they are opened
    without Pillow's fixed bomb limit, which failed pages of 179-200 million pixels that the
    setting allows."""
    name = str(path)

    def render() -> tuple[list[np.ndarray], str]:
        with tempfile.TemporaryDirectory(prefix="quire-pages-") as folder:
            files, said = _pdftoppm(path, first, last, dpi, Path(folder))
            if len(files) != last - first + 1:
                raise CorruptDocumentError(
                    f"PDF pages {first}-{last}: poppler rendered {len(files)} of {last - first + 1}"
                    + (f" ({_first_error_line(said)})" if said.strip() else ""),
                    source=name,
                )
            arrays = []
            for file in files:
                with _open_unbounded(file) as image:
                    arrays.append(page_array(image))
            return arrays, said

    return _twice(render, CorruptDocumentError)


def _pdftoppm(path: Path, first: int, last: int, dpi: int, folder: Path) -> tuple[list[Path], str]:
    """Pages first..last as image files in `folder`, in page order, and what pdftoppm said on
    stderr: the one sign of image data it could draw only in part (pdf2image drops it)."""
    command = ["pdftoppm", "-r", str(dpi), "-f", str(first), "-l", str(last),
               str(path.absolute()), str(folder / "page")]  # absolute: a name like -x.pdf is no option
    try:
        done = subprocess.run(command, capture_output=True, timeout=600, check=False)
    except FileNotFoundError as exc:
        raise BadInputError("poppler-utils (pdftoppm) is not installed", source=str(path)) from exc
    except subprocess.TimeoutExpired as exc:
        raise BadInputError(f"PDF pages {first}-{last} took over 10 minutes to render", source=str(path)) from exc
    # pdftoppm pads page numbers to one width per call: names sort in page order.
    return sorted(folder.glob("page-*")), done.stderr.decode(errors="replace")


def _twice(call: Callable[[], T], errors: type[Exception] | tuple[type[Exception], ...]) -> T:
    """A poppler call, made once more if it fails. Ctrl-C at a terminal or systemd stopping a
    service signals the whole process group: the pdfinfo or pdftoppm child dies with it, and its
    empty answer looked like a damaged file, failing a good document while a worker's warm
    shutdown let the task finish. Stopping is left to the caller's own signal handling; a file
    that is really damaged fails twice."""
    try:
        return call()
    except errors:
        return call()


def _open_image(path: Path, max_pixels: int | None) -> Image.Image:
    """The image opened (its header read, nothing decoded) and held to `max_pixels`, which
    stands in for Pillow's own fixed bomb limit so QUIRE_RENDER__MAX_PIXELS can raise it; None
    holds it to nothing (counting pages: a 180 M pixel map under our limit counted 0 pages
    when Pillow's applied)."""
    name = str(path)
    try:
        image = _open_unbounded(path)
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


def _open_unbounded(path: Path) -> Image.Image:
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


def _check_page_count(path: Path, total: int, options: RenderOptions) -> None:
    if total > options.max_pages:
        raise ImageTooLargeError(f"has {total:,} pages, more than the limit of {options.max_pages:,} "
                                 "(QUIRE_RENDER__MAX_PAGES); split it, or raise the limit", source=str(path))


def _render_image(path: Path, options: RenderOptions, skip: Container[int] = frozenset(),
                  counted: Callable[[int], None] | None = None) -> Iterator[PageImage]:
    name = str(path)
    with _open_image(path, options.max_pixels) as image:
        total = _frame_count(path, image)
        _check_page_count(path, total, options)
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
