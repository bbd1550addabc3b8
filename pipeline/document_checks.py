"""Checks before rendering: a regular file, of a kind Quire reads (by its first bytes), within the page limit."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pipeline import heif
from pipeline.config import RenderOptions
from pipeline.errors import (
    BadInputError,
    EmptyFileError,
    ImageTooLargeError,
    UnsupportedFormatError,
)

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


def check_page_count(path: Path, total: int, options: RenderOptions) -> None:
    """Refuses a document of more pages than QUIRE_RENDER__MAX_PAGES."""
    if total > options.max_pages:
        raise ImageTooLargeError(f"has {total:,} pages, more than the limit of {options.max_pages:,} "
                                 "(QUIRE_RENDER__MAX_PAGES); split it, or raise the limit", source=str(path))
