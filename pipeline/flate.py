"""Flate (zlib) image data inflated far enough to tell whether it holds all of the image's rows.

Poppler draws the rows a Flate image lacks as white paper: data cut short with one line on
stderr, corrupt data or a complete stream holding too few rows without a word. Poppler reads the
stream with its own inflater: it checks the two-byte zlib header, never the Adler-32 checksum at
the end, and stops once it has the image's rows, so whatever follows them (a checksum missing or
wrong, padding, garbage) is drawn fine and must not count as damage. The data is inflated a
bounded piece at a time and thrown away: memory stays flat whatever the image's size.
"""

from __future__ import annotations

import zlib

_IN = 1 << 16  # compressed bytes fed at a time
_OUT = 1 << 20  # most bytes inflated at a time


def flate_damage(data: bytes, row_bytes: int, rows: int) -> str | None:
    """Why zlib `data` does not inflate to `rows` rows of `row_bytes` bytes, as poppler reads
    it, in words to follow "its Flate data"; None if every row is there."""
    if len(data) < 2:
        return "is empty"
    cmf, flg = data[0], data[1]
    if cmf & 0x0F != 8 or ((cmf << 8) | flg) % 31 or flg & 0x20:  # poppler's own header checks
        return "is not zlib data (its header is wrong)"
    needed = row_bytes * rows
    if needed <= 0:
        return None
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate: the checksum is not checked
    try:
        got = _inflate(inflater, memoryview(data)[2:], needed)
    except _Corrupt as exc:
        return f"is corrupt after row {exc.got // row_bytes} of {rows} ({exc.words})"
    if got >= needed:
        return None
    if inflater.eof:  # a whole zlib stream, but of fewer rows: a writer's or a repair's fault
        return f"ends after {got // row_bytes} of its {rows} rows"
    return f"is cut short: {got // row_bytes} of its {rows} rows are there"


class _Corrupt(Exception):
    def __init__(self, got: int, words: str) -> None:
        super().__init__(words)
        self.got, self.words = got, words


def _inflate(inflater, data: memoryview, needed: int) -> int:
    """Bytes inflated from `data`, stopping at `needed`, at the deflate stream's end or where
    the input runs out; raises _Corrupt where zlib finds bits that are no deflate data."""
    got = 0
    for start in range(0, len(data), _IN):
        pending: bytes | memoryview = data[start:start + _IN]
        while True:
            try:
                out = inflater.decompress(pending, min(_OUT, needed - got))
            except zlib.error as exc:  # "Error -3 while decompressing data: invalid code lengths set"
                raise _Corrupt(got, str(exc).rsplit(": ", 1)[-1]) from exc
            got += len(out)
            if got >= needed or inflater.eof:
                return got
            pending = inflater.unconsumed_tail
            if not pending and len(out) < _OUT:  # this piece used up, no output held back
                break
    return got
