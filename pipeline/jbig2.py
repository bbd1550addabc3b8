"""JBIG2 embedded streams (as PDFs hold them) walked by their segment headers, to find segments cut
short, with generic regions coded as MMR (Group 4 fax data) decoded as runs to find corrupt data.

A region coded arithmetically (jbig2enc's, so OCRmyPDF's) has no such check: its decoder reads
any bits as some picture. Of 15 corruptions of the dev JBIG2 page (at 10, 50 and 90 % of its data:
400 bytes' bits changed, 64 bytes zeroed, 64 set to 0xFF, 512 random, one bit flipped) jbig2dec
decoded every one to garbage below the damage with exit status 0 and the same messages as for the
whole page (even at -v 4), and poppler said something of 5 ("N extraneous bytes after segment",
which it also says of a whole region with padding after it, drawn right); telling garbage from a
page would take decoding it and judging the picture, neither cheap nor sure.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

_UNKNOWN_LENGTH = 0xFFFFFFFF  # an immediate generic region may leave its length unsaid
_GENERIC_REGIONS = (36, 38, 39)  # intermediate, immediate, immediate lossless (JBIG2 7.3)
_REGION_INFO = 17  # width, height, x, y, combination operator (7.4.1)
_MMR = 0x01  # the generic region flags' first bit (7.4.6.2)
_MAX_SIDE = 1 << 20  # a region's width or height beyond this is not decoded


class Segment(NamedTuple):
    kind: int  # its type (7.3)
    start: int  # where its data starts in the stream
    length: int  # _UNKNOWN_LENGTH where its header leaves it unsaid


def jbig2_damage(data: bytes) -> str | None:
    """Why a JBIG2 embedded stream cannot be whole, in words to follow "its JBIG2 data", or None."""
    found, reason = segments(data)
    for segment in found:
        if reason is None and segment.kind in _GENERIC_REGIONS and segment.length != _UNKNOWN_LENGTH:
            reason = _mmr_damage(data[segment.start:segment.start + segment.length])
    return reason


def segments(data: bytes) -> tuple[list[Segment], str | None]:
    """The stream's segments whose data it holds whole, up to one whose length is unsaid, and why
    the rest do not fit in its bytes, or None (JBIG2 7.2)."""
    pos, end = 0, len(data)
    found: list[Segment] = []
    if not end:
        return found, "is empty"
    while pos < end:
        if end - pos < 6:
            return found, "is cut short"
        number, flags, referred = struct.unpack_from(">IBB", data, pos)
        count, at = referred >> 5, pos + 6
        if count == 7:  # the long form: a 29-bit count, then a bit per segment and itself
            count = struct.unpack_from(">I", data, pos + 5)[0] & 0x1FFFFFFF
            at = pos + 9 + (count + 8) // 8
        at += count * (1 if number <= 256 else 2 if number <= 65536 else 4)
        at += 4 if flags & 0x40 else 1  # the page it belongs to
        if at + 4 > end:
            return found, "is cut short"
        (length,) = struct.unpack_from(">I", data, at)
        if length == _UNKNOWN_LENGTH:
            return found, None  # its end is found by decoding it, not checked here
        pos = at + 4 + length
        if pos > end:
            return found, "is cut short"
        found.append(Segment(flags & 0x3F, at + 4, length))
    return found, None


def _mmr_damage(region: bytes) -> str | None:
    """A generic region coded as MMR whose rows do not decode: poppler draws them wrong or white
    (with a line on stderr), pikepdf's jbig2dec without a word. Its runs are counted as a Group 4
    fax image's (pipeline.ccitt: 3.6 ms the dev JBIG2 page, dense text at 300 dpi, coded as MMR)."""
    if len(region) <= _REGION_INFO or not region[_REGION_INFO] & _MMR:
        return None  # arithmetic coding: see the module's note
    width, height = struct.unpack_from(">II", region)
    if not (0 < width <= _MAX_SIDE and 0 < height <= _MAX_SIDE):
        return None
    from pipeline.ccitt import Ending, fax_rows

    rows, ending = fax_rows(region[_REGION_INFO + 1:], width, height, k=-1)
    # Poppler's MMR decoder knows no uncompressed mode either: "Bad two dim code" for it.
    if ending in (Ending.BAD_CODE, Ending.UNSUPPORTED):
        return f"is corrupt after row {rows} of {height}"
    if ending == Ending.DATA_ENDS:
        return f"is cut short: {rows} of its {height} rows are there"
    return None
