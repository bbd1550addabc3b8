"""CCITT fax data (T.4 Group 3, T.6 Group 4) decoded far enough to count its whole rows.

A fax image cut short draws as white paper below the cut: poppler says nothing, libtiff (Pillow,
pikepdf) warns on stderr and fills the rows. Counting the rows the data really holds, against the
image's height, tells a damaged scan from a page that is white at the bottom. The rows are
decoded as runs only (no pixels), compiled with numba: 0.2-1.2 ms a 300 dpi page.
The stream is read as poppler reads it (optional EOLs, fill bits, the tag bit of mixed 1D/2D).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from pipeline.compiled import compiled

# Plain ints inside the compiled code; Ending names them outside.
_ROWS, _END_OF_BLOCK, _DATA_ENDS, _BAD_CODE, _UNSUPPORTED = range(5)


class Ending(IntEnum):
    """Why decoding stopped."""

    ROWS = _ROWS  # every row asked for was decoded
    END_OF_BLOCK = _END_OF_BLOCK  # the writer's end mark (EOFB, RTC) came first: its choice
    DATA_ENDS = _DATA_ENDS  # the data ran out inside the image: cut short
    BAD_CODE = _BAD_CODE  # bits that are no fax code, or runs past the row's end: corrupt
    UNSUPPORTED = _UNSUPPORTED  # uncompressed mode (a T.4 extension), not followed here


_MAX_CODE = 13  # bits in the longest code (black makeup codes); lookups peek this many

# (run length, code) per colour: terminating codes 0-63, then makeup codes.
_WHITE = (
    "00110101 000111 0111 1000 1011 1100 1110 1111 10011 10100 00111 01000 001000 000011 110100 "
    "110101 101010 101011 0100111 0001100 0001000 0010111 0000011 0000100 0101000 0101011 0010011 "
    "0100100 0011000 00000010 00000011 00011010 00011011 00010010 00010011 00010100 00010101 "
    "00010110 00010111 00101000 00101001 00101010 00101011 00101100 00101101 00000100 00000101 "
    "00001010 00001011 01010010 01010011 01010100 01010101 00100100 00100101 01011000 01011001 "
    "01011010 01011011 01001010 01001011 00110010 00110011 00110100"
)
_WHITE_MAKEUP = (
    "11011 10010 010111 0110111 00110110 00110111 01100100 01100101 01101000 01100111 011001100 "
    "011001101 011010010 011010011 011010100 011010101 011010110 011010111 011011000 011011001 "
    "011011010 011011011 010011000 010011001 010011010 011000 010011011"
)
_BLACK = (
    "0000110111 010 11 10 011 0011 0010 00011 000101 000100 0000100 0000101 0000111 00000100 "
    "00000111 000011000 0000010111 0000011000 0000001000 00001100111 00001101000 00001101100 "
    "00000110111 00000101000 00000010111 00000011000 000011001010 000011001011 000011001100 "
    "000011001101 000001101000 000001101001 000001101010 000001101011 000011010010 000011010011 "
    "000011010100 000011010101 000011010110 000011010111 000001101100 000001101101 000011011010 "
    "000011011011 000001010100 000001010101 000001010110 000001010111 000001100100 000001100101 "
    "000001010010 000001010011 000000100100 000000110111 000000111000 000000100111 000000101000 "
    "000001011000 000001011001 000000101011 000000101100 000001011010 000001100110 000001100111"
)
_BLACK_MAKEUP = (
    "0000001111 000011001000 000011001001 000001011011 000000110011 000000110100 000000110101 "
    "0000001101100 0000001101101 0000001001010 0000001001011 0000001001100 0000001001101 "
    "0000001110010 0000001110011 0000001110100 0000001110101 0000001110110 0000001110111 "
    "0000001010010 0000001010011 0000001010100 0000001010101 0000001011010 0000001011011 "
    "0000001100100 0000001100101"
)
# Makeup codes of both colours for runs of 1792-2560.
_EXTENDED_MAKEUP = (
    "00000001000 00000001100 00000001101 000000010010 000000010011 000000010100 000000010101 "
    "000000010110 000000010111 000000011100 000000011101 000000011110 000000011111"
)
# Two-dimensional mode codes: pass, horizontal, vertical with a1 - b1 of -3..3, extension.
_PASS, _HORIZONTAL, _EXTENSION = 100, 101, 102
_MODES = {"0001": _PASS, "001": _HORIZONTAL, "1": 0, "011": 1, "000011": 2, "0000011": 3,
          "010": -1, "000010": -2, "0000010": -3, "0000001": _EXTENSION}


def _table(codes: dict[str, int]) -> np.ndarray:
    """A lookup by the next 13 bits: (value, code length), length 0 where no code starts so."""
    table = np.zeros((1 << _MAX_CODE, 2), np.int32)
    for code, value in codes.items():
        first = int(code, 2) << (_MAX_CODE - len(code))
        span = 1 << (_MAX_CODE - len(code))
        if table[first:first + span, 1].any():
            raise AssertionError(f"fax code {code} overlaps another")  # a typo in the tables
        table[first:first + span] = (value, len(code))
    return table


def _runs(terminating: str, makeup: str) -> np.ndarray:
    codes = {code: run for run, code in enumerate(terminating.split())}
    codes.update({code: 64 * (i + 1) for i, code in enumerate(makeup.split())})
    codes.update({code: 1792 + 64 * i for i, code in enumerate(_EXTENDED_MAKEUP.split())})
    return _table(codes)


_WHITE_TABLE = _runs(_WHITE, _WHITE_MAKEUP)
_BLACK_TABLE = _runs(_BLACK, _BLACK_MAKEUP)
_MODE_TABLE = _table(_MODES)


def fax_rows(data: bytes, columns: int, rows: int, k: int = 0, byte_align: bool = False,
             end_of_line: bool = False) -> tuple[int, Ending]:
    """How many whole rows of `columns` pixels the fax data holds, up to `rows`, and why it
    stopped; `k`, `byte_align` and `end_of_line` are the stream's /K, /EncodedByteAlign and
    /EndOfLine."""
    buffer = np.frombuffer(data, np.uint8)
    done, ending = _decode(buffer, columns, rows, k, byte_align, end_of_line,
                           _WHITE_TABLE, _BLACK_TABLE, _MODE_TABLE)
    return int(done), Ending(ending)


@compiled
def _peek(data, pos, n):
    """The n bits from bit `pos` as an integer, zeros past the end (n <= 25)."""
    value = 0
    byte = pos >> 3
    for i in range(4):
        value <<= 8
        if byte + i < data.size:
            value |= data[byte + i]
    return (value >> (32 - (pos & 7) - n)) & ((1 << n) - 1)


@compiled
def _run(data, pos, nbits, table):
    """One run (makeup codes, then a terminating code) from `pos`: (length, new pos), length -1
    where the bits are no code; a new pos past nbits means the data ran out."""
    total = 0
    while True:
        entry = table[_peek(data, pos, _MAX_CODE)]
        if entry[1] == 0:
            return -1, pos
        pos += entry[1]
        total += entry[0]
        if entry[0] < 64 or pos > nbits:
            return total, pos


@compiled
def _only_zeros(data, pos, nbits):
    """Whether nothing but zero bits is left from `pos` (fill bits after the last row)."""
    while pos < nbits:
        if pos & 7 == 0 and data[pos >> 3] == 0:
            pos += 8
        elif _peek(data, pos, 1):
            return False
        else:
            pos += 1
    return True


@compiled
def _bad(pos, nbits):
    """Bits that are no code: at the very end they are the start of one the data lacks."""
    return _DATA_ENDS if pos + _MAX_CODE > nbits else _BAD_CODE


@compiled
def _decode(data, columns, rows, k, byte_align, end_of_line, white, black, modes):
    nbits = data.size * 8
    pos = 0
    # Changing elements (where the colour changes) of the reference row (the one before) and
    # of the row being decoded, followed by sentinels at `columns`; the first reference row is
    # all white. An element at an even index starts black, at an odd one white. Room for one
    # at every column and the row's end, and for zero-length runs.
    size = 2 * columns + 8
    ref = np.full(size, columns, np.int32)
    cur = np.full(size, columns, np.int32)
    n_ref = 0
    for row in range(rows):
        if pos >= nbits or _only_zeros(data, pos, nbits):
            return row, _DATA_ENDS
        # Rows may start with an EOL (eleven zeros and a one, fill zeros before it), each row on
        # a byte boundary with EncodedByteAlign; an EOL after an EOL ends the block (EOFB, or
        # RTC's six, each followed by a tag bit with mixed 1D/2D). As poppler reads them.
        eol = False
        if (end_of_line or not byte_align) and _peek(data, pos, 12) <= 1:
            while _peek(data, pos, 12) == 0:
                pos += 1
            if _peek(data, pos, 12) == 1:
                pos += 12
                eol = True
                if _peek(data, pos + (1 if k > 0 else 0), 12) == 1:
                    return row, _END_OF_BLOCK
        if byte_align and not eol:
            pos = (pos + 7) & ~7
            if _peek(data, pos, 24) == 0x001001:
                return row, _END_OF_BLOCK
            if pos >= nbits or _only_zeros(data, pos, nbits):
                return row, _DATA_ENDS
        two_d = k < 0
        if k > 0:
            two_d = _peek(data, pos, 1) == 0
            pos += 1
        n = 0
        a0, colour = -1, 0
        if not two_d:
            while a0 < columns:
                run, pos = _run(data, pos, nbits, black if colour else white)
                if run < 0:
                    return row, _bad(pos, nbits)
                if pos > nbits:
                    return row, _DATA_ENDS
                a0 = max(a0, 0) + run
                if a0 > columns or n + 1 > size - 4:
                    return row, _BAD_CODE
                if a0 < columns:
                    cur[n] = a0
                    n += 1
                colour ^= 1
        else:
            j = 0  # the first reference element right of a0
            while a0 < columns:
                while j < n_ref and ref[j] <= a0:
                    j += 1
                b1 = j if (j & 1) == colour else j + 1
                entry = modes[_peek(data, pos, _MAX_CODE)]
                if entry[1] == 0:
                    return row, _bad(pos, nbits)
                pos += entry[1]
                if pos > nbits:
                    return row, _DATA_ENDS
                mode = entry[0]
                if mode == _EXTENSION:
                    return row, _UNSUPPORTED
                if mode == _PASS:  # pass: a0 moves under b2, the colour stays
                    a0 = ref[b1 + 1]
                elif mode == _HORIZONTAL:  # horizontal: a run of this colour, then one of the other
                    start = max(a0, 0)
                    first, pos = _run(data, pos, nbits, black if colour else white)
                    if first < 0:
                        return row, _bad(pos, nbits)
                    if pos > nbits:
                        return row, _DATA_ENDS
                    second, pos = _run(data, pos, nbits, white if colour else black)
                    if second < 0:
                        return row, _bad(pos, nbits)
                    if pos > nbits:
                        return row, _DATA_ENDS
                    a0 = start + first + second
                    if a0 > columns or n + 2 > size - 4:
                        return row, _BAD_CODE
                    cur[n] = start + first
                    cur[n + 1] = a0
                    n += 2
                else:  # vertical: a1 is b1 moved by the code's offset, and the colour changes
                    a1 = ref[b1] + mode
                    if a1 < 0 or a1 < a0 or a1 > columns or n + 1 > size - 4:
                        return row, _BAD_CODE
                    cur[n] = a1
                    n += 1
                    a0 = a1
                    colour ^= 1
        # Elements at the row's end change nothing: the row is the next one's reference.
        while n > 0 and cur[n - 1] >= columns:
            n -= 1
        ref[:n] = cur[:n]
        ref[n:n + 4] = columns  # b1 and b2 are looked up at most two past the last element
        n_ref = n
    return rows, _ROWS
