"""PDFs to page images through poppler (pdfinfo, pdftoppm) a chunk of pages at a time, or scans taken from the file."""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Callable, Container, Iterator
from pathlib import Path
from typing import TypeVar, cast

import numpy as np

from pipeline.config import RenderOptions
from pipeline.document_checks import check_page_count
from pipeline.errors import (
    BadInputError,
    CorruptDocumentError,
    EncryptedDocumentError,
    ImageTooLargeError,
    NoPagesError,
)
from pipeline.image_render import open_unbounded, page_array
from pipeline.pdf_damage import damaged_page, heed_poppler
from pipeline.types import PageImage

T = TypeVar("T")


def count_pdf_pages(path: Path) -> int:
    """Pages of a PDF, checking it opens; raises BadInputError naming the file."""
    return int(_pdf_info(path)["Pages"])


def render_pdf_page(path: Path, number: int, options: RenderOptions) -> PageImage:
    """Page `number` (1-based) of a PDF, as `render_pdf` renders it, without the others."""
    from pipeline.pdf_scans import ScanPages

    total = int(_pdf_info(path)["Pages"])
    if not 1 <= number <= total:
        raise NoPagesError(f"has no page {number} (it has {total})", source=str(path))
    with ScanPages(path) as scans:
        return PageImage(number, _pdf_pages(path, [number], options, scans)[number], options.dpi)


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


def render_pdf(path: Path, options: RenderOptions, skip: Container[int] = frozenset(),
                counted: Callable[[int], None] | None = None) -> Iterator[PageImage]:
    from pipeline.pdf_scans import ScanPages

    total = int(_pdf_info(path)["Pages"])
    check_page_count(path, total, options)
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
                with open_unbounded(file) as image:
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

